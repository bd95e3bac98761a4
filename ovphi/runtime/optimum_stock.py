"""Backend `optimum-stock`: OVModelForVisualCausalLM as a plain user runs it (its model card's way:
`generate` on the whole conversation every turn, images encoded and the prompt prefilled again; its own
defaults, none of ovphi's OpenVINO options), so that `ovphi bench` can set ovphi's runtime beside it in
one run. genai_backend.StockGenaiVLM is its genai counterpart.
"""
import time

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from .optimum_backend import OptimumVLM, TimedStreamer
from .timings import turn_timings


class StopOnRequest(StoppingCriteria):
    """Ends generate when the caller asked the turn to stop."""

    def __init__(self, event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)


class StockOptimumVLM(OptimumVLM):
    backend = "optimum-stock"

    page_out_weights = False

    def load_model(self, model_dir, ov_config):
        super().load_model(model_dir, None)
        self.vision_seconds = 0.0
        encode = self.model.get_vision_embeddings

        def timed_encode(*args, **kwargs):  # the vision time of a turn, which generate does not report
            started = time.perf_counter()
            try:
                return encode(*args, **kwargs)
            finally:
                self.vision_seconds += time.perf_counter() - started

        self.model.get_vision_embeddings = timed_encode

    def run_turn(self, messages, images, num_crops, streamer, max_new_tokens, generation):
        """model.generate on the processor's output for the whole conversation."""
        generation = dict(generation)
        started = time.perf_counter()
        self.vision_seconds = 0.0
        ignore_eos = generation.pop("ignore_eos", False)
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = self.processor(text=text, images=list(images) or None, num_crops=num_crops)
        seed = generation.pop("seed", None)
        if seed is not None:
            torch.manual_seed(seed)
        if ignore_eos:
            generation["min_new_tokens"] = max_new_tokens
        answer = self.model.generate(**inputs, streamer=streamer, max_new_tokens=max_new_tokens,
                                     eos_token_id=sorted(self.stop_ids), stopping_criteria=StoppingCriteriaList(
                                         [StopOnRequest(self.stop_requested)]), **generation)
        self.last_answer_ids = answer[0, inputs["input_ids"].shape[1]:].tolist()
        prompt = inputs["input_ids"].shape[1]
        return turn_timings(self.load_seconds, self.vision_seconds, started, streamer.token_times,
                            prompt_tokens=prompt, processed_tokens=prompt, answer_ids=self.last_answer_ids)

    def stream_turn(self, messages, images=(), num_crops=None, max_new_tokens=256, **generation):
        """As OptimumVLM.stream_turn, through generate."""
        streamer = TimedStreamer(self.tokenizer, skip_prompt=True)
        work = lambda: self.run_turn(messages, list(images), num_crops, streamer, max_new_tokens, generation)  # noqa: E731
        self.last_timings = yield from self.streamed(work, streamer, streamer.end)
