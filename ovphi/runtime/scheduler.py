"""One generation thread per engine: requests wait in a FIFO queue and run one at a time; each has a handle with
its own events, cancel() and result(). Every turn of ask, chat, serve and bench goes through here
(Engine.submit / Engine.stream)."""
import asyncio
import queue
import threading
import weakref
from collections import deque

from ..errors import OvphiError
from .events import TurnResult
from .generated import GeneratedAnswers
from .timings import from_token_times

ENDED = object()  # the last item of a handle's queue


class Busy(OvphiError):
    """The queue holds as many waiting requests as it may."""


def cancelled_before_a_token(engine, seconds=0.0, prompt_tokens=0):
    """The TurnResult of a request cancelled before its first token: queued (it never ran), or stopped inside its
    encode or prefill after `seconds`."""
    timings = from_token_times(engine.load_seconds, 0.0, [], seconds, prompt_tokens=prompt_tokens, processed_tokens=0)
    return TurnResult(answer="", token_ids=[], finish_reason="cancelled", timings=timings)


class RequestHandle:
    """One submitted turn. Iterate it (or `async for`) for its Chunks and Status events, then its TurnResult;
    cancel() ends this request alone (queued: it never runs; running: it stops within a token, or at once inside
    a vision encode or prefill); result() waits for the TurnResult. An error in the turn is raised where its
    events are read."""

    def __init__(self, conversation, generation, scheduler):
        self.conversation, self.generation = conversation, generation
        self.scheduler = scheduler
        self.done = threading.Event()
        self.events = queue.Queue()
        self.outcome = None  # the TurnResult, or the error that ended the turn
        self.loop = self.wakeup = None  # set by an async reader: the producer wakes its event loop

    def put(self, item):
        self.events.put(item)
        loop = self.loop
        if loop is not None:
            loop.call_soon_threadsafe(self.wakeup.set)

    def end(self, outcome):
        self.outcome = outcome
        self.put(outcome)
        self.put(ENDED)
        self.done.set()

    def cancel(self):
        self.scheduler.cancel(self)

    def __iter__(self):
        while (item := self.events.get()) is not ENDED:
            yield self.raised(item)
        self.events.put(ENDED)  # a later reader ends at once too

    async def __aiter__(self):
        self.wakeup = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        while True:
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                self.wakeup.clear()
                if self.events.empty():
                    await self.wakeup.wait()
                continue
            if item is ENDED:
                self.events.put(ENDED)
                return
            yield self.raised(item)

    @staticmethod
    def raised(item):
        if isinstance(item, BaseException):
            raise item
        return item

    def result(self):
        """The TurnResult, once the turn has ended (events not read yet are dropped); raises the turn's error."""
        for _ in self:
            pass
        return self.raised(self.outcome)


class Scheduler:
    """Owns the engine's turns: submit() queues one and returns its handle; a single thread runs them in order
    (started by a submit when none runs, ended when the queue is empty)."""

    def __init__(self, engine):
        # held weakly: the engine owns its scheduler, so a dropped engine is freed at once, not by a later garbage
        # collection (which could run in a forked child: engine.py)
        self.engine_ref = weakref.ref(engine)
        self.waiting = deque()
        self.running = None
        self.working = False  # whether the generation thread runs (it ends when nothing waits: an unused engine is freed)
        self.lock = threading.Lock()
        self.answers = GeneratedAnswers()

    @property
    def engine(self):
        return self.engine_ref()

    def submit(self, conversation, generation, max_waiting=None):
        """Queue a turn (checked first: Unsupported for what the engine cannot do; Busy if `max_waiting` turns
        already wait) and return its handle. Assistant messages that repeat an answer this engine gave get the ids
        it generated (GeneratedAnswers)."""
        self.engine.check_generation(generation)
        with self.lock:
            if max_waiting is not None and len(self.waiting) >= max_waiting:
                raise Busy("too many requests are waiting")
            self.answers.restore(conversation)
            handle = RequestHandle(conversation, generation, self)
            self.waiting.append(handle)
            if not self.working:
                self.working = True
                threading.Thread(target=self.run, args=(self.engine,), name="ovphi-generation", daemon=True).start()
        return handle

    def gauges(self):
        """What /metrics shows of the scheduler: requests running and waiting."""
        with self.lock:
            return {"running_requests": int(self.running is not None), "queue_depth": len(self.waiting)}

    def cancel(self, handle):
        with self.lock:
            if self.running is handle:
                self.engine.stop_requested.set()
            elif handle in self.waiting:
                self.waiting.remove(handle)
                handle.end(cancelled_before_a_token(self.engine))

    def run(self, engine):
        """Run the queued turns; `engine` is held until the queue is empty."""
        while True:
            with self.lock:
                if not self.waiting:
                    self.working = False
                    return
                handle = self.waiting.popleft()
                self.running = handle
                engine.stop_requested.clear()
            try:
                outcome = engine.turn(handle.conversation, handle.generation, handle.put)
                self.answers.remember(handle.conversation, outcome)
            except BaseException as error:  # raised to the handle's reader
                engine.reset()
                outcome = error
            with self.lock:
                self.running = None
                engine.stop_requested.clear()  # for what runs outside a turn (warm_up_vision, score)
            handle.end(outcome)
