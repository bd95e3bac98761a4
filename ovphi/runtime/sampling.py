"""Choosing the next token from logits: greedy (temperature 0) or sampled with temperature, top-k and
top-p, after an optional repetition penalty; the same rules as openvino.genai's GenerationConfig. Ids past
the tokenizer's vocabulary (the model has more logits than tokens) are never chosen, and a JsonConstraint
leaves only the tokens its schema allows."""
import time

import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


class Sampler:
    """next_token(history, logits) for a GenerationConfig. history: (1, n) ids so far (images as 0);
    vocabulary: how many ids have a token."""

    def __init__(self, generation, vocabulary, constraint=None):
        self.vocabulary, self.constraint = vocabulary, constraint
        self.processors = LogitsProcessorList()
        if generation.repetition_penalty != 1.0:
            self.processors.append(RepetitionPenaltyLogitsProcessor(generation.repetition_penalty))
        self.generator = None
        if generation.greedy:
            return
        if generation.temperature != 1.0:
            self.processors.append(TemperatureLogitsWarper(generation.temperature))
        if generation.top_k:
            self.processors.append(TopKLogitsWarper(generation.top_k))
        if generation.top_p < 1.0:
            self.processors.append(TopPLogitsWarper(generation.top_p))
        seed = generation.seed if generation.seed is not None else time.time_ns() % (1 << 31)
        self.generator = torch.Generator().manual_seed(seed)

    def next_token(self, history, logits):
        """The next token id after `history`, whose last position's logits are (1, vocabulary)."""
        logits = logits.clone()
        logits[..., self.vocabulary:] = float("-inf")
        if self.constraint:
            self.constraint.mask(logits)
        scores = self.processors(history, logits)
        if self.generator is None:
            token = int(scores.argmax(-1))
        else:
            token = int(torch.multinomial(scores.softmax(-1), 1, generator=self.generator))
        if self.constraint:
            self.constraint.advance(token)
        return token
