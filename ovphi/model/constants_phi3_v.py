"""Phi-3.5-vision's fixed numbers and the HD grid's arithmetic on them, in one place for the model code, the
checkpoint builders, convert, the runtimes and the roofline (copied into every model folder with the rest of the
model code). Needs nothing but the standard library."""
import math

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


def crop_grid(width, height, num_crops):
    """(columns, rows, resized width, resized height) of the HD grid for an image of this size.

    The long side gets the most 336-px crops such that the grid still has at most num_crops crops;
    the short side keeps the aspect and is padded up to a multiple of 336.
    """
    transposed = width < height
    long_side, short_side = (height, width) if transposed else (width, height)
    ratio = long_side / short_side
    scale = 1
    while (scale + 1) * math.ceil((scale + 1) / ratio) <= num_crops:
        scale += 1
    new_long = scale * CROP
    new_short = max(1, int(new_long / ratio))
    long_crops, short_crops = scale, math.ceil(new_short / CROP)
    if transposed:
        return short_crops, long_crops, new_short, new_long
    return long_crops, short_crops, new_long, new_short


def crop_count(height, width):
    """CLIP crops of a picture resized to height x width (336-px multiples): its sub-crops and the global view."""
    return 1 + (height // CROP) * (width // CROP)


def num_image_tokens(rows, cols, tokens_per_crop=TOKENS_PER_CROP):
    """Image tokens of an image split into rows x cols crops: sub grid, separators, global view."""
    side = int(math.isqrt(tokens_per_crop))
    return (rows * cols + 1) * tokens_per_crop + 1 + (rows + 1) * side
