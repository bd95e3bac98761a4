"""Backend `optimum`: OVModelForVisualCausalLM's four IRs driven turn by turn, streamed from a worker thread.

The language model IR is stateful: its KV cache stays in the infer request between turns. A turn
prefills only the tokens after the longest prefix the cache already holds (trimming the cache where
the new prompt departs from it), and encodes only the images that prefix does not cover.
"""
import logging
import time
from pathlib import Path

import openvino as ov
import torch
from transformers import AutoProcessor, TextIteratorStreamer
from transformers.generation.logits_process import (LogitsProcessorList, RepetitionPenaltyLogitsProcessor,
                                                    TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

from ..errors import OvphiError
from ..model import register_auto_classes
from ..model.tokens import stop_token_ids
from ..resources import page_out_mapped_files
from .backend import Backend
from .timings import turn_timings


def common_prefix(a, b):
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


def sampler(do_sample=False, temperature=1.0, top_p=1.0, top_k=0, repetition_penalty=1.0, seed=None):
    """(logits processors, torch generator or None for greedy) for the usual generation options."""
    processors = LogitsProcessorList()
    if repetition_penalty and repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
    if not do_sample:
        return processors, None
    if temperature and temperature != 1.0:
        processors.append(TemperatureLogitsWarper(temperature))
    if top_k:
        processors.append(TopKLogitsWarper(top_k))
    if top_p and top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p))
    generator = torch.Generator()
    generator.manual_seed(seed if seed is not None else int(time.time_ns() % (1 << 31)))
    return processors, generator


class TimedStreamer(TextIteratorStreamer):
    """A text streamer that also records when each generated token arrived."""

    def __init__(self, tokenizer, skip_prompt=False):
        super().__init__(tokenizer, skip_prompt=skip_prompt, skip_special_tokens=True, timeout=3600)
        self.token_times = []

    def put(self, value):
        if not (self.skip_prompt and self.next_tokens_are_prompt):
            self.token_times.extend([time.perf_counter()] * value.numel())
        super().put(value)


class OptimumVLM(Backend):
    """A phi3_v IR folder loaded with optimum-intel; call `stream_turn` once per user turn."""

    backend = "optimum"
    # optimum keeps each IR's graph, which maps the .bin files; compiling with the cache hashed every weight
    # through that mapping. Paging those pages out after load keeps the weights from sitting in memory twice
    # beside the compiled blob (2.4 GB for the full INT4 model); what is still needed is read back on use.
    page_out_weights = True

    def load_model(self, model_dir, ov_config):
        from optimum.intel import OVModelForVisualCausalLM

        register_auto_classes()
        optimum_log = logging.getLogger("optimum")
        level = optimum_log.level
        optimum_log.setLevel(logging.ERROR)  # offline, it warns that it could not look the folder up on the hub
        try:
            self.model = OVModelForVisualCausalLM.from_pretrained(str(Path(model_dir).resolve()),
                                                                  device=self.device, ov_config=ov_config)
        finally:
            optimum_log.setLevel(level)
        self.load_processor(model_dir)
        self.model.language_model.compile()
        if self.page_out_weights:
            page_out_mapped_files(Path(model_dir).resolve().glob("*.bin"))

    def load_processor(self, model_dir):
        self.processor = AutoProcessor.from_pretrained(model_dir)
        self.tokenizer = self.processor.tokenizer
        self.stop_ids = set(stop_token_ids(self.tokenizer))  # exported configs may say eos 2 only
        self.context = self.model.config.max_position_embeddings

    def reset(self):
        """Forget the conversation: the next turn prefills from the start."""
        self.cached_ids = []  # the token ids whose keys and values the language model's state holds
        self.processed_images = ([], None, {})

    def image_inputs(self, images, num_crops):
        """The image processor's output for these images, kept while the conversation's images stay the same."""
        kept_images, kept_crops, kept_inputs = self.processed_images
        if len(kept_images) == len(images) and kept_crops == num_crops and all(
                a is b for a, b in zip(kept_images, images)):
            return kept_inputs
        inputs = self.processor.image_processor(images, num_crops=num_crops) if images else {}
        self.processed_images = (list(images), num_crops, inputs)
        return inputs

    def prompt_ids(self, messages, images, num_crops):
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        image_inputs = self.image_inputs(images, num_crops)
        ids = self.processor.expand_image_tags(text, image_inputs.get("num_img_tokens", []))
        if len(ids) >= self.context:
            raise OvphiError(f"the prompt has {len(ids)} tokens; the context holds {self.context}")
        return ids, image_inputs

    def keep_cache(self, length):
        """Cut the language model's KV state to its first `length` positions."""
        language = self.model.language_model
        if length == 0:
            language.request.reset_state()
        elif length < len(self.cached_ids):
            for state in language.request.query_state():  # (batch, heads, positions, head size)
                old = state.state
                end = list(old.shape)
                end[2] = length
                kept = ov.Tensor(old.element_type, end)
                ov.Tensor(old, [0] * len(end), end).copy_to(kept)  # a strided copy in C++, not through numpy
                state.state = kept
        language._past_length = length
        self.cached_ids = self.cached_ids[:length]

    def text_embeds(self, ids):
        return torch.from_numpy(self.model.get_text_embeddings(ids.clamp(min=0)))

    def image_features(self, pixel_values, image_sizes):
        return torch.from_numpy(self.model.get_vision_embeddings(pixel_values, image_sizes=image_sizes))

    def warm_up_vision(self):
        from PIL import Image

        inputs = self.processor.image_processor([Image.new("RGB", (336, 336), "white")], num_crops=1)
        self.image_features(inputs["pixel_values"], inputs["image_sizes"])

    def embed(self, new_ids, image_inputs):
        """Embeddings of new_ids; images whose tokens lie in new_ids go through the vision encoder."""
        ids = torch.tensor([new_ids])
        embeds = self.text_embeds(ids)
        numbers = sorted({-i for i in new_ids if i < 0})
        vision_seconds = 0.0
        if numbers:
            vision_start = time.perf_counter()
            pixel_values = image_inputs["pixel_values"][[n - 1 for n in numbers]]
            sizes = image_inputs["image_sizes"][[n - 1 for n in numbers]]
            embeds[ids < 0] = self.image_features(pixel_values, sizes).to(embeds.dtype)
            vision_seconds = time.perf_counter() - vision_start
        return embeds, vision_seconds

    def forward(self, embeds, total_length):
        """Run the language model on embeds at the positions after the cached ones; returns the logits
        (positions, vocabulary) the model computed."""
        start = len(self.cached_ids)
        positions = torch.arange(start, total_length)[None]
        out = self.model.language_model.forward(
            input_ids=None, inputs_embeds=embeds, attention_mask=torch.ones(1, total_length, dtype=torch.long),
            position_ids=positions, past_key_values=((),) if start else None)
        return out.logits[0].float()

    def prefill(self, ids, image_inputs):
        """Bring the cache to `ids`, computing only what it lacks; (logits of the new positions, new count,
        vision seconds)."""
        reuse = common_prefix(self.cached_ids, ids)
        reuse = min(reuse, len(ids) - 1)  # at least one token to prefill, for the next logits
        while reuse and ids[reuse] < 0 and ids[reuse - 1] < 0 and ids[reuse] == ids[reuse - 1]:
            reuse -= 1  # never split one image's tokens between cache and prefill
        self.keep_cache(reuse)
        embeds, vision_seconds = self.embed(ids[reuse:], image_inputs)
        logits = self.forward(embeds, len(ids))
        self.cached_ids = list(ids)
        return logits, len(ids) - reuse, vision_seconds

    def score(self, messages, images, answer_ids, num_crops=None):
        """Teacher forcing: the logits (len(answer_ids), vocabulary) the model gives each token of
        answer_ids after the conversation `messages`. A prompt the cache already holds (right after
        answering it) is not computed again."""
        ids, image_inputs = self.prompt_ids(messages, images, num_crops)
        self.keep_cache(min(common_prefix(self.cached_ids, ids), len(ids) - 1))  # keep only the prompt
        full = ids + list(answer_ids)
        logits, processed, _ = self.prefill(full, image_inputs)
        first = len(ids) - 1 - (len(full) - processed)  # logits cover the positions from len(full) - processed
        return logits[first:first + len(answer_ids)]

    def run_turn(self, messages, images, num_crops, streamer, max_new_tokens, generation):
        """Prefill what the cache lacks, then decode until a stop token; feeds the streamer."""
        generation = dict(generation)
        started = time.perf_counter()
        ids, image_inputs = self.prompt_ids(messages, images, num_crops)
        logits, processed, vision_seconds = self.prefill(ids, image_inputs)
        logits = logits[-1:]
        ignore_eos = generation.pop("ignore_eos", False)  # benchmarks want a fixed number of tokens
        processors, generator = sampler(**generation)
        history = torch.tensor([[max(i, 0) for i in ids]])
        answer = self.last_answer_ids = []
        while len(answer) < max_new_tokens and not self.stop_requested.is_set():
            scores = processors(history, logits)
            if generator is None:
                token = int(scores.argmax(-1))
            else:
                token = int(torch.multinomial(scores.softmax(-1), 1, generator=generator))
            answer.append(token)
            streamer.put(torch.tensor([token]))
            if (token in self.stop_ids and not ignore_eos) or len(self.cached_ids) + 1 >= self.context:
                break
            history = torch.cat([history, torch.tensor([[token]])], dim=1)
            logits = self.forward(self.text_embeds(torch.tensor([[token]])), len(self.cached_ids) + 1)
            self.cached_ids.append(token)
        return turn_timings(self.load_seconds, vision_seconds, started, streamer.token_times,
                            prompt_tokens=len(ids), processed_tokens=processed, answer_ids=answer)

    def stream_turn(self, messages, images=(), num_crops=None, max_new_tokens=256, **generation):
        """Yield answer text for the conversation `messages` (all turns so far, <|image_N|> tags numbered
        over the whole conversation) and all its `images`; `last_timings` holds the turn's numbers."""
        streamer = TimedStreamer(self.tokenizer)
        work = lambda: self.run_turn(messages, list(images), num_crops, streamer, max_new_tokens, generation)  # noqa: E731
        self.last_timings = yield from self.streamed(work, streamer, streamer.end)
