"""Engine `genai`: openvino_genai.VLMPipeline with a ChatHistory, which keeps the KV cache between turns
itself. Needs no torch or transformers at run time."""
import json
import time

import numpy as np
import openvino as ov
import openvino_genai

from ..errors import OvphiError, PromptTooLong
from ..model.constants_phi3_v import crop_grid, num_image_tokens
from ..model.tokens import folder_stop_token_ids
from .compiled_cache import weight_files
from .config import GenerationConfig
from .engine import IR_FILES, TOKENIZER_IRS, Capabilities, Chunk, Engine, Status, answer_end, turn_result
from .memory import check_free_memory, kv_cache_bytes
from .prompt import tagged_messages
from .timings import TurnTimings


# Every VLMPipeline this process loads, kept until it exits: once one has been freed, a child this process forks
# can die with SIGSEGV before it execs (ptyprocess's, as it sets the terminal size; genai 2026.4.1). A dropped
# engine and its turns are freed; its pipeline is not.
LOADED_PIPELINES = []


class TextPieces:
    """genai's TextStreamer's callback: each piece of text, emitted as a Chunk with the token ids it came from.
    Apart from RecordingStreamer, which holds the native TextStreamer: a callback that led back to its holder
    would make a cycle through a native object that Python's garbage collector cannot see (each turn's handle, its
    events and the engine were never freed)."""

    def __init__(self, emit, started, stop_requested):
        self.emit, self.started, self.stop_requested = emit, started, stop_requested
        self.token_ids, self.pending = [], []  # every token id written; those since the last piece

    def take(self, tokens):
        self.token_ids += tokens
        self.pending = self.pending + tokens

    def status(self, otherwise=openvino_genai.StreamingStatus.RUNNING):
        """STOP once a stop was requested, else `otherwise`."""
        return openvino_genai.StreamingStatus.STOP if self.stop_requested.is_set() else otherwise

    def __call__(self, text):
        self.emit(Chunk(text, self.pending, time.perf_counter() - self.started))
        self.pending = []
        return self.status()


class RecordingStreamer(openvino_genai.StreamerBase):
    """genai's TextStreamer (incremental detokenization) feeding TextPieces with each token id."""

    def __init__(self, tokenizer, pieces):
        super().__init__()
        self.pieces = pieces
        self.text = openvino_genai.TextStreamer(tokenizer, pieces)

    def write(self, token):
        self.pieces.take(list(token) if isinstance(token, (list, tuple)) else [token])
        return self.pieces.status(self.text.write(token))

    def end(self):
        self.text.end()


def image_tensor(image):
    """PIL image -> the uint8 (1, H, W, 3) tensor VLMPipeline takes."""
    return ov.Tensor(np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8)[None]))


def genai_generation(config, generation, stop_ids):
    """genai's GenerationConfig `config` set to the turn's GenerationConfig (stop_ids: the model's stop tokens)."""
    config.max_new_tokens = generation.max_new_tokens
    config.do_sample = not generation.greedy
    config.stop_token_ids = set() if generation.ignore_eos else set(stop_ids)
    config.ignore_eos = generation.ignore_eos
    config.repetition_penalty = generation.repetition_penalty
    if generation.grammar is not None:
        config.structured_output_config = openvino_genai.StructuredOutputConfig(grammar=generation.grammar.ebnf)
    if not generation.greedy:
        config.temperature, config.top_p, config.top_k = generation.temperature, generation.top_p, generation.top_k
        if generation.seed is not None:
            config.rng_seed = generation.seed
    return config


def vision_seconds(metrics):
    """The seconds one genai generate call spent encoding pictures (its VLMPerfMetrics)."""
    return metrics.get_vision_encoding_duration().mean / 1000


def folder_num_crops(model_dir):
    """The HD crops a picture gets in genai: the folder's preprocessor_config.json num_crops."""
    return json.loads((model_dir / "preprocessor_config.json").read_text()).get("num_crops")


def prompt_status(pictures):
    """The Status a genai turn gives before its first token: genai reads the prompt and encodes its `pictures` new
    pictures in one call, without saying how far it is."""
    seen = f" and encoding {pictures} image{'s' * (pictures > 1)}" if pictures else ""
    return Status("prefill", f"reading the prompt{seen}", 0, None)


def kv_element_bytes(device, precision):
    """Bytes of a KV cache element: the precision asked for, or the device's default (u8 on CPU), else 2."""
    bits = {"u4": 4, "u8": 8, "i8": 8, "f16": 16, "bf16": 16, "f32": 32}
    if precision:
        return bits[precision] / 8
    try:
        return ov.Core().get_property(device, "KV_CACHE_PRECISION").bitwidth / 8
    except RuntimeError:  # a device (AUTO, ...) that does not say
        return 2


def check_genai_turn(engine, conversation, generation):
    """What openvino.genai cannot do for this turn, refused in one line before any work: another num_crops than
    the folder's, repetition_penalty with images (genai #4405), a prompt past the context. Returns the prompt's
    tokens (prompt_tokens)."""
    if generation.num_crops not in (None, engine.num_crops):
        raise OvphiError(f"the {engine.name} engine uses the folder's num_crops ({engine.num_crops}, in"
                         " preprocessor_config.json); use --backend optimum for another value")
    if generation.repetition_penalty != 1.0 and conversation.images:
        raise OvphiError("repetition_penalty with images fails inside openvino.genai 2026.4.1 (its issue #4405:"
                         " image positions are negative ids); use --backend optimum, or no penalty")
    count, context = prompt_tokens(engine.tokenizer, conversation, engine.num_crops), \
        engine.config["max_position_embeddings"]
    if count >= context:  # refused before any work: genai cannot be interrupted inside a prefill
        raise PromptTooLong(f"the prompt has about {count} tokens; the context holds {context}")
    return count


def prompt_tokens(tokenizer, conversation, num_crops):
    """About how many tokens genai will read: its templated text, each picture's `<|image_N|>` tag counted
    beside the picture's tokens (a few more than genai reads)."""
    text = tokenizer.apply_chat_template(tagged_messages(conversation.messages), add_generation_prompt=True)
    count = tokenizer.encode(text).input_ids.get_shape()[1]
    for part in conversation.images:
        columns, rows, _, _ = crop_grid(*part.image.size, num_crops)
        count += num_image_tokens(rows, columns)
    return count


class GenaiEngine(Engine):
    name = "genai"
    # On CPU, compiling the IR is faster than importing the compiled blobs, whose lookup hashes every weight:
    # 5.3 s against 6.0-8.8 s on the full-size INT4 IR (docs/benchmarks.md), so the cache is for GPUs.
    capabilities = Capabilities(compiled_cache="accelerators", ebnf_grammar=True)
    required_files = IR_FILES + TOKENIZER_IRS

    def pipeline_properties(self):
        # Paged attention with prefix caching (a later turn, or a new conversation about a picture seen before,
        # reuses the KV blocks of the prompt's known start), but without splitting a prompt into chunks: chunked,
        # LongRoPE would pick its short factors for the chunks before position 4096 (PyTorch: long for all).
        scheduler = openvino_genai.SchedulerConfig()
        scheduler.dynamic_split_fuse = False
        scheduler.max_num_batched_tokens = self.config["max_position_embeddings"]  # a whole prompt in one step
        scheduler.enable_prefix_caching = True
        return {"ATTENTION_BACKEND": "PA", "scheduler_config": scheduler} | \
            self.options.openvino_properties(self.model_dir)

    def load_model(self):
        self.check_tokenless_ids_masked()
        self.pipe = openvino_genai.VLMPipeline(str(self.model_dir), self.device, **self.pipeline_properties())
        LOADED_PIPELINES.append(self.pipe)
        self.num_crops = folder_num_crops(self.model_dir)
        self.tokenizer = self.pipe.get_tokenizer()
        self.stop_ids = set(folder_stop_token_ids(self.model_dir)) or set(
            self.pipe.get_generation_config().stop_token_ids)
        self.kv_element_bytes = kv_element_bytes(self.device, self.options.kv_cache_precision)

    def mapped_weights(self):
        return weight_files(self.model_dir, self.cache_folder)

    def reset(self):
        self.history, self.sent, self.sent_images, self.cached_tokens = None, [], [], 0

    def history_sends(self, conversation):
        """The generate calls that bring the ChatHistory up to the conversation, as (messages to append, their
        pictures) pairs, the turn's own call last. genai takes pictures only with the last user message, so an
        earlier message with pictures it has not seen is a call of its own, replayed for one token (prefix caching
        keeps its KV blocks for the next call). A new ChatHistory when the conversation changed: its messages, or
        its images by content (a server's next client may send the same words about another picture)."""
        rendered = tagged_messages(conversation.messages)
        digests = [part.digest for part in conversation.images]
        if self.history is None or rendered[:len(self.sent)] != self.sent or \
                digests[:len(self.sent_images)] != self.sent_images:
            self.reset()
            self.history = openvino_genai.ChatHistory()
        sends, messages = [], []
        for message, text in zip(conversation.messages[len(self.sent):], rendered[len(self.sent):]):
            messages.append(text)
            if message.images:
                sends.append((messages, [part.image for part in message.images]))
                messages = []
        if messages or not sends:  # the turn's own call, unless its last message brought pictures
            sends.append((messages, []))
        self.sent, self.sent_images = rendered, digests
        return sends

    def send(self, messages, pictures, config, streamer=None):
        """Append the messages to the ChatHistory and generate after them; genai's result."""
        for message in messages:
            self.history.append(message)
        return self.pipe.generate(self.history, images=[image_tensor(picture) for picture in pictures],
                                  generation_config=config, streamer=streamer)

    def replay(self, sends):
        """Send each earlier message with pictures for one token, which is dropped; the seconds spent encoding."""
        if not sends:
            return 0.0
        one_token = genai_generation(self.pipe.get_generation_config(), GenerationConfig(max_new_tokens=1),
                                     self.stop_ids)
        return sum(vision_seconds(self.send(*send, one_token).perf_metrics) for send in sends)

    def generate(self, conversation, generation, emit):
        count = check_genai_turn(self, conversation, generation)
        # paged attention allocates the new positions' KV blocks as it reads them (tiled attention, last logits only)
        new_tokens = max(count - self.cached_tokens, 0)
        check_free_memory(kv_cache_bytes(self.config, new_tokens, self.kv_element_bytes), new_tokens)
        sends = self.history_sends(conversation)
        emit(prompt_status(sum(len(pictures) for _, pictures in sends)))
        *replays, (messages, pictures) = sends
        started = time.perf_counter()
        replay_vision_s = self.replay(replays)
        replay_s = time.perf_counter() - started
        pieces = TextPieces(emit, started, self.stop_requested)
        config = genai_generation(self.pipe.get_generation_config(), generation, self.stop_ids)
        result = self.send(messages, pictures, config, RecordingStreamer(self.tokenizer, pieces))
        total = time.perf_counter() - started
        ids = pieces.token_ids
        kept, stopped_by_token, cancelled = answer_end(ids, self.stop_ids, generation, self.stop_requested)
        return turn_result(result.texts[0].strip(), kept, stopped_by_token, cancelled,
                           self.timings(result.perf_metrics, total, replay_s, replay_vision_s))

    def timings(self, metrics, total_s, replay_s, replay_vision_s):
        """TurnTimings from genai's perf metrics of the turn's own call, the turn's wall time (total_s, on the clock
        of its Chunks' time_s: genai's own generate duration leaves out its set-up) and the seconds (all, and
        encoding pictures) of the earlier turns replayed before it; processed tokens = prompt minus what the last
        turn cached (None when that cannot be told)."""
        prompt = metrics.get_num_input_tokens()
        answer = metrics.get_num_generated_tokens()
        if not self.cached_tokens:
            processed = prompt
        elif self.cached_tokens <= prompt:
            processed = prompt - self.cached_tokens
        else:  # the re-tokenized answer is shorter than the generated one: the count is unknown
            processed = None
        self.cached_tokens = prompt + answer
        tpot = metrics.get_tpot().mean / 1000 if answer > 1 else None
        return TurnTimings(load_s=self.load_seconds,
                           vision_s=replay_vision_s + vision_seconds(metrics),
                           ttft_s=replay_s + metrics.get_ttft().mean / 1000, tpot_s=tpot, total_s=total_s,
                           prompt_tokens=prompt, processed_tokens=processed, answer_tokens=answer)
