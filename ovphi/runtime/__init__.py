"""Load a phi3_v OpenVINO IR folder and stream answers about images."""
from .images import read_image
from .optimum_backend import OptimumVLM


def load(model_dir, device="CPU", backend="optimum", performance_hint="LATENCY", cache_dir=None,
         precision=None, kv_cache_precision=None):
    """An answering object for an IR folder. Example: `vlm = load("ir"); print("".join(vlm.stream(msgs, imgs)))`."""
    if backend != "optimum":
        raise ValueError(f"backend {backend!r} is not available yet; use 'optimum'")
    ov_config = {"PERFORMANCE_HINT": performance_hint}
    if cache_dir:
        ov_config["CACHE_DIR"] = str(cache_dir)
    if precision:
        ov_config["INFERENCE_PRECISION_HINT"] = precision
    if kv_cache_precision:
        ov_config["KV_CACHE_PRECISION"] = kv_cache_precision
    return OptimumVLM(model_dir, device=device, ov_config=ov_config)


def user_message(text, image_count):
    """The chat message of one user turn, with `<|image_1|>` ... tags in front when images come with it."""
    tags = "".join(f"<|image_{i}|>\n" for i in range(1, image_count + 1))
    return {"role": "user", "content": tags + text}
