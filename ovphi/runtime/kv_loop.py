"""The turn loop of engines that drive the model themselves (optimum, pytorch): prefill what the KV
cache lacks, then decode token by token. An engine plugs in its model through six calls:

    text_embeds(ids) -> (1, n, hidden)            ids (1, n), images' negative ids clamped to 0
    image_features(pixel_values, image_sizes) -> (image tokens, hidden)
    forward(embeds, start, total) -> (n, vocab)   logits of positions start..total-1, caching them
    keep(length, cached)                          cut the KV cache from `cached` to `length` positions
    snapshot(length) -> (snapshot, bytes)         a copy of the cache's first `length` positions
    restore(snapshot, length)                     the cache as the snapshot holds it

and may say, as `cached_prefill_ratio`, what a prefill into a cache that already holds positions pays per new
token per position it attends to, beyond a prefill from empty, as a fraction of a token's prefill from empty:
the prior of prefill_costs.py until the loop has timed such a prefill.

The cache's token ids are remembered; a turn prefills only after the longest prefix the cache holds
(trimming where the prompt departs from it) and encodes only the images that prefix does not cover.
A new conversation whose prompt starts like an earlier one up to its last image (same template, same
pictures by content, same num_crops) starts from a snapshot of that prefix (prefix_cache.py).
"""
import time

import torch

from ..errors import PromptTooLong
from .cancellable import Cancelled
from .constraint import Constraint
from .detokenize import IncrementalText
from .engine import Chunk, Engine, Status, answer_end, turn_result
from .memory import check_free_memory, kv_cache_bytes
from .prefill_costs import PrefillCosts
from .prefix_cache import PrefixCache, prefix_key
from .prompt import build_prompt, common_prefix
from .sampling import Sampler, token_logprob
from .timings import from_token_times


def prefill_bytes(config, new_tokens, total_tokens):
    """Memory a prefill of new_tokens after total_tokens - new_tokens cached ones needs at its peak, in f32: the
    KV cache of all tokens, one layer's attention scores (heads x new x total), and the logits of every new
    position (the exported language model returns them all)."""
    heads = config["num_attention_heads"]
    return kv_cache_bytes(config, total_tokens, 4) + heads * new_tokens * total_tokens * 4 + \
        new_tokens * config["vocab_size"] * 4


class KVTurnLoop:
    def __init__(self, model, processor, stop_ids, config, prefix_cache_bytes=0):
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.stop_ids = set(stop_ids)
        self.config = config
        self.context = config["max_position_embeddings"]
        # LongRoPE picks its factors by the whole sequence's length: a prompt is prefilled in one piece past this
        self.short_context = config.get("original_max_position_embeddings", self.context)
        self.prefix_cache = PrefixCache(prefix_cache_bytes)
        self.vision_rate = None  # crops per second, once measured
        self.costs = PrefillCosts(getattr(model, "cached_prefill_ratio", 0.0))
        self.reset()

    def reset(self):
        self.model.keep(0, 0)
        self.cached_ids = []  # what the cache holds, per position: the token id, or the digest of the image there
        self.processed_images = ([], None, {})
        self.pending_snapshot = None

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
        """(Prompt, image inputs) of a conversation; refuses a prompt the context cannot hold."""
        inputs = self.image_inputs([part.image for part in conversation.images], num_crops)
        prompt = build_prompt(self.tokenizer, conversation, inputs)
        if len(prompt.ids) >= self.context:
            raise PromptTooLong(f"the prompt has {len(prompt.ids)} tokens; the context holds {self.context}")
        return prompt, inputs

    def check_memory(self, new_tokens, total_tokens):
        """Refuse, before it starts, a prefill that needs more memory than the machine has free."""
        check_free_memory(prefill_bytes(self.config, new_tokens, total_tokens), new_tokens)

    def keep(self, length):
        self.model.keep(length, len(self.cached_ids))
        self.cached_ids = self.cached_ids[:length]

    def embed(self, prompt, start, image_inputs, emit):
        """(embeddings of the prompt's positions from `start`, vision seconds); the images there are encoded."""
        embeds = self.model.text_embeds(torch.tensor([prompt.ids[start:]]).clamp(min=0))
        spans = prompt.images_from(start)
        if not spans:
            return embeds, 0.0
        chosen = [span.number - 1 for span in spans]
        crops = sum(span.crops for span in spans)
        emit(Status("vision", f"encoding {len(spans)} image{'s' * (len(spans) > 1)} ({crops} crops)", crops,
                    crops / self.vision_rate if self.vision_rate else None))
        started = time.perf_counter()
        features = self.model.image_features(image_inputs["pixel_values"][chosen],
                                             image_inputs["image_sizes"][chosen]).to(embeds.dtype)
        seconds = time.perf_counter() - started
        self.vision_rate = crops / seconds
        done = 0
        for span in spans:  # the features come in the spans' order
            embeds[0, span.start - start:span.end - start] = features[done:done + span.end - span.start]
            done += span.end - span.start
        return embeds, seconds

    def prefill(self, prompt, image_inputs, emit=lambda event: None, num_crops=None):
        """Bring the cache to the Prompt, computing only what it lacks: (logits of the new positions, how many
        were computed, vision seconds, prefix cache use: "hit", "miss" or None). Image positions are matched by
        their pictures' content, so another picture never passes for a cached one. The cache of a prompt's
        positions up to its last image is snapshotted after the answer (keep_pending_snapshot), for a new
        conversation about the same images; only below LongRoPE's switch, where those positions' keys do not
        depend on how long the whole prompt is."""
        ids, positions = prompt.ids, prompt.positions
        reuse = min(common_prefix(self.cached_ids, positions), len(ids) - 1)  # one token at least, for logits
        reuse = prompt.whole_images(reuse)
        if reuse and self.costs.from_scratch_is_cheaper(reuse, len(ids) - reuse):
            reuse = 0  # e.g. a server's next client, who shares only the template's first tokens
        self.check_memory(len(ids) - reuse, len(ids))
        images_end = prompt.images_end
        use_cache = bool(self.prefix_cache.max_bytes) and reuse < images_end < len(ids) <= self.short_context \
            and not self.costs.from_scratch_is_cheaper(images_end, len(ids) - images_end)
        key = prefix_key(prompt, images_end, num_crops) if use_cache else None
        snapshot = self.prefix_cache.get(key) if use_cache else None
        if snapshot is not None:
            self.model.restore(snapshot, images_end)
            self.cached_ids, reuse = positions[:images_end], images_end
        else:
            self.keep(reuse)
            self.pending_snapshot = (key, images_end) if use_cache else None
        embeds, vision_seconds = self.embed(prompt, reuse, image_inputs, emit)
        emit(Status("prefill", f"reading {len(ids) - reuse} prompt tokens", len(ids) - reuse,
                    self.costs.seconds(len(ids) - reuse, reuse) if self.costs.measured else None))
        started = time.perf_counter()
        logits = self.model.forward(embeds, reuse, len(ids))
        self.costs.record(len(ids) - reuse, reuse, time.perf_counter() - started)
        self.cached_ids = positions
        status = None if not use_cache else "hit" if snapshot is not None else "miss"
        return logits, len(ids) - reuse, vision_seconds, status

    def keep_pending_snapshot(self):
        """Snapshot the prefix the last prefill marked: after the answer, so that it costs no time to first token."""
        if self.pending_snapshot:
            key, length = self.pending_snapshot
            self.prefix_cache.put(key, *self.model.snapshot(length))
            self.pending_snapshot = None

    def generate(self, conversation, generation, emit, stop_requested, load_seconds):
        """One turn (see Engine.generate)."""
        started = time.perf_counter()
        prompt, image_inputs = self.prompt(conversation, generation.num_crops)
        ids = prompt.ids
        constraint = Constraint(generation.grammar.lark, self.tokenizer, self.config["vocab_size"],
                                self.stop_ids) if generation.grammar else None
        sampler = Sampler(generation, len(self.tokenizer), constraint)  # checks logit_bias before any prefill
        try:
            logits, processed, vision_seconds, prefix = self.prefill(prompt, image_inputs, emit, generation.num_crops)
        except Cancelled:  # stopped inside the vision encode or the prefill: the cache holds part of it
            self.reset()
            timings = from_token_times(load_seconds, 0.0, [], time.perf_counter() - started, prompt_tokens=len(ids),
                                       processed_tokens=0)
            return turn_result("", [], False, True, timings)
        logits = logits[-1:]
        text = IncrementalText(self.tokenizer)
        history = torch.tensor([[max(i, 0) for i in ids]])
        answer, token_times = [], []
        while len(answer) < generation.max_new_tokens and not stop_requested.is_set():
            token = sampler.next_token(history, logits)
            answer.append(token)
            token_times.append(time.perf_counter() - started)
            stopped = token in self.stop_ids and not generation.ignore_eos
            reported = generation.logprobs is not None and not stopped  # the answer's tokens, as TurnResult's
            logprobs = (token_logprob(logits, token, self.tokenizer, generation.logprobs),) if reported else ()
            emit(Chunk(text.feed([token]), [token], token_times[-1], logprobs))
            if stopped:
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
        kept, stopped_by_token, cancelled = answer_end(answer, self.stop_ids, generation, stop_requested)
        self.keep_pending_snapshot()
        timings = from_token_times(load_seconds, vision_seconds, token_times, time.perf_counter() - started,
                                   prompt_tokens=len(ids), processed_tokens=processed, prefix_cache=prefix)
        answer_text = self.tokenizer.decode(kept, skip_special_tokens=True).strip()
        return turn_result(answer_text, kept, stopped_by_token, cancelled, timings)

    def score(self, conversation, answer_ids, num_crops=None):
        """Teacher forcing (see Engine.score). A prompt the cache already holds is not computed again."""
        prompt, image_inputs = self.prompt(conversation, num_crops)
        self.keep(min(common_prefix(self.cached_ids, prompt.positions), len(prompt.ids) - 1))  # keep only the prompt
        full = prompt.extended(answer_ids)
        logits, processed, _, _ = self.prefill(full, image_inputs, num_crops=num_crops)
        first = len(prompt.ids) - 1 - (len(full.ids) - processed)  # logits cover positions from len(full) - processed
        return logits[first:first + len(answer_ids), :len(self.tokenizer)]  # ids with no token: -inf in an IR


class KVLoopEngine(Engine):
    """An engine whose turns run through a KVTurnLoop, which its load_model() puts in self.loop."""

    def reset(self):
        self.loop.reset()

    def generate(self, conversation, generation, emit):
        return self.loop.generate(conversation, generation, emit, self.stop_requested, self.load_seconds)

    def score(self, conversation, answer_ids, num_crops=None):
        return self.loop.score(conversation, answer_ids, num_crops)

    def prefix_cache_counts(self):
        return {"hit": self.loop.prefix_cache.hits, "miss": self.loop.prefix_cache.misses}
