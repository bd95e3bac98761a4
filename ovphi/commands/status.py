"""The live status line on stderr while nothing streams yet: "encoding 1 image (5 crops)", then "reading
776 prompt tokens", with the seconds spent and those expected from the measured speed. It is drawn only on
a terminal and erased when the first words of the answer arrive. And the line a load says about the
compiled-model cache."""
import sys
import threading
import time

from ..runtime import Chunk, Status


def loaded(engine, command, file=sys.stderr):
    """The engine, after a line on what its load wrote to the compiled-model cache or removed from it."""
    if engine.compiled_cache and engine.compiled_cache.changed:
        print(f"{command}: {engine.compiled_cache}", file=file, flush=True)
    return engine


class StatusLine:
    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.enabled = stream.isatty()
        self.status, self.since, self.shown = None, 0.0, False
        self.lock = threading.Lock()
        self.done = threading.Event()
        if self.enabled:
            threading.Thread(target=self.tick, daemon=True).start()

    def tick(self):
        while not self.done.wait(0.25):
            self.draw()

    def draw(self):
        with self.lock:
            if self.status is None:
                return
            spent = time.monotonic() - self.since
            expected = f" of ~{self.status.eta_s:.0f}" if self.status.eta_s else ""
            progress = f" {min(spent / self.status.eta_s, 0.99):.0%}" if self.status.eta_s else ""
            self.stream.write(f"\r\033[K({self.status.message}: {spent:.0f} s{expected}{progress})")
            self.stream.flush()
            self.shown = True

    def show(self, event):
        """Follow a turn's event: a Status replaces the line; text erases it."""
        if not self.enabled:
            return
        if isinstance(event, Status):
            with self.lock:
                self.status, self.since = event, time.monotonic()
            self.draw()
        elif isinstance(event, Chunk) and event.text:
            self.clear()

    def clear(self):
        with self.lock:
            if self.shown:
                self.stream.write("\r\033[K")
                self.stream.flush()
            self.status, self.shown = None, False

    def close(self):
        self.clear()
        self.done.set()
