"""What a phi3_v IR folder must hold, checked before anything is compiled; and whether it suits this CPU."""
from pathlib import Path

from ..convert.manifest import read_manifest
from ..cpu import int8_dot_products
from ..errors import OvphiError

IR_FILES = ["openvino_language_model.xml", "openvino_text_embeddings_model.xml",
            "openvino_vision_embeddings_model.xml", "openvino_vision_projection_model.xml", "config.json",
            "preprocessor_config.json", "tokenizer_config.json"]
GENAI_FILES = ["openvino_tokenizer.xml", "openvino_detokenizer.xml"]


def check_ir_folder(model_dir, backend):
    """Raise OvphiError naming every file the backend needs that the folder lacks."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise OvphiError(f"model folder {model_dir} does not exist")
    needed = IR_FILES + (GENAI_FILES if backend.startswith("genai") else [])
    missing = [name for name in needed if not (folder / name).exists()]
    if missing:
        raise OvphiError(f"{model_dir} is not a complete phi3_v IR folder: missing {', '.join(missing)}")


def slow_vision_warning(model_dir, device, flags):
    """A one-line warning when the folder's vision encoder is static INT8 (manifest) and runs on a CPU whose
    FLAGS have no int8 dot products, where it is about 1.8x slower than INT8 weights only; else None."""
    vision = (read_manifest(model_dir) or {}).get("vision") or {}
    on_cpu = device == "CPU" or device.startswith("AUTO")
    if vision.get("quantization") != "int8-static" or not on_cpu or int8_dot_products(flags):
        return None
    return (f"{model_dir}'s vision encoder is static INT8, which this CPU (no AMX or VNNI) runs about 1.8x slower"
            " than INT8 weights only: convert with --vision int8 (auto chooses it on this CPU)")
