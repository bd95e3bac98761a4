"""The server's counters and histograms, written in Prometheus' text format for GET /metrics."""
import threading
from collections import Counter

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)  # seconds


class Histogram:
    def __init__(self):
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, value):
        self.counts[next((i for i, edge in enumerate(BUCKETS) if value <= edge), len(BUCKETS))] += 1
        self.total += value

    def lines(self, name):
        cumulative, lines = 0, []
        for edge, count in zip([*BUCKETS, "+Inf"], self.counts):
            cumulative += count
            lines.append(f'{name}_bucket{{le="{edge}"}} {cumulative}')
        return lines + [f"{name}_sum {self.total}", f"{name}_count {cumulative}"]


class Metrics:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = Counter()  # by HTTP status
        self.ttft, self.tpot = Histogram(), Histogram()
        self.tokens = Counter()  # prompt tokens processed, cached or unsplit (the engine does not say); generated
        self.finishes = Counter()  # turns by how they ended: stop, length, cancelled

    def request(self, status):
        with self.lock:
            self.requests[status] += 1

    def turn(self, timings):
        with self.lock:
            if timings.ttft_s is not None:
                self.ttft.observe(timings.ttft_s)
            if timings.tpot_s is not None:
                self.tpot.observe(timings.tpot_s)
            if timings.cached_tokens is None:
                self.tokens["unsplit"] += timings.prompt_tokens
            else:
                self.tokens["processed"] += timings.processed_tokens
                self.tokens["cached"] += timings.cached_tokens
            self.tokens["generated"] += timings.answer_tokens

    def finished(self, reason):
        with self.lock:
            self.finishes[reason] += 1

    def text(self, gauges, prefix_cache=None):
        """gauges: the scheduler's (requests running, queue depth; the genai-batch engine's batch size and KV
        cache), each written as ovphi_NAME; prefix_cache: the engine's prefix cache hits and misses, if it has one."""
        with self.lock:
            lines = ["# TYPE ovphi_requests_total counter"]
            lines += [f'ovphi_requests_total{{status="{status}"}} {count}' for status, count in
                      sorted(self.requests.items())]
            lines += ["# TYPE ovphi_ttft_seconds histogram", *self.ttft.lines("ovphi_ttft_seconds"),
                      "# TYPE ovphi_tpot_seconds histogram", *self.tpot.lines("ovphi_tpot_seconds"),
                      "# TYPE ovphi_prompt_tokens_total counter"]
            lines += [f'ovphi_prompt_tokens_total{{kind="{kind}"}} {self.tokens[kind]}' for kind in
                      ("processed", "cached", "unsplit")]
            lines += ["# TYPE ovphi_turns_total counter"]
            lines += [f'ovphi_turns_total{{finish_reason="{reason}"}} {count}' for reason, count in
                      sorted(self.finishes.items())]
            lines += ["# TYPE ovphi_generated_tokens_total counter",
                      f"ovphi_generated_tokens_total {self.tokens['generated']}"]
            for name, value in gauges.items():
                lines += [f"# TYPE ovphi_{name} gauge", f"ovphi_{name} {value}"]
            if prefix_cache is not None:
                lines += ["# TYPE ovphi_prefix_cache_total counter"]
                lines += [f'ovphi_prefix_cache_total{{result="{result}"}} {count}' for result, count in
                          prefix_cache.items()]
            return "\n".join(lines) + "\n"
