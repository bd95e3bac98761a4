"""What one turn cost, in the same fields for every engine (names as openvino.genai's llm_bench uses)."""
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TurnTimings:
    load_s: float  # loading the model (the same for every turn)
    vision_s: float  # encoding this turn's new images (CLIP crops + projection)
    ttft_s: float | None  # from the request to the first generated token
    tpot_s: float | None  # mean time per output token after the first
    total_s: float
    prompt_tokens: int  # the whole conversation's prompt
    processed_tokens: int | None  # prompt tokens prefilled this turn (the rest came from the KV cache)
    answer_tokens: int
    prefix_cache: str | None = None  # "hit": the prompt's images came from a KV snapshot; "miss"; None: not used

    @property
    def cached_tokens(self):
        """Prompt tokens that came from the KV cache; None where the engine does not say (genai-batch)."""
        return None if self.processed_tokens is None else self.prompt_tokens - self.processed_tokens

    @property
    def tokens_per_s(self):
        return 1.0 / self.tpot_s if self.tpot_s else None

    def as_dict(self):
        return asdict(self) | {"tokens_per_s": self.tokens_per_s}


def from_token_times(load_s, vision_s, token_times, total_s, prompt_tokens, processed_tokens, prefix_cache=None):
    """TurnTimings from the arrival time of each generated token (seconds since the turn started)."""
    first = token_times[0] if token_times else None
    per_token = (token_times[-1] - token_times[0]) / (len(token_times) - 1) if len(token_times) > 1 else None
    return TurnTimings(load_s=load_s, vision_s=vision_s, ttft_s=first, tpot_s=per_token, total_s=total_s,
                       prompt_tokens=prompt_tokens, processed_tokens=processed_tokens,
                       answer_tokens=len(token_times), prefix_cache=prefix_cache)
