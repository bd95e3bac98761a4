"""Choosing the next token from logits: greedy (temperature 0) or sampled with temperature, top-k and
top-p, after an optional repetition penalty; the same rules as openvino.genai's GenerationConfig. Ids past
the tokenizer's vocabulary (the model has more logits than tokens) are never chosen, and a Constraint
leaves only the tokens its grammar allows; logit_bias and OpenAI's presence and frequency penalties (over the
answer's own tokens) shift the logits first. token_logprob reports what the model gave a chosen token."""
import time
from dataclasses import dataclass

import torch
from transformers.generation.logits_process import (
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


class AnswerTokens:
    """The answer's tokens in a history, for processors that count them: the history of the first call is the
    prompt; every later call has the tokens chosen since appended."""

    def __init__(self):
        self.start = None

    def of(self, history):
        self.start = history.shape[1] if self.start is None else self.start
        return history[0, self.start:]


class TokenlessMask:
    """Ids past the tokenizer's vocabulary (the model has more logits than tokens) are never chosen."""

    def __init__(self, vocabulary):
        self.vocabulary = vocabulary

    def __call__(self, history, logits):
        logits[..., self.vocabulary:] = float("-inf")
        return logits


class LogitBias:
    """OpenAI's logit_bias: {token id: -100 to 100} added to the logits."""

    def __init__(self, bias, vocabulary):
        beyond = [token for token in bias if token >= vocabulary]
        if beyond:
            raise OvphiError(f"logit_bias names token {beyond[0]}; the tokenizer's ids end at {vocabulary - 1}")
        self.ids = torch.tensor(list(bias), dtype=torch.long)
        self.values = torch.tensor(list(bias.values()), dtype=torch.float32)

    def __call__(self, history, logits):
        logits[0, self.ids] += self.values
        return logits


class AnswerPenalties:
    """OpenAI's presence and frequency penalties, over the answer's own tokens: subtracted once for each token
    the answer holds, and once per time it holds it."""

    def __init__(self, presence, frequency, vocabulary):
        self.presence, self.frequency, self.vocabulary = presence, frequency, vocabulary
        self.answer = AnswerTokens()

    def __call__(self, history, logits):
        counts = torch.bincount(self.answer.of(history), minlength=self.vocabulary)[:self.vocabulary].float()
        logits[0, :self.vocabulary] -= self.frequency * counts + self.presence * (counts > 0)
        return logits


class Constrained:
    """A Constraint as a processor: it takes the tokens chosen since its last call, then masks what may not come
    next."""

    def __init__(self, constraint):
        self.constraint, self.answer, self.taken = constraint, AnswerTokens(), 0

    def __call__(self, history, logits):
        chosen = self.answer.of(history).tolist()
        for token in chosen[self.taken:]:
            self.constraint.advance(token)
        self.taken = len(chosen)
        self.constraint.mask(logits)
        return logits


def logits_processors(generation, vocabulary, constraint=None):
    """The processors a GenerationConfig stands for, each (history (1, n), logits (1, V)) -> logits, in the order
    they run: ids with no token masked, logit_bias, presence and frequency penalties, the caller's own
    (generation.logits_processors), the constraint, then the repetition penalty, temperature, top-k and top-p
    (openvino.genai's order for these four)."""
    processors = [TokenlessMask(vocabulary)]
    if generation.logit_bias:
        processors.append(LogitBias(generation.logit_bias, vocabulary))
    if generation.presence_penalty or generation.frequency_penalty:
        processors.append(AnswerPenalties(generation.presence_penalty, generation.frequency_penalty, vocabulary))
    processors += generation.logits_processors
    if constraint:
        processors.append(Constrained(constraint))
    if generation.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(generation.repetition_penalty))
    if not generation.greedy:
        if generation.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(generation.temperature))
        if generation.top_k:
            processors.append(TopKLogitsWarper(generation.top_k))
        if generation.top_p < 1.0:
            processors.append(TopPLogitsWarper(generation.top_p))
    return processors


class Sampler:
    """next_token(history, logits) for a GenerationConfig: its logits_processors, then the most likely token
    (greedy) or a draw. history: (1, n) ids so far (images as 0); vocabulary: how many ids have a token."""

    def __init__(self, generation, vocabulary, constraint=None):
        self.processors = logits_processors(generation, vocabulary, constraint)
        self.generator = None
        if not generation.greedy:
            seed = generation.seed if generation.seed is not None else time.time_ns() % (1 << 31)
            self.generator = torch.Generator().manual_seed(seed)

    def next_token(self, history, logits):
        """The next token id after `history`, whose last position's logits are (1, vocabulary)."""
        scores = logits.clone()
        for processor in self.processors:
            scores = processor(history, scores)
        if self.generator is None:
            return int(scores.argmax(-1))
        return int(torch.multinomial(scores.softmax(-1), 1, generator=self.generator))
