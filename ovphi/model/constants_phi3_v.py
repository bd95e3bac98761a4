"""Phi-3.5-vision's fixed numbers, in one place for the model code, the checkpoint builders, convert and
the roofline (copied into every model folder with the rest of the model code)."""

CLIP_REPO = "openai/clip-vit-large-patch14-336"
CLIP_VIT_L_336 = {
    "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
    "image_size": 336, "patch_size": 14, "projection_dim": 768, "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
CROP = 336  # pixels per HD crop side (CLIP's input)
TOKENS_PER_CROP = 144  # 24 x 24 CLIP patches merged 2 x 2
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
# which file of a model folder maps which Auto class to which class of this implementation
AUTO_MAP = {
    "config.json": {"AutoConfig": "configuration_phi3_v.Phi3VConfig",
                    "AutoModelForCausalLM": "modeling_phi3_v.Phi3VForCausalLM"},
    "preprocessor_config.json": {"AutoProcessor": "processing_phi3_v.Phi3VProcessor",
                                 "AutoImageProcessor": "image_processing_phi3_v.Phi3VImageProcessor"},
}
