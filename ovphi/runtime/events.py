"""What a turn streams: Chunks of the answer, Status before the first of them, and one TurnResult."""
from dataclasses import dataclass, field

from .timings import TurnTimings


@dataclass(frozen=True)
class Chunk:
    """A piece of the answer as it streams; with GenerationConfig.logprobs, a TokenLogprob per answer token."""

    text: str
    token_ids: list
    time_s: float  # seconds since the turn started
    logprobs: tuple = ()


@dataclass(frozen=True)
class Status:
    """What the engine is doing before the first token: stage "vision" (count: crops) or "prefill" (count:
    prompt tokens), and the seconds it expects that to take (None until it has measured its speed)."""

    stage: str
    message: str
    count: int
    eta_s: float | None
    text: str = field(default="", repr=False)


@dataclass(frozen=True)
class TurnResult:
    """The end of a turn: the whole answer, its token ids (without the stop token; after a stop string, the
    whole tokens before it, or None when it began inside a token), why it ended (stop, length or cancelled)
    and what it cost."""

    answer: str
    token_ids: list | None
    finish_reason: str
    timings: TurnTimings
    text: str = field(default="", repr=False)  # nothing more to print: `print(event.text)` works for every event
