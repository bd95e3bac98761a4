"""ovphi: Phi-3.5-vision on Intel CPUs and GPUs with OpenVINO.

Public functions: `make_checkpoint` (random test checkpoints), `convert` (checkpoint -> IR folder),
`load` (IR folder -> an object that streams answers). Heavy libraries load on first use.
"""

_PUBLIC = {
    "make_checkpoint": "ovphi.model.checkpoint",
    "convert": "ovphi.convert.convert",
    "Recipe": "ovphi.convert.convert",
    "load": "ovphi.runtime",
}


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'ovphi' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_PUBLIC[name]), name)
