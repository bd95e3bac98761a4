"""Choosing the next token from logits: greedy (temperature 0) or sampled with temperature, top-k and
top-p, after an optional repetition penalty; the same rules as openvino.genai's GenerationConfig. Ids past
the tokenizer's vocabulary (the model has more logits than tokens) are never chosen, and a Constraint
leaves only the tokens its grammar allows; logit_bias and OpenAI's presence and frequency penalties (over the
answer's own tokens) shift the logits first. token_logprob reports what the model gave a chosen token."""
import time
from dataclasses import dataclass

import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from ..errors import OvphiError
from .detokenize import token_parts


@dataclass(frozen=True)
class TokenLogprob:
    """A token: its id, text and UTF-8 bytes (None for a special token, which adds no text), its log probability
    and (for a chosen token) the most likely tokens at its place."""

    token_id: int
    text: str
    bytes: bytes | None
    logprob: float
    top: tuple = ()


def token_logprob(logits, token, tokenizer, top):
    """TokenLogprob of `token` and of the `top` most likely tokens under the model's own distribution at that
    place, logits (1, n) over the tokenizer's ids: before temperature, bias, penalties or a constraint (as vLLM's
    default), so the numbers say what the model thinks whatever the sampling settings."""
    logprobs = torch.log_softmax(logits[0, :len(tokenizer)].float(), -1)
    best = torch.topk(logprobs, top) if top else None
    alternatives = () if best is None else tuple(
        TokenLogprob(int(i), *token_parts(tokenizer, int(i)), float(value)) for value, i in zip(*best))
    return TokenLogprob(token, *token_parts(tokenizer, token), float(logprobs[token]), alternatives)


class Sampler:
    """next_token(history, logits) for a GenerationConfig. history: (1, n) ids so far (images as 0);
    vocabulary: how many ids have a token."""

    def __init__(self, generation, vocabulary, constraint=None):
        self.vocabulary, self.constraint = vocabulary, constraint
        beyond = [token for token in generation.logit_bias if token >= vocabulary]
        if beyond:
            raise OvphiError(f"logit_bias names token {beyond[0]}; the tokenizer's ids end at {vocabulary - 1}")
        self.bias = (torch.tensor(list(generation.logit_bias), dtype=torch.long),
                     torch.tensor(list(generation.logit_bias.values()), dtype=torch.float32))
        self.presence, self.frequency = generation.presence_penalty, generation.frequency_penalty
        self.counts = torch.zeros(vocabulary)  # how often each token was chosen (the penalties' measure)
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
        logits[0, self.bias[0]] += self.bias[1]
        if self.presence or self.frequency:
            logits[0, :self.vocabulary] -= self.frequency * self.counts + self.presence * (self.counts > 0)
        if self.constraint:
            self.constraint.mask(logits)
        scores = self.processors(history, logits)
        if self.generator is None:
            token = int(scores.argmax(-1))
        else:
            token = int(torch.multinomial(scores.softmax(-1), 1, generator=self.generator))
        if self.constraint:
            self.constraint.advance(token)
        self.counts[token] += 1
        return token
