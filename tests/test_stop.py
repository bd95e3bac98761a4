"""A stop is immediate: Ctrl-C, SIGTERM or a client that goes away end a turn within a second, also inside a vision
encode or a prefill (native calls that ran to their end before), and the engine answers correctly right after.
The long work: eight 1344x1344 pictures at 16 crops (136 crops, about 30 s to encode on 2 cores), or a prompt
of 3,000 words."""
import os
import signal
import sys
import time
from pathlib import Path

import pexpect
import pytest
from conftest import default_sigint, drawn_image

from ovphi.runtime import ChatSession, Status, load

PICTURES = 8


@pytest.fixture(scope="module")
def pictures():
    return [drawn_image((1344, 1344), (25 * number, 30, 30), (30, 200, 30)) for number in range(PICTURES)]


@pytest.fixture(scope="module")
def engine(int4_ir):
    return load(int4_ir)


def stopped_in(engine, events, stage):
    """Seconds from engine.stop(), 0.3 s into `stage`, to the turn's end; and the turn's result."""
    for event in events:
        if isinstance(event, Status) and event.stage == stage:
            time.sleep(0.3)
            break
    stopped = time.monotonic()
    engine.stop()
    rest = list(events)
    return time.monotonic() - stopped, rest[-1]


@pytest.mark.parametrize("stage", ["vision", "prefill"])
def test_a_stop_inside_a_native_call_ends_the_turn_and_the_engine_answers_right_after(engine, pictures, stage):
    hello = list(ChatSession(engine, max_new_tokens=6).ask("Hello"))[-1]
    chat = ChatSession(engine, max_new_tokens=8, num_crops=16)
    events = chat.ask("Describe them.", pictures) if stage == "vision" else chat.ask("word " * 3_000)
    seconds, result = stopped_in(engine, events, stage)
    assert seconds < 1 and result.finish_reason == "cancelled" and result.token_ids == []
    again = list(ChatSession(engine, max_new_tokens=6).ask("Hello"))[-1]
    assert again.token_ids == hello.token_ids and again.timings.processed_tokens == again.timings.prompt_tokens


def children(pid):
    """The pids of a process's children, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize("backend, signal_number", [("optimum", signal.SIGINT), ("optimum", signal.SIGTERM),
                                                    ("genai-batch", signal.SIGINT)])
def test_ctrl_c_and_sigterm_end_ask_within_a_second_of_a_vision_encode(int4_ir, pictures, tmp_path, backend,
                                                                         signal_number):
    """The genai-batch engine encodes in its worker process, which ends with ask (its picture's 5 crops: the
    folder's num_crops)."""
    paths = []
    for number, picture in enumerate(pictures):
        paths += ["--image", str(tmp_path / f"{number}.png")]
        picture.save(paths[-1])
    crops = ["--num-crops", "16"] if backend == "optimum" else []
    child = pexpect.spawn(sys.executable, ["-m", "ovphi", "ask", str(int4_ir), *paths, *crops, "--backend", backend,
                                           "--prompt", "Describe them.", "--max-new-tokens", "8"],
                          env=dict(os.environ, HF_HUB_OFFLINE="1"), encoding="utf-8", timeout=120,
                          preexec_fn=default_sigint)
    try:
        child.expect(f"encoding {PICTURES} images")
        time.sleep(0.5)
        workers = children(child.pid)
        sent = time.monotonic()
        child.kill(signal_number)
        child.expect(pexpect.EOF)
        seconds = time.monotonic() - sent
        child.close()
        assert seconds < 1.5 and child.exitstatus == 130, (seconds, child.before)  # 1 s, and the interpreter's exit
        assert "interrupted" in child.before and "Traceback" not in child.before
        time.sleep(0.5)
        assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]  # no worker left behind
    finally:
        child.close(force=True)


@pytest.mark.parametrize("backend", ["optimum", "genai-batch"])
def test_a_client_that_leaves_during_a_vision_encode_frees_the_server_at_once(int4_ir, pictures, backend):
    """The genai-batch engine cannot stop genai's encode: a request that runs alone is stopped by a new worker."""
    import json

    import requests
    from served import Served, data_url

    urls = [data_url(picture) for picture in pictures]
    body = json.dumps({"model": "int4", "stream": True, "ovphi_status": True, "max_tokens": 8, "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}} for url in urls]
         + [{"type": "text", "text": "Describe them."}]}]}).encode()
    server = Served(int4_ir, "--backend", backend)  # 4 crops a picture: 40 crops, about 10 s to encode
    try:
        leaving = server.raw_post(body)
        seen = b""
        while b"encoding 8 images" not in seen:
            seen += leaving.recv(4096)
        leaving.close()  # gone in the middle of the encode
        started = time.monotonic()
        reply = server.client().chat.completions.create(model="int4", messages=[{"role": "user", "content": "Hi"}],
                                                        max_tokens=4)
        assert reply.usage.completion_tokens == 4 and time.monotonic() - started < 5  # not the rest of the encode
        metrics = requests.get(f"{server.base}/metrics", timeout=10).text
        assert 'ovphi_turns_total{finish_reason="cancelled"} 1' in metrics
    finally:
        server.stop()


def test_a_client_that_leaves_inside_a_genai_encode_is_told_in_the_log_the_engine_is_held(int4_ir, pictures):
    """genai's VLMPipeline cannot stop inside its encode or prefill: the server says so in one line, and answers
    the next request once that call has ended."""
    import json

    from served import Served, data_url

    urls = [data_url(picture) for picture in pictures]
    body = json.dumps({"model": "int4", "stream": True, "ovphi_status": True, "max_tokens": 8, "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}} for url in urls]
         + [{"type": "text", "text": "Describe them."}]}]}).encode()
    server = Served(int4_ir, "--backend", "genai")
    try:
        leaving = server.raw_post(body)
        seen = b""
        while b"encoding 8 images" not in seen:
            seen += leaving.recv(4096)
        leaving.close()
        reply = server.client().chat.completions.create(model="int4", messages=[{"role": "user", "content": "Hi"}],
                                                        max_tokens=4)
        assert reply.usage.completion_tokens == 4
    finally:
        server.stop()
    said = server.process.stdout.read()
    assert said.count("cannot stop: the engine is held until that ends") == 1, said
