"""Phi-3.5-vision configuration (model_type "phi3_v"), compatible with the published config.json."""
from transformers import PretrainedConfig

from .constants_phi3_v import CLIP_REPO, CLIP_VIT_L_336, TOKENS_PER_CROP


class Phi3VConfig(PretrainedConfig):
    """Phi-3-mini decoder settings plus `img_processor` (CLIP) and `embd_layer` (HD transform) dicts.

    `img_processor` may override CLIP ViT-L/14-336 sizes (e.g. `num_hidden_layers` for a tiny model);
    the published config names only `model_name`, `image_dim_out` and `num_img_tokens`.
    """

    model_type = "phi3_v"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        vocab_size=32064,
        hidden_size=3072,
        intermediate_size=8192,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=None,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attention_dropout=0.0,
        hidden_act="silu",
        max_position_embeddings=131072,
        original_max_position_embeddings=4096,
        initializer_range=0.02,
        rms_norm_eps=1e-5,
        use_cache=True,
        tie_word_embeddings=False,
        rope_theta=10000.0,
        rope_scaling=None,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=32000,
        sliding_window=None,
        embd_layer=None,
        img_processor=None,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads or num_attention_heads
        self.resid_pdrop = resid_pdrop
        self.embd_pdrop = embd_pdrop
        self.attention_dropout = attention_dropout
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.original_max_position_embeddings = original_max_position_embeddings
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        self.use_cache = use_cache
        self.rope_theta = rope_theta
        self.rope_scaling = rope_scaling
        self.sliding_window = sliding_window
        self.embd_layer = embd_layer or {
            "embedding_cls": "image", "hd_transform_order": "sub_glb", "projection_cls": "mlp",
            "use_hd_transform": True, "with_learnable_separator": True,
        }
        self.img_processor = img_processor or {
            "image_dim_out": 1024, "model_name": CLIP_REPO,
            "name": "clip_vision_model", "num_img_tokens": TOKENS_PER_CROP,
        }
        super().__init__(
            bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
            tie_word_embeddings=tie_word_embeddings, **kwargs,
        )

    @property
    def head_dim(self):
        return self.hidden_size // self.num_attention_heads

    def clip_settings(self):
        """CLIP ViT-L/14-336 settings with this config's overrides applied."""
        return {key: self.img_processor.get(key, value) for key, value in CLIP_VIT_L_336.items()}
