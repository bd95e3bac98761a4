"""What a phi3_v IR folder must hold, checked before anything is compiled."""
from pathlib import Path

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
