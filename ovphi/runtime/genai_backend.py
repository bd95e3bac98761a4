"""Backend `genai`: openvino_genai.VLMPipeline with a ChatHistory, which keeps the KV cache between
turns by itself. Needs no torch or transformers at run time."""
import json
import queue
from pathlib import Path

import numpy as np
import openvino as ov
import openvino_genai
from tokenizers import Tokenizer

from ..errors import OvphiError
from ..model.tokens import stop_token_ids
from .backend import Backend
from .timings import TurnTimings

DONE = object()


class RecordingStreamer(openvino_genai.StreamerBase):
    """genai's TextStreamer (incremental detokenization) that also keeps the generated token ids."""

    def __init__(self, tokenizer, on_text):
        super().__init__()
        self.token_ids = []
        self.text = openvino_genai.TextStreamer(tokenizer, on_text)

    def write(self, token):
        self.token_ids.extend(token if isinstance(token, (list, tuple)) else [token])
        return self.text.write(token)

    def end(self):
        self.text.end()


def image_tensor(image):
    """PIL image -> the uint8 (1, H, W, 3) tensor VLMPipeline takes."""
    return ov.Tensor(np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8)[None]))


class GenaiVLM(Backend):
    """A phi3_v IR folder in VLMPipeline; call `stream_turn` once per user turn."""

    backend = "genai"

    def pipeline_options(self, ov_config):
        # SDPA, not the default paged attention: continuous batching prefills long prompts in chunks, and
        # LongRoPE then picks its short factors for the chunks before position 4096 (PyTorch: long for all)
        return {"ATTENTION_BACKEND": "SDPA"} | (ov_config or {})

    def load_model(self, model_dir, ov_config):
        self.pipe = openvino_genai.VLMPipeline(str(model_dir), self.device, **self.pipeline_options(ov_config))
        self.num_crops = json.loads((Path(model_dir) / "preprocessor_config.json").read_text()).get("num_crops")
        tokenizer_file = Path(model_dir) / "tokenizer.json"
        self.stop_ids = set(stop_token_ids(Tokenizer.from_file(str(tokenizer_file)))) if tokenizer_file.exists() \
            else set(self.pipe.get_generation_config().stop_token_ids)

    def reset(self):
        """Forget the conversation: the next turn starts a new ChatHistory."""
        self.history, self.sent_messages, self.sent_images, self.cached_tokens = None, [], 0, 0

    def generation_config(self, max_new_tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
                          repetition_penalty=None, seed=None, ignore_eos=False):
        config = self.pipe.get_generation_config()
        config.max_new_tokens = max_new_tokens
        config.do_sample = do_sample
        config.stop_token_ids = set() if ignore_eos else self.stop_ids
        config.ignore_eos = ignore_eos
        for name, value in (("temperature", temperature), ("top_p", top_p), ("top_k", top_k),
                            ("repetition_penalty", repetition_penalty), ("rng_seed", seed)):
            if value is not None:
                setattr(config, name, value)
        return config

    def extend_history(self, messages, images):
        """Append to the ChatHistory what it lacks; start a new one when the conversation changed."""
        if self.history is None or messages[:len(self.sent_messages)] != self.sent_messages:
            earlier = " ".join(m["content"] for m in messages[:-1] if m["role"] == "user")
            if "<|image_" in earlier:
                raise OvphiError("the genai backend cannot replay a conversation whose earlier turns have images;"
                                 " use --backend optimum")
            self.reset()
            self.history = openvino_genai.ChatHistory()
        for message in messages[len(self.sent_messages):]:
            self.history.append(dict(message))
        self.sent_messages = [dict(m) for m in messages]
        new_images = list(images[self.sent_images:])
        self.sent_images = len(images)
        return new_images

    def stream_turn(self, messages, images=(), num_crops=None, max_new_tokens=256, **generation):
        """Yield answer text for the conversation `messages` and all its `images` (see OptimumVLM)."""
        if num_crops not in (None, self.num_crops):
            raise OvphiError(f"the genai backend uses the folder's num_crops ({self.num_crops}, in"
                             " preprocessor_config.json); use --backend optimum for another value")
        new_images = self.extend_history(messages, list(images))
        config = self.generation_config(max_new_tokens, **generation)
        pieces = queue.Queue()

        def on_text(text):
            pieces.put(text)
            stop = self.stop_requested.is_set()
            return openvino_genai.StreamingStatus.STOP if stop else openvino_genai.StreamingStatus.RUNNING

        streamer = RecordingStreamer(self.pipe.get_tokenizer(), on_text)

        def work():
            return self.pipe.generate(self.history, images=[image_tensor(i) for i in new_images],
                                      generation_config=config, streamer=streamer)

        result = yield from self.streamed(work, iter(pieces.get, DONE), lambda: pieces.put(DONE))
        self.last_answer_ids = streamer.token_ids
        self.last_timings = self.timings(result.perf_metrics)

    def timings(self, metrics):
        """TurnTimings from genai's perf metrics; processed tokens = prompt minus what the last turn cached
        (None when that cannot be told)."""
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
        return TurnTimings(load_s=self.load_seconds, vision_s=metrics.get_vision_encoding_duration().mean / 1000,
                           ttft_s=metrics.get_ttft().mean / 1000, tpot_s=tpot,
                           total_s=metrics.get_generate_duration().mean / 1000, prompt_tokens=prompt,
                           processed_tokens=processed, answer_tokens=answer)


class StockGenaiVLM(GenaiVLM):
    """Backend `genai-stock`: VLMPipeline as a plain user runs it, with no properties (paged attention, no
    compiled-model cache, none of ovphi's options); `ovphi bench` sets ovphi's runtime beside it."""

    backend = "genai-stock"

    def pipeline_options(self, ov_config):
        return {}
