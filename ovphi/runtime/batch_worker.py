"""The process that owns the `genai-batch` engine's openvino_genai.ContinuousBatchingPipeline: it adds the
requests its parent sends, calls step() while any runs (every running sequence advances one token per step;
a new request joins at the next step) and sends back each request's text as it is decoded and its end.

It is a process of its own because `add_request` with pictures holds Python's GIL for the whole vision encode
(genai 2026.4.1): in the server's process that would freeze every connection for it.

Started as `python -m ovphi.runtime.batch_worker FD` (FD: its end of a socket pair), it reads its load
arguments first. Messages from the parent: ("add", id, prompt, pictures (uint8 arrays), GenerationConfig,
started, stop ids), ("cancel", id). To the parent: ("loaded", seconds) or ("failed", line) once; then ("chunk",
id, text, ids, time_s), ("end", id, ids, finish, timings dict), ("error", id, line), ("too long", id, line),
and ("metrics", None, gauges) after a step now and then."""
import ctypes
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

FINISHED, CANCELLED = "finished", "cancelled"
PR_SET_PDEATHSIG = 1
METRICS_EVERY_S = 0.25  # the pipeline's gauges are sent after a step at most this often


@dataclass
class Running:
    """One request in the pipeline: its genai handle, text decoder, ids so far and token arrival times."""

    handle: object
    decoder: object
    started: float  # the parent's submit time (time.perf_counter: one monotonic clock for both processes)
    vision_s: float  # add_request's time: encoding the conversation's pictures
    text: list = field(default_factory=list)  # what the decoder gave since the last chunk sent
    ids: list = field(default_factory=list)
    times: list = field(default_factory=list)


def run(connection, model_dir, device, properties, scheduler):
    """The worker's main: load, say so, then serve messages until the parent goes away."""
    try:
        import numpy as np
        import openvino as ov
        import openvino_genai

        started = time.perf_counter()
        config = openvino_genai.SchedulerConfig()
        for name, value in scheduler.items():
            setattr(config, name, value)
        pipe = openvino_genai.ContinuousBatchingPipeline(model_dir, config, device, properties)
        tokenizer = pipe.get_tokenizer()
    except Exception as error:  # the parent raises it as the load's one line
        connection.send(("failed", str(error).splitlines()[0] if str(error) else type(error).__name__))
        return
    connection.send(("loaded", time.perf_counter() - started))
    from .genai_engine import genai_generation

    running = {}
    reported = 0.0  # when the pipeline's metrics were last sent

    def add(request_id, prompt, pictures, generation, submitted, stop_ids):
        tensors = [ov.Tensor(np.ascontiguousarray(picture)) for picture in pictures]
        config = genai_generation(pipe.get_config(), generation, stop_ids)
        config.apply_chat_template = False  # the prompt is templated already (else the template goes round it again)
        adding = time.perf_counter()
        handle = pipe.add_request(request_id, prompt, tensors, config)  # the pictures are encoded here
        text = []  # the decoder's callback holds this list, not the entry: no cycle through the native streamer
        decoder = openvino_genai.TextStreamer(tokenizer, lambda piece: text.append(piece) or False)
        running[request_id] = Running(handle, decoder, submitted, time.perf_counter() - adding, text)

    def send_new(request_id, entry):
        """Send what the request generated since the last step, as one chunk."""
        ids = []
        while entry.handle.can_read():
            for output in entry.handle.read().values():
                ids += list(output.generated_ids)
        if not ids:
            return
        now = time.perf_counter() - entry.started
        for token in ids:
            entry.decoder.write(token)
        entry.ids += ids
        entry.times += [now] * len(ids)
        connection.send(("chunk", request_id, "".join(entry.text), ids, now))
        entry.text.clear()

    def end(request_id, finish):
        entry = running.pop(request_id)
        entry.decoder.end()
        total = time.perf_counter() - entry.started
        if entry.text:
            connection.send(("chunk", request_id, "".join(entry.text), [], total))
        try:
            prompt = entry.handle.get_vlm_perf_metrics().get_num_input_tokens()
        except RuntimeError:  # genai has metrics only for a request that ran to its end
            prompt = None
        times = entry.times
        timings = {"vision_s": entry.vision_s, "ttft_s": times[0] if times else None,
                   "tpot_s": (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else None,
                   "total_s": total, "prompt_tokens": prompt, "answer_tokens": len(entry.ids)}
        connection.send(("end", request_id, entry.ids, finish, timings))

    def settle(request_id, entry):
        """End the request if genai has: refused (a prompt the KV cache cannot hold) or finished."""
        status = entry.handle.get_status()
        if status == openvino_genai.GenerationStatus.IGNORED:
            running.pop(request_id)
            connection.send(("too long", request_id, "the prompt does not fit the KV cache (--kv-cache-gb)"))
        elif status != openvino_genai.GenerationStatus.RUNNING:
            end(request_id, FINISHED)

    while True:
        busy = pipe.has_non_finished_requests()
        try:
            ready = connection.poll(0 if busy else None)
        except (EOFError, OSError):
            return
        while ready:
            try:
                message = connection.recv()
            except (EOFError, OSError):  # the parent is gone
                return
            if message[0] == "add":
                try:
                    add(*message[1:])
                except Exception as error:
                    connection.send(("error", message[1], str(error).splitlines()[0]))
            elif message[0] == "cancel" and message[1] in running:
                send_new(message[1], running[message[1]])
                running[message[1]].handle.cancel()
                end(message[1], CANCELLED)
            ready = connection.poll(0)
        if not pipe.has_non_finished_requests():
            for request_id, entry in list(running.items()):  # ended in add_request (e.g. refused by genai)
                settle(request_id, entry)
            continue
        try:
            pipe.step()
        except Exception as error:  # every running request fails with it; the pipeline drops them
            for request_id, entry in list(running.items()):
                entry.handle.cancel()
                running.pop(request_id)
                connection.send(("error", request_id, str(error).splitlines()[0]))
            continue
        if time.perf_counter() - reported > METRICS_EVERY_S:
            reported = time.perf_counter()
            metrics = pipe.get_metrics()
            connection.send(("metrics", None, {"batch_size": metrics.scheduled_requests,
                                               "kv_cache_usage_ratio": metrics.cache_usage / 100,
                                               "kv_cache_bytes": metrics.cache_size_in_bytes}))
        for request_id, entry in list(running.items()):
            send_new(request_id, entry)
            settle(request_id, entry)


def end_with_parent():
    """Be killed when the parent process ends, even inside a long native call (Linux's PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent ended before the prctl
        sys.exit(0)


if __name__ == "__main__":
    end_with_parent()
    worker_connection = Connection(int(sys.argv[1]))
    run(worker_connection, *worker_connection.recv())
