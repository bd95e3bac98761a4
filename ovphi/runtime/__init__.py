"""Load a phi3_v model folder and stream answers about images.

    from ovphi.runtime import ChatSession, load, read_image
    chat = ChatSession(load("models/tiny-int4"), max_new_tokens=64)
    for event in chat.ask("Describe the image.", [read_image("photo.jpg")]):
        print(event.text, end="", flush=True)
    print(event.timings)  # the last event is the turn's TurnResult

An engine (engine.py) is found by name in the registry (registry.py); GenerationConfig and
RuntimeOptions (config.py) say what a turn and the device should do.
"""
from ..images import read_image
from .config import GenerationConfig, RuntimeOptions
from .conversation import Conversation, ImagePart
from .engine import Chunk, Status, TurnResult
from .registry import DEFAULT, engine_class
from .session import ChatSession


def load(model_dir, backend=DEFAULT, options=None, **settings):
    """The engine `backend` (see registry.ENGINES) with MODEL_DIR loaded. options: RuntimeOptions, or its
    fields as keyword arguments (device='CPU', precision='f32', ...)."""
    options = options or RuntimeOptions(**settings)
    return engine_class(backend)(model_dir, options)


__all__ = ["ChatSession", "Chunk", "Conversation", "GenerationConfig", "ImagePart", "RuntimeOptions", "Status", "TurnResult",
           "load", "read_image"]
