"""The engine contract: what every backend implements, and the typed events a turn streams.

An engine loads a model folder, answers one Conversation turn at a time and forgets it on `reset`.
`submit(conversation, generation)` queues the turn on the engine's one generation thread (scheduler.py) and
returns its handle; `stream(conversation, generation)` iterates one and yields a `Chunk` per piece of
text (with its token ids and arrival time), then one `TurnResult` (answer, token ids, finish reason,
timings); an engine that can say what it does before the first token also yields `Status` events.
Callers ask `capabilities` what an engine can do instead of comparing names; the registry (registry.py)
maps names to engine classes.

A new engine is one file: subclass Engine, set name / capabilities (/ required_files), implement
`load_model`, `reset` and `generate`; then add one line to registry.ENGINES.
"""
import gc
import os
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from ..errors import OvphiError, Unsupported
from ..files import check_model_folder, read_json
from ..resources import MADV_DONTNEED, paging_out, read_ahead
from .compiled_cache import keep_only, tree_bytes
from .config import GenerationConfig, RuntimeOptions
from .devices import check_device
from .events import Chunk, Status, TurnResult  # noqa: F401 (the contract's events, imported from here)
from .scheduler import Scheduler
from .stop_text import StopCut

IR_FILES = ["openvino_language_model.xml", "openvino_text_embeddings_model.xml",
            "openvino_vision_embeddings_model.xml", "openvino_vision_projection_model.xml", "config.json",
            "preprocessor_config.json", "tokenizer_config.json"]
TOKENIZER_IRS = ["openvino_tokenizer.xml", "openvino_detokenizer.xml"]
FINISH_REASONS = ("stop", "length", "cancelled")
DEFAULT_GENERATION = GenerationConfig()

# Garbage collected in a forked child frees there what this process left in reference cycles (an optimum engine
# stays in one after torch.fx's first import, which keeps the frames above it): an OpenVINO model freed in a
# child hangs it. Collected here first, before each os.fork (ptyprocess, multiprocessing's fork); subprocess's
# fork-and-exec runs no Python in the child.
os.register_at_fork(before=gc.collect)


@dataclass(frozen=True)
class Capabilities:
    folder: str = "ir"  # what the engine loads: "ir" (an `ovphi convert` folder) or "checkpoint" (Hugging Face)
    logits: bool = False  # score(): teacher-forced logits, for `ovphi eval`
    num_crops_per_call: bool = False  # GenerationConfig.num_crops may differ from the folder's
    runtime_options: bool = True  # honours RuntimeOptions (the stock runtimes keep their own defaults)
    compiled_cache: str = "none"  # where a filled MODEL_DIR/model_cache loads faster: none, all, accelerators (not CPU)
    openvino_devices: bool = True  # any device OpenVINO sees; else CPU only
    eager: bool = False  # unoptimised (PyTorch eager): benchmarks run only its short scenarios
    sampler: bool = False  # ovphi's Sampler picks each token: grammar, logit_bias, penalties, logprobs, processors
    stops_at_once: bool = False  # a cancel ends a turn within a second also inside a vision encode or a prefill
    ebnf_grammar: bool = False  # openvino.genai constrains answers to GenerationConfig.grammar's EBNF

    def uses_compiled_cache(self, device):
        """Whether a load on `device` reads and fills MODEL_DIR/model_cache."""
        return self.compiled_cache == "all" or (self.compiled_cache == "accelerators" and device != "CPU")


def read_config(model_dir):
    """config.json of a model folder, checked to be Phi-3.5-vision's."""
    config_file = Path(model_dir) / "config.json"
    config = read_json(config_file, "the model's config") if config_file.exists() else {}
    if config.get("model_type") != "phi3_v":
        raise OvphiError(f"{model_dir} holds a '{config.get('model_type')}' model, not Phi-3.5-vision (phi3_v)")
    return config


class Engine(ABC):
    """A model folder loaded for conversation turns. Subclasses set the class attributes and implement
    load_model(), reset() and generate()."""

    name = None
    capabilities = Capabilities()
    required_files = IR_FILES

    def __init__(self, model_dir, options=None):
        started = time.perf_counter()
        self.model_dir = Path(model_dir)
        options = options or RuntimeOptions()
        self.check_folder()
        self.config = read_config(self.model_dir)
        if self.capabilities.openvino_devices:
            self.device = check_device(options.device)
        elif options.device.upper() != "CPU":
            raise OvphiError(f"the {self.name} engine runs on CPU only, not {options.device}")
        else:
            self.device = "CPU"
        self.options = options if self.capabilities.runtime_options else RuntimeOptions(device=options.device)
        if not self.capabilities.uses_compiled_cache(self.device):
            self.options = replace(self.options, cache=False)
        self.stop_requested = threading.Event()
        self.cache_folder = cache = self.options.compiled_cache_folder(self.model_dir)  # None: no cache used
        before = tree_bytes(cache) if cache else 0
        read_ahead(self.mapped_weights())
        with self.unmapping_weights():
            self.load_model()
        self.compiled_cache = keep_only(cache, before) if cache else None  # CacheUse: what the load did to it
        self.reset()
        self.load_seconds = time.perf_counter() - started
        self.scheduler = self.make_scheduler()

    def check_folder(self):
        check_model_folder(self.model_dir)
        missing = [name for name in self.required_files if not (self.model_dir / name).exists()]
        if missing:
            raise OvphiError(f"{self.model_dir} is not a complete phi3_v IR folder: missing {', '.join(missing)}")

    @abstractmethod
    def load_model(self):
        """Load what self.model_dir holds for self.device with self.options."""

    @abstractmethod
    def reset(self):
        """Forget the conversation: the next turn starts from an empty cache."""

    def generate(self, conversation, generation, emit):
        """Answer the conversation's last user turn on the calling thread: call emit(Chunk) for each piece,
        end early once self.stop_requested is set, and return the TurnResult. Every engine run by the one-at-a-time
        Scheduler implements it; an engine with a scheduler of its own (make_scheduler) runs its turns there."""
        raise NotImplementedError

    def close(self):
        """End what the engine runs outside this process (its worker processes); in-process engines have none."""

    def worker_pids(self):
        """The processes besides this one that hold the model (their memory is the engine's too)."""
        return []

    def prefix_cache_counts(self):
        """{"hit": n, "miss": n}: new conversations that did and did not start from a snapshot of their image
        prefix; None for an engine without ovphi's prefix cache."""
        return None

    def make_scheduler(self):
        """What runs this engine's turns: the Scheduler (one at a time, on one generation thread)."""
        return Scheduler(self)

    def score(self, conversation, answer_ids, num_crops=None):
        """Teacher forcing: the logits (len(answer_ids), the tokenizer's size) the model gives each answer token
        after the conversation. Engines with capabilities.logits implement it."""
        raise OvphiError(f"the {self.name} engine does not give logits")

    def submit(self, conversation, generation=None, max_waiting=None):
        """Queue a turn on the engine's one generation thread (scheduler.py) and return its RequestHandle: its
        events, cancel() for this request alone, result(). Busy if `max_waiting` requests already wait."""
        return self.scheduler.submit(conversation, generation or GenerationConfig(), max_waiting)

    def stream(self, conversation, generation=None):
        """Yield the turn's Chunks as they come, then its TurnResult (see submit); closing the iterator early
        cancels the turn and returns once the engine is free."""
        handle = self.submit(conversation, generation)
        try:
            yield from handle
        finally:
            if not handle.done.is_set():
                handle.cancel()
                handle.done.wait()

    def complete(self, conversation, generation=None):
        """The TurnResult alone, for callers that do not stream."""
        return self.submit(conversation, generation).result()

    def turn(self, conversation, generation, emit):
        """Run one turn on the calling thread (the scheduler's): generate, with its Chunks and TurnResult cut at
        the first of generation.stop (stop_text.py). Ends early once self.stop_requested is set."""
        cut = StopCut(generation.stop, emit, self.stop_requested.set)
        with self.unmapping_weights():
            return cut.end(self.generate(conversation, generation, cut))

    def mapped_weights(self):
        """The files this process maps the model's weights from (the IR's .bin files, the compiled blobs of
        self.cache_folder), which a load reads ahead as it begins (resources.read_ahead) and which loading and
        turns unmap as they run: compiling with the compiled-model cache hashes every weight through them, and
        OpenVINO's CPU plugin reads each once, to repack it, on its first inference. Kept mapped, those pages
        stayed resident beside the repacked copy (2.3 of the 6.9 GB peak of one full-size INT4 image turn, AMD
        EPYC). None for an engine that maps no IR in this process, or that runs as its runtime does."""
        return []

    def unmapping_weights(self):
        """A block during which, and at whose end, this process's pages of mapped_weights() are unmapped; they stay
        in the page cache (MADV_DONTNEED) and the little still used is mapped again on use."""
        return paging_out(self.mapped_weights, advice=MADV_DONTNEED)

    def check_generation(self, generation):
        """Unsupported, naming the field, if the turn asks for what this engine cannot do."""
        if self.capabilities.sampler:
            return
        refused = [("logit_bias", "apply logit_bias"),
                   ("presence_penalty", "apply presence or frequency penalties"),
                   ("frequency_penalty", "apply presence or frequency penalties"),
                   ("logprobs", "report log probabilities"),
                   ("logits_processors", "run logits processors")]
        if not self.capabilities.ebnf_grammar:
            refused.insert(0, ("grammar", "constrain an answer (a JSON schema, tool calls)"))
        elif generation.grammar is not None:
            self.check_ebnf_grammar(generation)
        for field_name, what in refused:
            if getattr(generation, field_name) != getattr(DEFAULT_GENERATION, field_name):
                raise Unsupported(f"the {self.name} engine cannot {what}: use the optimum engine (--backend optimum)",
                                  field_name)

    @cached_property
    def manifest(self):
        """The folder's ovphi_manifest.json ({} for a folder ovphi did not make)."""
        from ..convert.manifest import read_manifest

        return read_manifest(self.model_dir) or {}

    def check_tokenless_ids_masked(self):
        """For engines that sample with openvino.genai: refuse a folder whose language model can still give the
        ids that have no token (convert/logits.py), which genai would sample."""
        from ..convert.logits import TOKENLESS_IDS_MASKED

        if TOKENLESS_IDS_MASKED not in self.manifest:
            raise OvphiError(f"{self.model_dir} was converted before ovphi masked the logits of ids that have no token,"
                             f" which the {self.name} engine would sample: convert it again with this ovphi, or use"
                             " the optimum engine (--backend optimum)")

    def check_ebnf_grammar(self, generation):
        """Unsupported if openvino.genai cannot hold this turn's answer to its grammar (it also needs a detokenizer
        that gives it the vocabulary as printed: convert/detokenizer.py)."""
        from ..convert.detokenizer import TOKEN_BYTES

        why = generation.grammar.no_ebnf if generation.grammar.ebnf is None else None
        if why is None and self.manifest.get("detokenizer") != TOKEN_BYTES:
            why = (f"{self.model_dir}'s detokenizer holds SentencePiece pieces, which openvino.genai misreads for a"
                   " grammar; convert it again with this ovphi")
        if why:
            raise Unsupported(f"the {self.name} engine cannot constrain this answer ({why}): use the optimum engine"
                              " (--backend optimum)", "grammar")
        if generation.ignore_eos:
            raise Unsupported(f"the {self.name} engine cannot go on past a constrained answer's end (ignore_eos):"
                              " openvino.genai lifts the constraint there", "ignore_eos")

    def stop(self):
        """Ask the running turn, whoever submitted it, to end (its finish reason: cancelled); a request's own
        handle.cancel() ends that request alone."""
        self.stop_requested.set()

    def warm_up(self):
        """A short text turn, then the vision encoder once where it can run alone; all forgotten. Returns
        the seconds it took. OpenVINO's CPU plugin repacks every weight on its first inference (about 10 s
        for the full INT4 model on 2 cores): afterwards the first real request runs at steady speed."""
        from .conversation import Conversation

        started = time.perf_counter()
        hello = Conversation()
        hello.add("user", "Hello")
        for _ in self.stream(hello, GenerationConfig(max_new_tokens=2, ignore_eos=True)):
            pass
        with self.unmapping_weights():
            self.warm_up_vision()
        self.reset()
        return time.perf_counter() - started

    def warm_up_vision(self):
        """Run the vision encoder once on its own, where the engine can."""


def answer_end(generated, stop_ids, generation, stop_requested):
    """(the answer's ids without its stop token, whether a stop token ended it, whether stop() cut it short)
    of the ids a turn generated."""
    stopped_by_token = bool(generated) and generated[-1] in stop_ids and not generation.ignore_eos
    cancelled = stop_requested.is_set() and not stopped_by_token and len(generated) < generation.max_new_tokens
    return (generated[:-1] if stopped_by_token else list(generated)), stopped_by_token, cancelled


def turn_result(answer, token_ids, stopped_by_token, cancelled, timings):
    """TurnResult with its finish reason: cancelled (stop() was called), stop (a stop token) or length."""
    reason = "cancelled" if cancelled else "stop" if stopped_by_token else "length"
    return TurnResult(answer=answer, token_ids=list(token_ids), finish_reason=reason, timings=timings)
