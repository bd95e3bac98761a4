"""An engine written against the contract alone, as a newcomer would add one: it answers with a fixed
sentence, word by word (OVPHI_FAKE_WORDS words, cycling; OVPHI_FAKE_DELAY seconds each; OVPHI_FAKE_TEXT: other
words), after a "prefill" Status and OVPHI_FAKE_PREFILL seconds. test_engine.py runs it through ask, chat and
bench; test_serve.py through the server's queue; test_page.py behind the chat page."""
import os
import time

from ovphi.runtime.engine import Capabilities, Chunk, Engine, Status, turn_result
from ovphi.runtime.timings import from_token_times

WORDS = "a fake engine answers every question the same way".split()


class FakeEngine(Engine):
    name = "fake"
    capabilities = Capabilities(num_crops_per_call=True, stops_at_once=True)
    required_files = ["config.json"]

    def load_model(self):
        self.vocabulary = os.environ.get("OVPHI_FAKE_TEXT", "").split() or WORDS
        self.words = int(os.environ.get("OVPHI_FAKE_WORDS", len(self.vocabulary)))
        self.delay = float(os.environ.get("OVPHI_FAKE_DELAY", "0"))
        self.prefill = float(os.environ.get("OVPHI_FAKE_PREFILL", "0"))

    def reset(self):
        pass

    def generate(self, conversation, generation, emit):
        started = time.perf_counter()
        count = min(self.words, generation.max_new_tokens)
        words = [self.vocabulary[i % len(self.vocabulary)] for i in range(count)]
        prompt = 10 * len(conversation.messages) + 100 * len(conversation.images)
        emit(Status("prefill", f"reading {prompt} prompt tokens", prompt, self.prefill or None))
        time.sleep(self.prefill)
        times = []
        for number, word in enumerate(words):
            if self.stop_requested.is_set():
                break
            time.sleep(self.delay)
            times.append(time.perf_counter() - started + 0.001)
            emit(Chunk(("" if number == 0 else " ") + word, [number], times[-1]))
        timings = from_token_times(self.load_seconds, 0.0, times, time.perf_counter() - started + 0.002, prompt,
                                   prompt)
        cancelled = len(times) < count
        ended = not cancelled and count == self.words  # the whole answer: as if a stop token came
        return turn_result(" ".join(words[:len(times)]), list(range(len(times))), ended, cancelled, timings)
