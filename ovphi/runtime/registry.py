"""The one registry of engines: name -> where its class lives, and a line saying what it is. Nothing else
in ovphi compares engine names; callers ask an engine's `capabilities`. A new engine adds one line here,
or, from outside ovphi, names itself in OVPHI_ENGINES ("name=module:Class,name2=module:Class2"), which
child processes (bench's memory run) inherit."""
import importlib
import os

from ..errors import OvphiError

DEFAULT = "optimum"
ENGINES = {
    "optimum": ("ovphi.runtime.optimum_engine:OptimumEngine",
                "optimum-intel's OpenVINO models driven by ovphi, KV cache kept across turns (default)"),
    "genai": ("ovphi.runtime.genai_engine:GenaiEngine",
              "openvino.genai's VLMPipeline (SDPA attention), KV cache kept across turns; no torch"),
    "genai-batch": ("ovphi.runtime.batch_engine:BatchEngine",
                    "openvino.genai's ContinuousBatchingPipeline in a worker process: many conversations at once"
                    " (continuous batching, as OVMS); no torch"),
    "pytorch": ("ovphi.runtime.pytorch_engine:PyTorchEngine",
                "a checkpoint folder in PyTorch eager on CPU, f32 or bf16 (baseline, eval reference)"),
    "optimum-stock": ("ovphi.runtime.stock:StockOptimumEngine",
                      "optimum-intel's generate with its own defaults (comparison)"),
    "genai-stock": ("ovphi.runtime.stock:StockGenaiEngine",
                    "openvino.genai's VLMPipeline with its own defaults (comparison)"),
}


for entry in filter(None, os.environ.get("OVPHI_ENGINES", "").split(",")):
    engine_name, _, engine_target = entry.partition("=")
    ENGINES[engine_name.strip()] = (engine_target.strip(), f"{engine_target.strip()} (from OVPHI_ENGINES)")


def names():
    return list(ENGINES)


def register(name, target, description):
    """Add an engine: target is the class or 'module:Class'."""
    ENGINES[name] = (target, description)


def engine_class(name):
    """The engine class registered under name."""
    if name not in ENGINES:
        raise OvphiError(f"unknown backend {name!r}: choose from {', '.join(ENGINES)}")
    target = ENGINES[name][0]
    if isinstance(target, str):
        module, _, attribute = target.partition(":")
        target = getattr(importlib.import_module(module), attribute)
    return target


def split_spec(spec):
    """'NAME:FOLDER' (e.g. 'pytorch:models/tiny') -> (FOLDER, NAME); a bare folder -> (folder, None)."""
    name, _, folder = spec.partition(":")
    return (folder, name) if folder and name in ENGINES else (spec, None)


def help_text():
    return "; ".join(f"{name}: {description}" for name, (_, description) in ENGINES.items())
