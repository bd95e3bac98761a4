"""The two runtimes as a plain user runs them, with their own defaults and none of ovphi's options, so that
`ovphi bench` can set ovphi's engines beside them in one run:
- `optimum-stock`: OVModelForVisualCausalLM.generate on the whole conversation every turn (its model card's
  way: the images encoded and the prompt prefilled again);
- `genai-stock`: VLMPipeline with no properties (paged attention, no compiled-model cache)."""
import time

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from ..model.tokens import folder_stop_token_ids
from .detokenize import IncrementalText
from .engine import Capabilities, Chunk, Engine, answer_end, turn_result
from .genai_engine import GenaiEngine
from .optimum_engine import load_optimum_model
from .prompt import tagged_messages
from .timings import from_token_times


class GenerateStreamer:
    """The streamer `generate` feeds: the prompt first (skipped), then each new token."""

    def __init__(self, tokenizer, emit, started):
        self.text, self.emit, self.started = IncrementalText(tokenizer), emit, started
        self.token_times, self.prompt_seen = [], False

    def put(self, value):
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        ids = value.flatten().tolist()
        self.token_times += [time.perf_counter() - self.started] * len(ids)
        self.emit(Chunk(self.text.feed(ids), ids, self.token_times[-1]))

    def end(self):
        tail = self.text.finish()
        if tail:
            self.emit(Chunk(tail, [], time.perf_counter() - self.started))


class StopOnRequest(StoppingCriteria):
    def __init__(self, event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)


class StockOptimumEngine(Engine):
    name = "optimum-stock"
    capabilities = Capabilities(num_crops_per_call=True, runtime_options=False)

    def load_model(self):
        self.model, self.processor = load_optimum_model(self.model_dir, self.device, None)
        self.stop_ids = folder_stop_token_ids(self.model_dir)
        self.vision_seconds = 0.0
        encode = self.model.get_vision_embeddings

        def timed_encode(*args, **kwargs):  # the vision time of a turn, which generate does not report
            started = time.perf_counter()
            try:
                return encode(*args, **kwargs)
            finally:
                self.vision_seconds += time.perf_counter() - started

        self.model.get_vision_embeddings = timed_encode

    def reset(self):
        """Nothing to forget: every turn starts over."""

    def generate(self, conversation, generation, emit):
        started = time.perf_counter()
        self.vision_seconds = 0.0
        text = self.processor.tokenizer.apply_chat_template(tagged_messages(conversation.messages),
                                                            add_generation_prompt=True, tokenize=False)
        images = [part.image for part in conversation.images]
        inputs = self.processor(text=text, images=images or None, num_crops=generation.num_crops)
        options = {"do_sample": not generation.greedy, "repetition_penalty": generation.repetition_penalty}
        if not generation.greedy:
            options |= {"temperature": generation.temperature, "top_p": generation.top_p, "top_k": generation.top_k}
            if generation.seed is not None:
                torch.manual_seed(generation.seed)
        if generation.ignore_eos:
            options["min_new_tokens"] = generation.max_new_tokens
        streamer = GenerateStreamer(self.processor.tokenizer, emit, started)
        output = self.model.generate(**inputs, streamer=streamer, max_new_tokens=generation.max_new_tokens,
                                     eos_token_id=self.stop_ids, stopping_criteria=StoppingCriteriaList(
                                         [StopOnRequest(self.stop_requested)]), **options)
        ids = output[0, inputs["input_ids"].shape[1]:].tolist()
        kept, stopped_by_token, cancelled = answer_end(ids, self.stop_ids, generation, self.stop_requested)
        prompt = inputs["input_ids"].shape[1]
        timings = from_token_times(self.load_seconds, self.vision_seconds, streamer.token_times, time.perf_counter() - started,
                                   prompt_tokens=prompt, processed_tokens=prompt)
        answer = self.processor.tokenizer.decode(kept, skip_special_tokens=True).strip()
        return turn_result(answer, kept, stopped_by_token, cancelled, timings)


class StockGenaiEngine(GenaiEngine):
    name = "genai-stock"
    capabilities = Capabilities(runtime_options=False)

    def pipeline_properties(self):
        return {}

    def mapped_weights(self):
        return []  # VLMPipeline's own memory use, as a stock run has it
