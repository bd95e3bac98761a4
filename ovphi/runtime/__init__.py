"""Load a phi3_v OpenVINO IR folder and stream answers about images.

    from ovphi.runtime import load, read_image
    chat = ChatSession(load("models/tiny-int4"), max_new_tokens=64)
    for piece in chat.ask("Describe the image.", [read_image("photo.jpg")]):
        print(piece, end="", flush=True)
"""
import os
from pathlib import Path

from .chat import ChatSession
from .images import read_image

BACKENDS = ("optimum", "genai", "pytorch", "optimum-stock", "genai-stock")


def openvino_options(model_dir, performance_hint="LATENCY", cache=True, precision=None, kv_cache_precision=None,
                     extra=None):
    """OpenVINO properties: performance hint, compiled-model cache in MODEL_DIR/model_cache, precisions,
    and any `extra` properties (e.g. {"DYNAMIC_QUANTIZATION_GROUP_SIZE": "64"})."""
    options = {"PERFORMANCE_HINT": performance_hint}
    if cache and os.access(model_dir, os.W_OK):
        options["CACHE_DIR"] = str(Path(model_dir) / "model_cache")
    if precision:
        options["INFERENCE_PRECISION_HINT"] = precision
    if kv_cache_precision:
        options["KV_CACHE_PRECISION"] = kv_cache_precision
    return options | dict(extra or {})


def load(model_dir, device="CPU", backend="optimum", **options):
    """The model of an IR folder on a device ('CPU', 'GPU', 'GPU.1', 'AUTO') with backend 'optimum' or
    'genai', or of a checkpoint folder with backend 'pytorch' (precision f32 or bf16); options go to
    `openvino_options`. 'optimum-stock' and 'genai-stock' are the runtimes with their own defaults (no
    options), for comparison. Wrap the result in a ChatSession to talk to it."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose from {', '.join(BACKENDS)}")
    if backend == "genai":
        from .genai_backend import GenaiVLM as backend_class
    elif backend == "pytorch":
        from .torch_backend import TorchVLM as backend_class
    elif backend == "optimum-stock":
        from .optimum_stock import StockOptimumVLM as backend_class
    elif backend == "genai-stock":
        from .genai_backend import StockGenaiVLM as backend_class
    else:
        from .optimum_backend import OptimumVLM as backend_class
    return backend_class(model_dir, device=device, ov_config=openvino_options(model_dir, **options))


def parse_model_spec(spec):
    """'BACKEND:FOLDER' (e.g. 'pytorch:models/tiny') -> (FOLDER, BACKEND); a bare folder -> (folder, None)."""
    backend, _, folder = spec.partition(":")
    if folder and backend in BACKENDS:
        return folder, backend
    return spec, None
