"""What a prefill costs on the running engine, learnt from its own prefills: seconds per new token from an empty
cache, and the extra seconds per new token per attended position that a prefill into a cache already holding
positions pays (OpenVINO's CPU plugin takes a slow stateful-SDPA kernel there). One set of numbers decides
whether a valid KV prefix is kept or recomputed and predicts the ETA of the status line."""

# Before the engine has measured itself: the full-size INT4 model on the 2-core Xeon (docs/benchmarks.md)
PRIOR_SECONDS_PER_TOKEN = 20e-3
MIN_TOKENS = 32  # a shorter prefill from empty says more about overheads than about the speed
WEIGHT = 0.5  # how much a new measurement moves the estimate


class PrefillCosts:
    """per_token_s: seconds per token from empty; cached_cost: extra seconds per new token per position it attends
    to when the cache holds some; `measured`: whether per_token_s comes from this engine yet. Until a prefill into
    a cache has been timed, cached_cost is `cached_ratio` times per_token_s: both are compute-bound, so their
    ratio holds across CPUs and model sizes better than either one."""

    def __init__(self, cached_ratio=0.0):
        self.per_token_s, self.cached_ratio, self.measured_cost = PRIOR_SECONDS_PER_TOKEN, cached_ratio, None
        self.measured = False

    @property
    def cached_cost(self):
        return self.cached_ratio * self.per_token_s if self.measured_cost is None else self.measured_cost

    def record(self, new, cached, seconds):
        """Learn from a prefill of `new` tokens after `cached` ones that took `seconds`."""
        if not cached:
            if new >= MIN_TOKENS:
                per_token = seconds / new
                self.per_token_s = per_token if not self.measured else mix(self.per_token_s, per_token)
                self.measured = True
        elif self.measured and new > 1:  # a decode step (one token) runs another kernel
            extra = max(seconds - new * self.per_token_s, 0.0) / (new * (cached + new))
            self.measured_cost = extra if self.measured_cost is None else mix(self.measured_cost, extra)

    def seconds(self, new, cached):
        """The expected seconds of a prefill of `new` tokens after `cached` ones."""
        return new * self.per_token_s + (self.cached_cost * new * (cached + new) if cached else 0.0)

    def from_scratch_is_cheaper(self, cached, new):
        """Whether prefilling all `cached + new` tokens from an empty cache beats keeping `cached` and prefilling
        `new` (e.g. a server's next client, who shares only the template's first tokens with the last one)."""
        return self.seconds(cached + new, 0) < self.seconds(new, cached)


def mix(old, new):
    return (1 - WEIGHT) * old + WEIGHT * new
