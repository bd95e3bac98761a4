"""What the backends share: folder and device checks, load timing, warm-up, the stop flag, the last turn's record."""
import threading
import time

from .devices import check_device
from .ir_folder import check_ir_folder


class Backend:
    """Base of OptimumVLM and GenaiVLM. Subclasses load their model in `load_model(model_dir, ov_config)`."""

    backend = None

    def __init__(self, model_dir, device="CPU", ov_config=None):
        started = time.perf_counter()
        self.check_folder(model_dir)
        self.device = check_device(device)
        self.stop_requested = threading.Event()
        self.last_timings = None
        self.last_answer_ids = []
        self.load_model(model_dir, ov_config)
        self.reset()
        self.load_seconds = time.perf_counter() - started

    def check_folder(self, model_dir):
        check_ir_folder(model_dir, self.backend)

    def streamed(self, work, pieces, close):
        """Yield from `pieces` while work() runs on a worker thread (close() ends `pieces` when it is done).
        An early stop by the caller stops and joins the worker; work's error is re-raised after a reset.
        Returns work's result (use `result = yield from self.streamed(...)`)."""
        self.stop_requested.clear()
        self.last_timings = None
        outcome = {}

        def target():
            try:
                outcome["result"] = work()
            except Exception as error:  # re-raised in the caller's thread
                outcome["error"] = error
            finally:
                close()

        worker = threading.Thread(target=target, daemon=True)
        worker.start()
        try:
            yield from pieces
        finally:
            self.stop_requested.set()
            worker.join()
        if "error" in outcome:
            self.reset()
            raise outcome["error"]
        return outcome["result"]

    def warm_up(self):
        """A short text turn, then the vision encoder once where it can run alone; all forgotten. Returns
        the seconds it took. OpenVINO's CPU plugin repacks every weight on its first inference (about 10 s
        for the full INT4 model on 2 cores): afterwards the first real request runs at steady speed.
        `ovphi chat` calls it while the user types."""
        started = time.perf_counter()
        for _ in self.stream_turn([{"role": "user", "content": "Hello"}], [], max_new_tokens=2, ignore_eos=True):
            pass
        self.warm_up_vision()
        self.reset()
        self.last_timings, self.last_answer_ids = None, []
        return time.perf_counter() - started

    def warm_up_vision(self):
        """Run the vision encoder once on its own; genai's cannot (its first image turn pays about 1 s more)."""

    def stop(self):
        """Ask the running turn to end after the current token (the caller keeps what was said)."""
        self.stop_requested.set()
