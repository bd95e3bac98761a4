"""The turn loop of engines that drive the model themselves (optimum, pytorch): prefill what the KV
cache lacks, then decode token by token. An engine plugs in its model through four calls:

    text_embeds(ids) -> (1, n, hidden)            ids (1, n), images' negative ids clamped to 0
    image_features(pixel_values, image_sizes) -> (image tokens, hidden)
    forward(embeds, start, total) -> (n, vocab)   logits of positions start..total-1, caching them
    keep(length, cached)                          cut the KV cache from `cached` to `length` positions

The cache's token ids are remembered; a turn prefills only after the longest prefix the cache holds
(trimming where the prompt departs from it) and encodes only the images that prefix does not cover.
"""
import time

import torch

from ..errors import OvphiError
from .detokenize import IncrementalText
from .engine import Chunk, Engine, turn_result
from .prompt import prompt_ids
from .sampling import Sampler
from .timings import from_token_times


def common_prefix(a, b):
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


class KVTurnLoop:
    def __init__(self, model, processor, stop_ids, context):
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.stop_ids = set(stop_ids)
        self.context = context
        self.reset()

    def reset(self):
        self.model.keep(0, 0)
        self.cached_ids = []  # the token ids whose keys and values the cache holds
        self.processed_images = ([], None, {})

    def image_inputs(self, images, num_crops):
        """The image processor's output, kept while the conversation's images stay the same."""
        kept_images, kept_crops, kept_inputs = self.processed_images
        if len(kept_images) == len(images) and kept_crops == num_crops and all(
                a is b for a, b in zip(kept_images, images)):
            return kept_inputs
        inputs = self.processor.image_processor(images, num_crops=num_crops) if images else {}
        self.processed_images = (list(images), num_crops, inputs)
        return inputs

    def prompt(self, conversation, num_crops):
        """(prompt ids, image inputs) of a conversation; refuses a prompt the context cannot hold."""
        inputs = self.image_inputs([part.image for part in conversation.images], num_crops)
        ids = prompt_ids(self.tokenizer, conversation.messages, inputs.get("num_img_tokens", []))
        if len(ids) >= self.context:
            raise OvphiError(f"the prompt has {len(ids)} tokens; the context holds {self.context}")
        return ids, inputs

    def keep(self, length):
        self.model.keep(length, len(self.cached_ids))
        self.cached_ids = self.cached_ids[:length]

    def embed(self, new_ids, image_inputs):
        """(embeddings of new_ids, vision seconds); images whose tokens lie in new_ids are encoded."""
        ids = torch.tensor([new_ids])
        embeds = self.model.text_embeds(ids.clamp(min=0))
        numbers = sorted({-i for i in new_ids if i < 0})
        if not numbers:
            return embeds, 0.0
        started = time.perf_counter()
        pixel_values = image_inputs["pixel_values"][[n - 1 for n in numbers]]
        sizes = image_inputs["image_sizes"][[n - 1 for n in numbers]]
        embeds[ids < 0] = self.model.image_features(pixel_values, sizes).to(embeds.dtype)
        return embeds, time.perf_counter() - started

    def prefill(self, ids, image_inputs):
        """Bring the cache to `ids`, computing only what it lacks: (logits of the new positions, how many
        were computed, vision seconds)."""
        reuse = min(common_prefix(self.cached_ids, ids), len(ids) - 1)  # one token at least, for logits
        while reuse and ids[reuse] < 0 and ids[reuse - 1] == ids[reuse]:
            reuse -= 1  # never split one image's tokens between cache and prefill
        self.keep(reuse)
        embeds, vision_seconds = self.embed(ids[reuse:], image_inputs)
        logits = self.model.forward(embeds, reuse, len(ids))
        self.cached_ids = list(ids)
        return logits, len(ids) - reuse, vision_seconds

    def generate(self, conversation, generation, emit, stop_requested, load_seconds):
        """One turn (see Engine.generate)."""
        started = time.perf_counter()
        ids, image_inputs = self.prompt(conversation, generation.num_crops)
        logits, processed, vision_seconds = self.prefill(ids, image_inputs)
        logits = logits[-1:]
        sampler, text = Sampler(generation), IncrementalText(self.tokenizer)
        history = torch.tensor([[max(i, 0) for i in ids]])
        answer, token_times, stopped_by_token = [], [], False
        while len(answer) < generation.max_new_tokens and not stop_requested.is_set():
            token = sampler.next_token(history, logits)
            answer.append(token)
            token_times.append(time.perf_counter() - started)
            emit(Chunk(text.feed([token]), [token], token_times[-1]))
            if token in self.stop_ids and not generation.ignore_eos:
                stopped_by_token = True
                break
            if len(self.cached_ids) + 1 >= self.context:
                break
            history = torch.cat([history, torch.tensor([[token]])], dim=1)
            position = len(self.cached_ids)
            logits = self.model.forward(self.model.text_embeds(torch.tensor([[token]])), position, position + 1)
            self.cached_ids.append(token)
        tail = text.finish()
        if tail:
            emit(Chunk(tail, [], time.perf_counter() - started))
        kept = answer[:-1] if stopped_by_token else answer
        cancelled = stop_requested.is_set() and not stopped_by_token and len(answer) < generation.max_new_tokens
        timings = from_token_times(load_seconds, vision_seconds, token_times, time.perf_counter() - started,
                                   prompt_tokens=len(ids), processed_tokens=processed)
        answer_text = self.tokenizer.decode(kept, skip_special_tokens=True).strip()
        return turn_result(answer_text, kept, stopped_by_token, cancelled, timings)

    def score(self, conversation, answer_ids, num_crops=None):
        """Teacher forcing (see Engine.score). A prompt the cache already holds is not computed again."""
        ids, image_inputs = self.prompt(conversation, num_crops)
        self.keep(min(common_prefix(self.cached_ids, ids), len(ids) - 1))  # keep only the prompt
        full = ids + list(answer_ids)
        logits, processed, _ = self.prefill(full, image_inputs)
        first = len(ids) - 1 - (len(full) - processed)  # logits cover the positions from len(full) - processed
        return logits[first:first + len(answer_ids)]


class KVLoopEngine(Engine):
    """An engine whose turns run through a KVTurnLoop, which its load_model() puts in self.loop."""

    def reset(self):
        self.loop.reset()

    def generate(self, conversation, generation, emit):
        return self.loop.generate(conversation, generation, emit, self.stop_requested, self.load_seconds)

    def score(self, conversation, answer_ids, num_crops=None):
        return self.loop.score(conversation, answer_ids, num_crops)
