"""ovphi: Phi-3.5-vision on Intel CPUs and GPUs with OpenVINO.

    from ovphi import ChatSession, Recipe, convert, load, read_image
    convert("models/tiny", "models/tiny-int4", Recipe(dataset="builtin"))
    chat = ChatSession(load("models/tiny-int4"), max_new_tokens=64)
    for event in chat.ask("Describe the image.", [read_image("photo.jpg")]):
        print(event.text, end="", flush=True)

`convert` and `Recipe` are imported here, so that `ovphi.convert` is the function whatever was imported
before (the subpackage ovphi.convert stays importable by name); the runtime loads on first use.
"""
from .convert import Recipe, convert

_RUNTIME = {"load", "ChatSession", "GenerationConfig", "RuntimeOptions", "read_image"}


def make_checkpoint(kind, out, **options):
    """A random Phi-3.5-vision checkpoint: `tiny` (tests) or `full` (the real dimensions); see
    ovphi.model.checkpoint.make_checkpoint."""
    from .model.checkpoint import make_checkpoint as build

    return build(kind, out, **options)


def __getattr__(name):
    if name not in _RUNTIME:
        raise AttributeError(f"module 'ovphi' has no attribute {name!r}")
    from . import runtime

    return getattr(runtime, name)


__all__ = ["ChatSession", "GenerationConfig", "Recipe", "RuntimeOptions", "convert", "load", "make_checkpoint",
           "read_image"]
