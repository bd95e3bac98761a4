"""Backend `optimum`: OVModelForVisualCausalLM plus the processor, streaming from a worker thread."""
import threading
import time
from pathlib import Path

from transformers import AutoProcessor, TextIteratorStreamer

from ..errors import OvphiError
from ..model import register_auto_classes
from ..model.tokenizer import stop_token_ids
from .devices import check_device

IR_FILES = ["openvino_language_model.xml", "openvino_text_embeddings_model.xml",
            "openvino_vision_embeddings_model.xml", "openvino_vision_projection_model.xml", "config.json",
            "preprocessor_config.json", "tokenizer_config.json"]


class TimedStreamer(TextIteratorStreamer):
    """A text streamer that also records when each generated token arrived."""

    def __init__(self, tokenizer):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        self.token_times = []

    def put(self, value):
        if not self.next_tokens_are_prompt:
            self.token_times.extend([time.perf_counter()] * value.numel())
        super().put(value)


class OptimumVLM:
    """A phi3_v IR folder loaded with optimum-intel; `stream` yields text, `last_timings` says how long it took."""

    backend = "optimum"

    def __init__(self, model_dir, device="CPU", ov_config=None):
        started = time.perf_counter()
        model_dir = Path(model_dir)
        missing = [name for name in IR_FILES if not (model_dir / name).exists()]
        if missing:
            raise OvphiError(f"{model_dir} is not a complete phi3_v IR folder: missing {', '.join(missing)}")
        self.device = check_device(device)
        from optimum.intel import OVModelForVisualCausalLM

        register_auto_classes()
        self.model = OVModelForVisualCausalLM.from_pretrained(str(model_dir.resolve()), device=self.device, ov_config=ov_config)
        self.processor = AutoProcessor.from_pretrained(model_dir)
        self.stop_ids = stop_token_ids(self.processor.tokenizer)
        self.model.generation_config.eos_token_id = self.stop_ids  # exported configs may say eos 2 only
        self.vision_seconds = 0.0
        encode = self.model.get_vision_embeddings

        def timed_vision(*args, **kwargs):
            start = time.perf_counter()
            try:
                return encode(*args, **kwargs)
            finally:
                self.vision_seconds += time.perf_counter() - start

        self.model.get_vision_embeddings = timed_vision
        self.load_seconds = time.perf_counter() - started
        self.last_timings = None

    def prompt_inputs(self, messages, images, num_crops=None):
        text = self.processor.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = self.processor(text, images or None, num_crops=num_crops)
        context = self.model.config.max_position_embeddings
        if inputs["input_ids"].shape[1] >= context:
            raise OvphiError(f"the prompt has {inputs['input_ids'].shape[1]} tokens; the context holds {context}")
        return inputs

    def stream(self, messages, images=(), num_crops=None, **generation):
        """Yield answer text pieces for chat `messages` (with <|image_N|> tags) and their images."""
        inputs = self.prompt_inputs(messages, list(images), num_crops)
        streamer = TimedStreamer(self.processor.tokenizer)
        self.vision_seconds = 0.0
        failure = []

        def work():
            try:
                self.model.generate(**inputs, streamer=streamer, **generation)
            except Exception as error:  # surfaced in the caller's thread below
                failure.append(error)
                streamer.end()

        start = time.perf_counter()
        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        yield from streamer
        worker.join()
        if failure:
            raise failure[0]
        end = time.perf_counter()
        times = streamer.token_times
        first = times[0] - start if times else None
        per_token = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else None
        self.last_timings = {
            "load_s": self.load_seconds, "vision_s": self.vision_seconds, "ttft_s": first,
            "tpot_s": per_token, "total_s": end - start, "prompt_tokens": int(inputs["input_ids"].shape[1]),
            "answer_tokens": len(times), "tokens_per_s": (len(times) - 1) / (times[-1] - times[0])
            if len(times) > 1 and times[-1] > times[0] else None,
        }
