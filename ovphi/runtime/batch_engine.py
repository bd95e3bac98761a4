"""Engine `genai-batch`: continuous batching on openvino.genai's ContinuousBatchingPipeline (what OpenVINO Model
Server runs as VLM_CB), in a worker process (batch_worker.py). Up to `RuntimeOptions.slots` conversations run at
once, each advancing a token per step; a request submitted meanwhile joins at the next step, and more wait in
the queue. Every turn sends the whole conversation; paged attention's prefix caching finds the KV blocks of the
part it has computed before, for this conversation or another (a picture's blocks are told apart by its content,
tests/test_batch.py). Needs no torch or transformers."""
import itertools
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import openvino_genai

from ..errors import OvphiError, PromptTooLong
from ..model.tokens import folder_stop_token_ids
from . import batch_worker
from .config import batch_scheduler_settings
from .engine import IR_FILES, TOKENIZER_IRS, Capabilities, Chunk, Engine, Status, answer_end, turn_result
from .genai_engine import check_genai_turn
from .prompt import tagged_messages
from .scheduler import Busy, RequestHandle, never_ran
from .stop_text import StopCut
from .timings import TurnTimings

PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder that holds ovphi/, for the worker's imports


class BatchEngine(Engine):
    name = "genai-batch"
    capabilities = Capabilities(compiled_cache=True)
    required_files = IR_FILES + TOKENIZER_IRS

    def load_model(self):
        self.tokenizer = openvino_genai.Tokenizer(str(self.model_dir))
        self.num_crops = json.loads((self.model_dir / "preprocessor_config.json").read_text()).get("num_crops")
        self.stop_ids = set(folder_stop_token_ids(self.model_dir))
        # a process of its own, started afresh (not multiprocessing's spawn, which imports the caller's __main__)
        ours, theirs = socket.socketpair()
        self.worker = start_worker([sys.executable, "-m", batch_worker.__name__, str(theirs.fileno())],
                                   pass_fds=[theirs.fileno()], env=os.environ | {"PYTHONPATH": PACKAGE_ROOT})
        theirs.close()
        self.connection = Connection(ours.detach())
        self.connection.send((str(self.model_dir), self.device, self.options.openvino_properties(self.model_dir),
                              batch_scheduler_settings(self.config["max_position_embeddings"], self.options.slots,
                                                       self.options.kv_cache_gb)))
        try:
            kind, detail = self.connection.recv()
        except EOFError:
            kind, detail = "failed", f"the worker process ended (exit code {self.worker.wait()})"
        if kind == "failed":
            raise OvphiError(f"the genai-batch engine could not load {self.model_dir}: {detail}")

    def worker_pids(self):
        return [self.worker.pid]

    def make_scheduler(self):
        return BatchScheduler(self)

    def reset(self):
        """Nothing to forget: every turn sends its whole conversation (the prefix cache keeps no conversation
        apart from another)."""

    def close(self):
        """End the worker process (every request ends with it) and wait for it."""
        self.worker.kill()
        self.worker.wait()

    def stop(self):
        """End every request, running or waiting."""
        for handle in self.scheduler.handles():
            handle.cancel()

    def check_turn(self, conversation, generation):
        """Refuse what genai cannot do, before any work; returns about how many tokens the prompt has."""
        return check_genai_turn(self, conversation, generation)

    def request(self, conversation):
        """(the templated prompt with `<|image_N|>` tags, the conversation's pictures as uint8 (1, H, W, 3) arrays)."""
        prompt = self.tokenizer.apply_chat_template(tagged_messages(conversation.messages), add_generation_prompt=True)
        pictures = [np.asarray(part.image.convert("RGB"), dtype=np.uint8)[None] for part in conversation.images]
        return prompt, pictures


def start_worker(command, **popen):
    """Popen(command) from a thread that lives as long as the process: the worker asks to be killed when the
    thread that started it ends (PR_SET_PDEATHSIG), and an engine may be loaded on a short-lived thread."""
    started = queue.SimpleQueue()

    def own():
        try:
            process = subprocess.Popen(command, **popen)
        except OSError as error:
            started.put(error)
            return
        started.put(process)
        process.wait()

    threading.Thread(target=own, name="ovphi-batch-worker", daemon=True).start()
    process = started.get()
    if isinstance(process, OSError):
        raise OvphiError(f"the genai-batch worker process could not start: {process}")
    return process


class Request:
    """A running request: its handle, its stop strings' cut, its prompt's tokens as counted before it started."""

    def __init__(self, handle, cut, prompt_tokens):
        self.handle, self.cut, self.prompt_tokens = handle, cut, prompt_tokens


class BatchScheduler:
    """The Scheduler's interface (submit, cancel, waiting) for the batch engine: up to `slots` requests run in the
    worker at once, the rest wait in order; one reader thread turns the worker's messages into each handle's
    events."""

    def __init__(self, engine):
        self.engine = engine
        self.slots = engine.options.slots
        self.waiting = deque()
        self.running = {}  # request id -> Request
        self.ids = itertools.count(1)
        self.lock = threading.Lock()
        self.outbox = queue.SimpleQueue()  # sent by a thread of its own: a submit never waits on a busy worker
        self.failure = None  # why the worker is gone, once it is
        threading.Thread(target=self.read, name="ovphi-batch-reader", daemon=True).start()
        threading.Thread(target=self.write, name="ovphi-batch-writer", daemon=True).start()

    def submit(self, conversation, generation, max_waiting=None):
        """Check the turn (a 400's worth of refusal before any work), then start it, or queue it when every slot
        runs (Busy past `max_waiting`)."""
        self.engine.check_generation(generation)
        prompt_tokens = self.engine.check_turn(conversation, generation)
        with self.lock:
            if self.failure:
                raise OvphiError(self.failure)
            if len(self.running) >= self.slots and max_waiting is not None and len(self.waiting) >= max_waiting:
                raise Busy("too many requests are waiting")
            handle = RequestHandle(conversation, generation, self)
            handle.prompt_tokens = prompt_tokens
            if len(self.running) < self.slots:
                self.start(handle)
            else:
                self.waiting.append(handle)
        return handle

    def handles(self):
        with self.lock:
            return [request.handle for request in self.running.values()] + list(self.waiting)

    def start(self, handle):
        """Send the handle's turn to the worker (under self.lock)."""
        request_id, started = next(self.ids), time.perf_counter()
        prompt, pictures = self.engine.request(handle.conversation)
        cut = StopCut(handle.generation.stop, handle.put, lambda: self.send(("cancel", request_id)))
        self.running[request_id] = Request(handle, cut, handle.prompt_tokens)
        handle.request_id = request_id
        seen = f" and encoding {len(pictures)} image{'s' * (len(pictures) > 1)}" if pictures else ""
        handle.put(Status("prefill", f"reading the prompt{seen}", 0, None))
        self.send(("add", request_id, prompt, pictures, handle.generation, started, self.engine.stop_ids))

    def send(self, message):
        self.outbox.put(message)

    def write(self):
        """The writer thread: the messages to the worker, in order (a picture's pixels can take the worker a
        while to read when it is busy)."""
        while True:
            try:
                self.engine.connection.send(self.outbox.get())
            except OSError:  # the worker is gone: the reader ends every request
                return

    def cancel(self, handle):
        with self.lock:
            if handle in self.waiting:
                self.waiting.remove(handle)
                handle.end(never_ran(self.engine))
            elif getattr(handle, "request_id", None) in self.running:
                self.send(("cancel", handle.request_id))

    def read(self):
        """The reader thread: each message of the worker to its request's handle."""
        while True:
            try:
                kind, request_id, *rest = self.engine.connection.recv()
            except (EOFError, OSError):
                return self.worker_gone()
            with self.lock:
                request = self.running.get(request_id)
            if request is None:
                continue
            if kind == "chunk":
                text, ids, time_s = rest
                request.cut(Chunk(text, ids, time_s))
                continue
            if kind == "end":
                outcome = request.cut.end(self.result(request, *rest))
            else:
                outcome = (PromptTooLong if kind == "too long" else OvphiError)(rest[0])
            self.finish(request_id, outcome)

    def result(self, request, ids, finish, timings):
        """The TurnResult of what the worker sent at a request's end (its prompt's tokens counted here when genai
        gives none: a cancelled request); how much of the prompt came from the prefix cache genai does not say."""
        kept, stopped_by_token, _ = answer_end(ids, self.engine.stop_ids, request.handle.generation, threading.Event())
        timings = TurnTimings(load_s=self.engine.load_seconds, processed_tokens=None,
                              **timings | {"prompt_tokens": timings["prompt_tokens"] or request.prompt_tokens})
        answer = self.engine.tokenizer.decode(kept).strip()
        return turn_result(answer, kept, stopped_by_token, finish == batch_worker.CANCELLED, timings)

    def finish(self, request_id, outcome):
        """End a request and start the first waiting one in its slot."""
        with self.lock:
            request = self.running.pop(request_id)
            if self.waiting:
                self.start(self.waiting.popleft())
        request.handle.end(outcome)

    def worker_gone(self):
        with self.lock:
            self.failure = f"the genai-batch worker process ended (exit code {self.engine.worker.wait()})"
            ended = [request.handle for request in self.running.values()] + list(self.waiting)
            self.running.clear()
            self.waiting.clear()
        for handle in ended:
            handle.end(OvphiError(self.failure))
