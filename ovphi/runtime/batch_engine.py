"""Engine `genai-batch`: continuous batching on openvino.genai's ContinuousBatchingPipeline (what OpenVINO Model
Server runs as VLM_CB), in a worker process (batch_worker.py). Up to `RuntimeOptions.slots` conversations run at
once, each advancing a token per step; a request submitted meanwhile joins at the next step, and more wait in
the queue. Every turn sends the whole conversation; paged attention's prefix caching finds the KV blocks of the
part it has computed before, for this conversation or another (a picture's blocks are told apart by its content,
tests/test_batch.py). Needs no torch or transformers."""
import itertools
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
from .engine import IR_FILES, TOKENIZER_IRS, Capabilities, Chunk, Engine, answer_end, turn_result
from .genai_engine import check_genai_turn, folder_num_crops, prompt_status
from .prompt import tagged_messages
from .scheduler import Busy, RequestHandle, cancelled_before_a_token
from .stop_text import StopCut
from .timings import TurnTimings

PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder that holds ovphi/, for the worker's imports


class BatchEngine(Engine):
    name = "genai-batch"
    # stops_at_once: a lone request is ended by a new worker
    capabilities = Capabilities(compiled_cache="accelerators", stops_at_once=True, ebnf_grammar=True)  # as genai's
    required_files = IR_FILES + TOKENIZER_IRS

    def load_model(self):
        self.check_tokenless_ids_masked()
        self.tokenizer = openvino_genai.Tokenizer(str(self.model_dir))
        self.num_crops = folder_num_crops(self.model_dir)
        self.stop_ids = set(folder_stop_token_ids(self.model_dir))
        self.start_worker()

    def start_worker(self):
        """Start the worker process (afresh: not multiprocessing's spawn, which imports the caller's __main__)
        and wait until it has loaded the model: self.worker, self.connection."""
        ours, theirs = socket.socketpair()
        self.worker = start_worker([sys.executable, "-m", batch_worker.__name__, str(theirs.fileno())],
                                   pass_fds=[theirs.fileno()], env=os.environ | {"PYTHONPATH": PACKAGE_ROOT})
        theirs.close()
        self.connection = Connection(ours.detach())
        settings = batch_scheduler_settings(self.config["max_position_embeddings"], self.options.slots,
                                            self.options.kv_cache_gb)
        try:
            self.connection.send((str(self.model_dir), self.device,
                                  self.options.openvino_properties(self.model_dir), settings))
            kind, detail = self.connection.recv()
        except (EOFError, OSError):
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
    """A running request: its handle, its stop strings' cut, its prompt's tokens as counted before it started,
    when it started, whether a token has come."""

    def __init__(self, handle, cut, prompt_tokens, started):
        self.handle, self.cut, self.prompt_tokens, self.started = handle, cut, prompt_tokens, started
        self.generated = False


class BatchScheduler:
    """The Scheduler's interface (submit, cancel, waiting) for the batch engine: up to `slots` requests run in the
    worker at once, the rest wait in order; a reader thread per worker turns its messages into each handle's
    events. genai cannot stop a request inside its vision encode or prefill (one native call each): a request
    cancelled there while it runs alone is stopped at once by a new worker (the old one killed), as long to load
    as the engine was; with others running it ends at the next step."""

    def __init__(self, engine):
        self.engine = engine
        self.slots = engine.options.slots
        self.waiting = deque()
        self.running = {}  # request id -> Request
        self.ids = itertools.count(1)
        self.lock = threading.Lock()
        self.outbox = queue.SimpleQueue()  # sent by a thread of its own: a submit never waits on a busy worker
        self.failure = None  # why the worker is gone, once it is
        self.restarting = False  # a new worker is loading: requests wait
        self.pipeline = {}  # the worker's last gauges (batch_size, kv_cache_usage_ratio, kv_cache_bytes)
        threading.Thread(target=self.read, args=(engine.connection,), name="ovphi-batch-reader", daemon=True).start()
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
            if len(self.running) < self.slots and not self.restarting:
                self.start(handle)
            else:
                self.waiting.append(handle)
        return handle

    def gauges(self):
        """What /metrics shows of the scheduler: requests running and waiting, and the pipeline's gauges."""
        with self.lock:
            return {"running_requests": len(self.running), "queue_depth": len(self.waiting)} | self.pipeline

    def handles(self):
        with self.lock:
            return [request.handle for request in self.running.values()] + list(self.waiting)

    def start(self, handle):
        """Send the handle's turn to the worker (under self.lock)."""
        request_id, started = next(self.ids), time.perf_counter()
        prompt, pictures = self.engine.request(handle.conversation)
        cut = StopCut(handle.generation.stop, handle.put, lambda: self.send(("cancel", request_id)))
        self.running[request_id] = Request(handle, cut, handle.prompt_tokens, started)
        handle.request_id = request_id
        handle.put(prompt_status(len(pictures)))
        self.send(("add", request_id, prompt, pictures, handle.generation, started, self.engine.stop_ids))

    def send(self, message):
        self.outbox.put(message)

    def write(self):
        """The writer thread: the messages to the worker, in order (a picture's pixels can take the worker a
        while to read when it is busy)."""
        while True:
            message = self.outbox.get()
            try:
                self.engine.connection.send(message)
            except OSError:  # a worker killed for a restart (its messages are moot), or gone: its reader says so
                if not self.restarting:
                    return

    def cancel(self, handle):
        with self.lock:
            if handle in self.waiting:
                self.waiting.remove(handle)
                handle.end(cancelled_before_a_token(self.engine))
            elif getattr(handle, "request_id", None) in self.running:
                request = self.running[handle.request_id]
                if not request.generated and len(self.running) == 1 and not self.restarting:
                    self.restarting = True
                    threading.Thread(target=self.restart, args=(handle.request_id,), daemon=True).start()
                else:
                    self.send(("cancel", handle.request_id))

    def restart(self, request_id):
        """Stop a lone request inside its encode or prefill: kill the worker, end the request, start a new worker
        and the requests that waited meanwhile."""
        self.engine.worker.kill()
        self.engine.worker.wait()
        with self.lock:
            request = self.running.pop(request_id, None)  # None: its end came first
        if request is not None:
            request.handle.end(cancelled_before_a_token(self.engine, time.perf_counter() - request.started,
                                                        request.prompt_tokens))
        try:
            self.engine.start_worker()
        except OvphiError as error:
            self.restarting = False
            return self.worker_gone(str(error))
        threading.Thread(target=self.read, args=(self.engine.connection,), name="ovphi-batch-reader",
                         daemon=True).start()
        with self.lock:
            self.restarting = False
            while self.waiting and len(self.running) < self.slots:
                self.start(self.waiting.popleft())

    def read(self, connection):
        """A reader thread: each message of the worker on `connection` to its request's handle."""
        while True:
            try:
                kind, request_id, *rest = connection.recv()
            except (EOFError, OSError):
                if self.restarting or connection is not self.engine.connection:
                    return  # killed for a restart
                code = self.engine.worker.wait()
                return self.worker_gone(f"the genai-batch worker process ended (exit code {code})")
            if kind == "metrics":
                self.pipeline = rest[0]
                continue
            with self.lock:
                request = self.running.get(request_id)
            if request is None:
                continue
            if kind == "chunk":
                text, ids, time_s = rest
                request.generated = request.generated or bool(ids)
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
            request = self.running.pop(request_id, None)  # None: a restart ended it first
            if self.waiting and not self.restarting:
                self.start(self.waiting.popleft())
        if request is not None:
            request.handle.end(outcome)

    def worker_gone(self, failure):
        """Every request ends with `failure`, and so does every later submit."""
        with self.lock:
            self.failure = failure
            ended = [request.handle for request in self.running.values()] + list(self.waiting)
            self.running.clear()
            self.waiting.clear()
        for handle in ended:
            handle.end(OvphiError(self.failure))
