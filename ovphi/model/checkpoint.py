"""Build Phi-3.5-vision checkpoints with random weights: `tiny` for tests, `full` (real dimensions) for latency."""
import json
import math
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..errors import OvphiError
from ..files import partial_folder
from .configuration_phi3_v import Phi3VConfig
from .constants_phi3_v import AUTO_MAP, CLIP_MEAN, CLIP_REPO, CLIP_STD, CLIP_VIT_L_336, TOKENS_PER_CROP
from .tokenizer import build_tokenizer
from .tokens import stop_token_ids

CLIP_SNAPSHOT = "ce19dc912ca5cd21c8a653c79e251e7ae4e8a6a0"  # revision name of the cached CLIP config

# Real Phi-3.5-vision dimensions (../shared/phi35v/config.json).
FULL = dict(vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
            num_attention_heads=32, num_key_value_heads=32)
TINY = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4)
TINY_CLIP = dict(num_hidden_layers=2, intermediate_size=1024)


def rope_factors(head_dim):
    """LongRoPE short and long factors for head_dim // 2 frequencies, shaped like the published ones."""
    half = head_dim // 2
    short = [1.0 + 8.0 * (i / (half - 1)) ** 1.5 for i in range(half)]
    long = [1.08 + 63.8 * (i / (half - 1)) ** 0.8 for i in range(half)]
    return {"type": "su", "short_factor": short, "long_factor": long}


def make_config(kind, vocab_size=None, layers=None):
    """Phi3VConfig for `tiny` or `full`; `layers` overrides the decoder depth."""
    sizes = dict(FULL if kind == "full" else TINY)
    if vocab_size:
        sizes["vocab_size"] = vocab_size
    if layers:
        sizes["num_hidden_layers"] = layers
    head_dim = sizes["hidden_size"] // sizes["num_attention_heads"]
    img_processor = {"image_dim_out": 1024, "model_name": CLIP_REPO, "name": "clip_vision_model",
                     "num_img_tokens": TOKENS_PER_CROP}
    if kind == "tiny":
        img_processor.update(TINY_CLIP)
    config = Phi3VConfig(rope_scaling=rope_factors(head_dim), img_processor=img_processor,
                         sliding_window=262144, torch_dtype="bfloat16" if kind == "full" else "float32", **sizes)
    config.architectures = ["Phi3VForCausalLM"]
    config.auto_map = dict(AUTO_MAP["config.json"])
    return config


def tiny_init(model, seed):
    """Unit-variance init (weights ~ N(0, 1/fan_in)) so that outputs depend on every input, images included."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        if name.endswith("bias"):
            torch.nn.init.zeros_(param)
        elif "norm" in name:
            torch.nn.init.ones_(param)
        elif param.dim() >= 2 and "embed" not in name and "_GN" not in name:
            std = 1.0 / math.sqrt(param.shape[1] * (param[0, 0].numel() if param.dim() > 2 else 1))
            param.data.normal_(0.0, std, generator=generator)
        else:
            param.data.normal_(0.0, 1.0, generator=generator)


def ensure_clip_config(cache_dir=None):
    """Put the public CLIP ViT-L/14-336 config in the Hugging Face cache so the exporter resolves it offline."""
    from huggingface_hub.constants import HF_HUB_CACHE
    from transformers import CLIPConfig

    repo_dir = Path(cache_dir or HF_HUB_CACHE) / ("models--" + CLIP_REPO.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / CLIP_SNAPSHOT
    if (snapshot / "config.json").exists():
        return snapshot
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    CLIPConfig(vision_config=CLIP_VIT_L_336, projection_dim=768).to_json_file(snapshot / "config.json")
    (repo_dir / "refs" / "main").write_text(CLIP_SNAPSHOT)
    return snapshot


def write_processor_files(out, tokenizer, num_crops):
    """Tokenizer, chat template, preprocessor config and the model's own code (loaded through auto_map)."""
    tokenizer.save_pretrained(out)
    preprocessor = {
        "auto_map": AUTO_MAP["preprocessor_config.json"], "num_crops": num_crops, "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD, "image_processor_type": "Phi3VImageProcessor",
        "processor_class": "Phi3VProcessor", "num_img_tokens": TOKENS_PER_CROP,
    }
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    from . import copy_model_code

    copy_model_code(out)


def write_generation_config(out, tokenizer):
    generation = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": stop_token_ids(tokenizer),
                  "pad_token_id": tokenizer.pad_token_id}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2))


def build_tiny(out, seed=0):
    """Tiny random phi3_v: real architecture, 2 decoder layers of width 256, 2 CLIP layers of width 1024."""
    from .modeling_phi3_v import Phi3VForCausalLM

    tokenizer = build_tokenizer()
    config = make_config("tiny", vocab_size=64 * math.ceil(len(tokenizer) / 64))
    config.bos_token_id, config.eos_token_id = 1, 2
    config.pad_token_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    torch.manual_seed(seed)
    model = Phi3VForCausalLM(config)
    tiny_init(model, seed)
    model.save_pretrained(out, safe_serialization=True)
    write_processor_files(out, tokenizer, num_crops=4)
    write_generation_config(out, tokenizer)


def random_tensor(shape, name, generator, dtype):
    """A random weight of this shape: ones for norms, N(0, 0.02) otherwise."""
    if "norm" in name:
        return torch.ones(shape, dtype=dtype)
    return (torch.randn(shape, generator=generator) * 0.02).to(dtype)


def build_full(out, seed=0, layers=None, dtype=torch.bfloat16, shard_bytes=2 << 30):
    """Random weights with Phi-3.5-vision's real dimensions, written shard by shard (RAM stays near one shard)."""
    from transformers.modeling_utils import no_init_weights

    from .modeling_phi3_v import Phi3VForCausalLM

    tokenizer = build_tokenizer()
    config = make_config("full", layers=layers)
    config.pad_token_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    with torch.device("meta"), no_init_weights():
        shapes = {name: tuple(t.shape) for name, t in Phi3VForCausalLM(config).state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    shards, current, size = [], {}, 0
    for name, shape in shapes.items():
        current[name] = random_tensor(shape, name, generator, dtype)
        size += current[name].numel() * current[name].element_size()
        if size >= shard_bytes:
            shards.append(_write_shard(out, len(shards), current))
            current, size = {}, 0
    if current:
        shards.append(_write_shard(out, len(shards), current))
    _write_index(out, shards)
    config.save_pretrained(out)
    write_processor_files(out, tokenizer, num_crops=4)
    write_generation_config(out, tokenizer)


def _write_shard(out, index, tensors):
    name = f"model-{index + 1:05d}.safetensors"
    save_file(tensors, out / name, metadata={"format": "pt"})
    return name, {key: t.numel() * t.element_size() for key, t in tensors.items()}


def _write_index(out, shards):
    total = len(shards)
    weight_map, total_size = {}, 0
    for i, (name, sizes) in enumerate(shards):
        final = f"model-{i + 1:05d}-of-{total:05d}.safetensors"
        (out / name).rename(out / final)
        weight_map.update({key: final for key in sizes})
        total_size += sum(sizes.values())
    index = {"metadata": {"total_size": total_size}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def make_checkpoint(kind, out, seed=0, layers=None, force=False):
    """Build `tiny` or `full` into out (written beside it, renamed into place). Returns seconds taken."""
    out = Path(out)
    if out.exists() and not force:
        raise OvphiError(f"{out} exists (use --force to replace it)")
    if kind not in ("tiny", "full"):
        raise OvphiError(f"unknown checkpoint kind {kind!r}: choose tiny or full")
    start = time.perf_counter()
    ensure_clip_config()
    with partial_folder(out) as partial:
        build_tiny(partial, seed) if kind == "tiny" else build_full(partial, seed, layers)
    return time.perf_counter() - start

