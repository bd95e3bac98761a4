"""What a turn should do (GenerationConfig) and what the device should do (RuntimeOptions): two typed
bundles, each validated once, before any model loads, with the same meaning in every engine."""
import math
import os
from dataclasses import dataclass, field

from ..errors import OvphiError

MAX_NUM_CROPS = 16  # Phi-3.5-vision's processor: up to 16 crops per image
PRECISIONS = ("f32", "bf16", "f16")
KV_CACHE_PRECISIONS = ("u8", "u4", "i8", "f16", "bf16", "f32")
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
# below this a temperature decodes greedily: the distribution is one token anyway, and logits / temperature would
# overflow float32 (and openvino.genai reads a float32 temperature of 0)
GREEDY_BELOW = 1e-5
SEEDS = 1 << 64  # a seed is an unsigned 64-bit number (torch and openvino.genai both take that range)
MAX_TOP_LOGPROBS = 20  # alternatives per token, as OpenAI's top_logprobs


@dataclass(frozen=True)
class GenerationConfig:
    """One turn's settings. temperature 0 (or below 1e-5) is greedy decoding; above it samples with top_p / top_k.
    num_crops: HD crops per image (None: the model folder's, 4 for Phi-3.5-vision). ignore_eos makes
    answers of exactly max_new_tokens (benchmarks). grammar: the constraint.Grammar the answer is constrained
    to while it is generated (constraint.schema_grammar makes one of a JSON schema; llguidance Lark text is taken
    as Grammar(text)), in engines with capabilities.sampler, and in the genai engines where it has EBNF. So are,
    in engines with capabilities.sampler only, logit_bias ({token id: -100 to 100 added to its logit}) and OpenAI's
    presence and frequency penalties (-2 to 2, over the answer's tokens). logprobs (0 to 20, None: off): each
    answer token's log probability, with that many of the most likely tokens at its place, in Chunk.logprobs.
    stop: strings that end the answer where the first of them begins (it is not part of the answer).
    logits_processors: callables (history ids (1, n), logits (1, V)) -> logits, run on each token after the
    bias and penalties (sampling.logits_processors lists the whole order), in engines with capabilities.sampler."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int | None = None
    num_crops: int | None = None
    ignore_eos: bool = False
    grammar: object = None  # a constraint.Grammar, or Lark text
    logit_bias: dict = field(default_factory=dict)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: int | None = None
    stop: tuple = ()
    logits_processors: tuple = ()

    def __post_init__(self):
        for name in ("temperature", "top_p", "repetition_penalty", "presence_penalty", "frequency_penalty"):
            if not math.isfinite(getattr(self, name)):
                raise OvphiError(f"{name} must be a finite number, not {getattr(self, name)}")
        if self.seed is not None and not 0 <= self.seed < SEEDS:
            raise OvphiError(f"seed must be 0 to 2**64 - 1, not {self.seed}")
        if self.max_new_tokens < 1:
            raise OvphiError(f"max_new_tokens must be at least 1, not {self.max_new_tokens}")
        if self.temperature < 0:
            raise OvphiError(f"temperature must be 0 (greedy) or more, not {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise OvphiError(f"top_p must be in (0, 1], not {self.top_p}")
        if self.top_k < 0:
            raise OvphiError(f"top_k must be 0 (off) or more, not {self.top_k}")
        if self.repetition_penalty <= 0:
            raise OvphiError(f"repetition_penalty must be above 0 (1 is off), not {self.repetition_penalty}")
        if self.num_crops is not None and not 1 <= self.num_crops <= MAX_NUM_CROPS:
            raise OvphiError(f"num_crops must be 1 to {MAX_NUM_CROPS}, not {self.num_crops}")
        for name in ("presence_penalty", "frequency_penalty"):
            if not -2 <= getattr(self, name) <= 2:
                raise OvphiError(f"{name} must be -2 to 2, not {getattr(self, name)}")
        for token, bias in self.logit_bias.items():
            if not isinstance(token, int) or token < 0 or not -100 <= bias <= 100:
                raise OvphiError(f"logit_bias maps token ids (0 or more) to -100 to 100, not {token}: {bias}")
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_TOP_LOGPROBS:
            raise OvphiError(f"logprobs must be 0 to {MAX_TOP_LOGPROBS} alternatives, not {self.logprobs}")
        object.__setattr__(self, "stop", (self.stop,) if isinstance(self.stop, str) else tuple(self.stop))
        object.__setattr__(self, "logits_processors", tuple(self.logits_processors))
        if not all(callable(processor) for processor in self.logits_processors):
            raise OvphiError("logits_processors must be callables (history, logits) -> logits")
        if not all(isinstance(stop, str) and stop for stop in self.stop):
            raise OvphiError(f"stop strings must be text of one character or more, not {self.stop}")
        if self.grammar is not None:
            from .constraint import Grammar, check_grammar

            if isinstance(self.grammar, str):
                object.__setattr__(self, "grammar", Grammar(self.grammar))
            check_grammar(self.grammar.lark)

    @property
    def greedy(self):
        return self.temperature < GREEDY_BELOW


def default_kv_cache_gb():
    """An eighth of the machine's memory, at least 1 GB: 1 GB on an 8 GB laptop holds about 5,000 tokens of the
    full-size model's u8 KV cache (192 KiB a token), four conversations of a picture and a few turns."""
    return max(1, os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 8 >> 30)


def batch_scheduler_settings(context, slots, kv_cache_gb):
    """openvino.genai's SchedulerConfig fields for continuous batching, in the genai-batch engine and in the OVMS
    graph of `ovphi export-ovms` alike: paged attention with prefix caching, but a whole prompt in one step
    (`context` tokens at most): chunked, LongRoPE would pick its short factors for the chunks before position 4096
    (PyTorch: long for all); `slots` sequences at once, a KV cache of `kv_cache_gb` GB."""
    return {"enable_prefix_caching": True, "dynamic_split_fuse": False, "max_num_batched_tokens": context,
            "max_num_seqs": slots, "cache_size": kv_cache_gb}


@dataclass(frozen=True)
class RuntimeOptions:
    """Where and how a model runs: device (CPU, GPU, GPU.N, AUTO), inference and KV-cache precision,
    performance hint, the compiled-model cache in MODEL_DIR/model_cache, and any other OpenVINO
    properties (e.g. {"DYNAMIC_QUANTIZATION_GROUP_SIZE": "64"}). The PyTorch engine reads `precision`
    (f32 or bf16) as its dtype. prefix_cache_mb bounds the KV snapshots an engine with a prefix cache keeps
(one image's prefix is about 0.6 GB at full size; 0 turns it off)."""

    device: str = "CPU"
    precision: str | None = None
    kv_cache_precision: str | None = None
    performance_hint: str = "LATENCY"
    cache: bool = True
    properties: dict = field(default_factory=dict)
    prefix_cache_mb: int = 1024  # KV snapshots after images, for new conversations about them (0: none)
    slots: int = 4  # conversations an engine with continuous batching (genai-batch) runs at once
    kv_cache_gb: int = field(default_factory=default_kv_cache_gb)  # that engine's paged KV cache

    def __post_init__(self):
        if self.prefix_cache_mb < 0:
            raise OvphiError(f"prefix_cache_mb must be 0 (off) or more, not {self.prefix_cache_mb}")
        if self.slots < 1:
            raise OvphiError(f"slots must be 1 or more, not {self.slots}")
        if self.kv_cache_gb < 1:
            raise OvphiError(f"kv_cache_gb must be 1 or more (openvino.genai counts it in whole GB), not"
                             f" {self.kv_cache_gb}")
        checks = [("precision", self.precision, PRECISIONS), ("kv_cache_precision", self.kv_cache_precision,
                                                                KV_CACHE_PRECISIONS),
                  ("performance_hint", self.performance_hint, PERFORMANCE_HINTS)]
        for name, value, allowed in checks:
            if value is not None and value not in allowed:
                raise OvphiError(f"{name} {value} is not one of {', '.join(allowed)}")

    def openvino_properties(self, model_dir):
        """The OpenVINO properties these options stand for."""
        folder = self.compiled_cache_folder(model_dir)
        return self.plugin_properties() | ({"CACHE_DIR": str(folder)} if folder else {})

    def plugin_properties(self):
        """The properties but the compiled-model cache's."""
        properties = {"PERFORMANCE_HINT": self.performance_hint}
        if self.precision:
            properties["INFERENCE_PRECISION_HINT"] = self.precision
        if self.kv_cache_precision:
            properties["KV_CACHE_PRECISION"] = self.kv_cache_precision
        return properties | self.properties

    def compiled_cache_folder(self, model_dir):
        """ovphi's folder in MODEL_DIR/model_cache for these options (compiled_cache.py); None when the cache is
        off, the model folder is read-only or an --ov-option names another CACHE_DIR."""
        if not self.cache or "CACHE_DIR" in self.properties or not os.access(model_dir, os.W_OK):
            return None
        from .compiled_cache import cache_folder

        return cache_folder(model_dir, self.device, self.plugin_properties())


def parse_properties(items):
    """{KEY: VALUE} of 'KEY=VALUE' strings (the --ov-option arguments)."""
    properties = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise OvphiError(f"--ov-option {item} is not KEY=VALUE")
        properties[key.strip()] = value
    return properties
