"""What both backends share: folder and device checks, load timing, the stop flag, the last turn's record."""
import threading
import time

from .devices import check_device
from .ir_folder import check_ir_folder


class Backend:
    """Base of OptimumVLM and GenaiVLM. Subclasses load their model in `load_model(model_dir, ov_config)`."""

    backend = None

    def __init__(self, model_dir, device="CPU", ov_config=None):
        started = time.perf_counter()
        check_ir_folder(model_dir, self.backend)
        self.device = check_device(device)
        self.stop_requested = threading.Event()
        self.last_timings = None
        self.last_answer_ids = []
        self.load_model(model_dir, ov_config)
        self.reset()
        self.load_seconds = time.perf_counter() - started

    def stop(self):
        """Ask the running turn to end after the current token (the caller keeps what was said)."""
        self.stop_requested.set()
