"""What a bench report says of a variant's language model, read from its folder and options (the engine contract
knows nothing of benchmarks): how the weights are stored, the bytes one generated token reads, and the bytes of
one KV cache element."""
import math

from safetensors import safe_open

from ..convert.manifest import read_manifest
from ..roofline import weight_bytes
from ..runtime.pytorch_engine import checkpoint_precision

ELEMENT_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "u8": 1, "i8": 1, "u4": 0.5}
LANGUAGE_TENSORS = ("model.layers.", "lm_head.")  # what a generated token reads: the decoder and the head


def weights_of(engine):
    """(label, e.g. int4 or bf16; language-model bytes read per generated token, None when the folder does not
    say; bytes per KV cache element)."""
    folder, options = engine.model_dir, engine.options
    if engine.capabilities.folder == "checkpoint":
        precision = checkpoint_precision(options)
        return precision, checkpoint_language_elements(folder) * ELEMENT_BYTES[precision], ELEMENT_BYTES[precision]
    label = ((read_manifest(folder) or {}).get("recipe") or {}).get("weight_format", "unknown")
    language = weight_bytes(folder) if (folder / "openvino_language_model.xml").exists() else None
    kv_precision = options.plugin_properties().get("KV_CACHE_PRECISION", "u8")  # the CPU plugin's default
    return label, language, ELEMENT_BYTES.get(kv_precision.lower(), 1)


def checkpoint_language_elements(folder):
    """Elements of the decoder layers and the head in a checkpoint's safetensors files (from their headers)."""
    total = 0
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(path, "pt") as tensors:
            for name in tensors.keys():
                if name.startswith(LANGUAGE_TENSORS):
                    total += math.prod(tensors.get_slice(name).get_shape())
    return total
