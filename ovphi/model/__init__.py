"""ovphi's own Phi-3.5-vision (model_type phi3_v) and the builders of its random checkpoints.

Importing this package loads no torch; the model modules are imported where they are used.
"""

MODEL_CODE = ["constants_phi3_v.py", "configuration_phi3_v.py", "modeling_phi3_v.py", "image_processing_phi3_v.py", "processing_phi3_v.py"]


def copy_model_code(folder):
    """Put this implementation's source files in a checkpoint or IR folder (loaded there through auto_map)."""
    import shutil
    from pathlib import Path

    for name in MODEL_CODE:
        shutil.copy(Path(__file__).with_name(name), Path(folder) / name)


def register_auto_classes():
    """Let transformers' Auto classes build this implementation for phi3_v, so no checkpoint code runs."""
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoProcessor,
    )

    from .configuration_phi3_v import Phi3VConfig
    from .image_processing_phi3_v import Phi3VImageProcessor
    from .modeling_phi3_v import Phi3VForCausalLM
    from .processing_phi3_v import Phi3VProcessor

    AutoConfig.register("phi3_v", Phi3VConfig, exist_ok=True)
    for auto_model in (AutoModelForCausalLM, AutoModelForImageTextToText):
        auto_model.register(Phi3VConfig, Phi3VForCausalLM, exist_ok=True)
    AutoImageProcessor.register(Phi3VConfig, slow_image_processor_class=Phi3VImageProcessor, exist_ok=True)
    AutoProcessor.register(Phi3VConfig, Phi3VProcessor, exist_ok=True)
