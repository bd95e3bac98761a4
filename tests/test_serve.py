"""`ovphi serve` on loopback: the official openai client, every error in OpenAI's shape, the queue under
concurrent clients, a client that goes away, and the security defaults. Bounded in count and time."""
import base64
import concurrent.futures
import json
import re
import subprocess
import sys
import time

import pytest
import requests
from exact import EXACT, EXACT_FLAGS
from served import FAKE, Served, data_url

from ovphi.runtime import ChatSession, Conversation, GenerationConfig, ImagePart, load

def user(text, *images):
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}} for url in images]
            + [{"type": "text", "text": text}]}


@pytest.fixture(scope="module")
def real(fp32_ir):
    server = Served(fp32_ir, *EXACT_FLAGS, "--no-cache")
    yield server
    server.stop()


def test_the_openai_client_streams_answers_and_a_second_turn_uses_the_cache(real, fp32_ir, red_image):
    client = real.client()
    model = client.models.list().data[0].id
    first = client.chat.completions.create(model=model, messages=[user("Describe the image.", data_url(red_image))],
                                           max_tokens=12, temperature=0)
    history = [user("Describe the image.", data_url(red_image)),
               {"role": "assistant", "content": first.choices[0].message.content}, user("And the colours?")]
    stream = client.chat.completions.create(model=model, messages=history, max_tokens=12, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    second_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert usage.prompt_tokens_details.cached_tokens > 757  # the image and the first turn were not computed again
    assert usage.prompt_tokens - usage.prompt_tokens_details.cached_tokens < 30
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    timed = [c.timings for c in chunks if getattr(c, "timings", None)]  # ovphi's extension, on the last choice chunk
    assert len(timed) == 1 and timed[0]["total_ms"] >= timed[0]["ttft_ms"] > 0
    assert timed[0]["processed_tokens"] == usage.prompt_tokens - usage.prompt_tokens_details.cached_tokens
    assert first.timings["vision_ms"] > 0 and first.timings["processed_tokens"] == first.usage.prompt_tokens
    chat = ChatSession(load(fp32_ir, cache=False, **EXACT), max_new_tokens=12)  # what the library says
    answers = [list(chat.ask(question, images))[-1].answer
               for question, images in (("Describe the image.", [red_image]), ("And the colours?", []))]
    assert [first.choices[0].message.content.strip(), second_text.strip()] == answers
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    fixed = client.chat.completions.create(model=model, messages=[user("Hi")], max_tokens=40, temperature=0,
                                           extra_body={"ignore_eos": True})  # vLLM's extension, for benchmarks
    assert fixed.usage.completion_tokens == 40 and fixed.choices[0].finish_reason == "length"


def test_interleaved_clients_are_answered_as_each_alone_would_be(real, fp32_ir, red_image, blue_image):
    """A1, B1, A2, B2 through the openai client, each history sent whole as text, the pictures of the same size:
    A2 and B2 equal what the library answers each conversation alone."""
    client, blue = real.client(), blue_image.resize(red_image.size)
    model = client.models.list().data[0].id
    options = dict(model=model, max_tokens=12, temperature=0)
    histories = {name: [user("Describe the image.", data_url(image))] for name, image in (("a", red_image), ("b", blue))}
    for turn in range(2):
        for history in histories.values():
            said = client.chat.completions.create(messages=history, **options).choices[0].message.content
            history += [{"role": "assistant", "content": said}] + ([user("And the colours?")] if turn == 0 else [])
    for name, image in (("a", red_image), ("b", blue)):
        chat = ChatSession(load(fp32_ir, cache=False, prefix_cache_mb=0, **EXACT), max_new_tokens=12)
        alone = [list(chat.ask(question, images))[-1].answer
                 for question, images in (("Describe the image.", [image]), ("And the colours?", []))]
        assert [message["content"].strip() for message in histories[name] if message["role"] == "assistant"] == alone
    metrics = requests.get(f"{real.base}/metrics", timeout=10).text  # the optimum engine's prefix cache, counted
    counts = re.findall(r'^ovphi_prefix_cache_total\{result="(hit|miss)"\} \d+$', metrics, re.MULTILINE)
    assert counts == ["hit", "miss"]


def test_a_genai_server_answers_interleaved_conversations_with_pictures(fp32_ir, red_image, blue_image):
    """A1, B1, A2 through the openai client to `serve --backend genai` (it answered A2 with 400 before): A2 equals
    what a fresh genai engine answers A's history."""
    server = Served(fp32_ir, "--backend", "genai", *EXACT_FLAGS, "--no-cache")
    try:
        client, blue = server.client(), blue_image.resize(red_image.size)
        options = dict(model=client.models.list().data[0].id, max_tokens=12, temperature=0)
        first = {name: [user("Describe the image.", data_url(image))]
                 for name, image in (("a", red_image), ("b", blue))}
        said = {name: client.chat.completions.create(messages=history, **options).choices[0].message.content
                for name, history in first.items()}
        later = first["a"] + [{"role": "assistant", "content": said["a"]}, user("And the colours?")]
        answer = client.chat.completions.create(messages=later, **options).choices[0].message.content
    finally:
        server.stop()
    alone = Conversation()
    alone.add("user", ImagePart(red_image), "Describe the image.")
    alone.add("assistant", said["a"])
    alone.add("user", "And the colours?")
    fresh = load(fp32_ir, "genai", **EXACT).complete(alone, GenerationConfig(max_new_tokens=12))
    assert answer.strip() == fresh.answer.strip()


def test_a_request_maps_to_a_generation_config():
    from ovphi.server.app import ServerSettings
    from ovphi.server.requests import generation_of
    from ovphi.server.schema import ChatCompletionRequest

    request = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "Hi"}],
                                                    "max_tokens": 7, "ignore_eos": True, "seed": 3})
    generation = generation_of(request, ServerSettings(model_name="m"))
    assert (generation.max_new_tokens, generation.ignore_eos, generation.seed, generation.temperature) == (7, True, 3, 1.0)
    plain = generation_of(request.model_copy(update={"ignore_eos": False, "max_tokens": None}), ServerSettings(model_name="m"))
    assert not plain.ignore_eos and plain.max_new_tokens == ServerSettings(model_name="m").max_tokens


def test_every_bad_request_gets_its_status_and_an_openai_error(real, red_image, tmp_path):
    model = real.client().models.list().data[0].id
    huge_text = "a " * 140_000  # past the 131,072-token context
    not_image = "data:image/png;base64," + base64.b64encode(b"not a picture").decode()
    cases = [
        ("{not json", 400, "invalid_json"),
        ({"model": model}, 400, "invalid_request"),
        ({"model": "other", "messages": [user("Hi")]}, 404, "model_not_found"),
        ({"model": model, "messages": [user("Hi", "data:image/png;base64,@@@")]}, 400, "invalid_image_url"),
        ({"model": model, "messages": [user("Hi", not_image)]}, 400, "invalid_image"),
        ({"model": model, "messages": [user("Hi", *[data_url(red_image.resize((8, 8)))] * 9)]}, 400,
         "too_many_images"),
        ({"model": model, "messages": [user("Hi", "http://127.0.0.1:9/x.png")]}, 400, "invalid_image_url"),
        ({"model": model, "messages": [user("Hi", "/etc/passwd")]}, 400, "invalid_image_url"),
        ({"model": model, "messages": [user("Hi")], "n": 2}, 400, None),
        ({"model": model, "messages": [user("Hi")], "temperature": -1}, 400, None),
        ({"model": model, "messages": [user(huge_text)]}, 400, "context_length_exceeded"),
    ]
    for body, status, code in cases:
        reply = real.post(body)
        assert reply.status_code == status, (body if isinstance(body, str) else str(body)[:200], reply.text[:300])
        error = reply.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
        assert code is None or error["code"] == code, error
    assert "private addresses" in real.post(cases[6][0]).json()["error"]["message"]
    assert real.post({"model": model, "messages": [user("Hi")], "max_tokens": 3}).status_code == 200  # still serving


def test_a_large_body_is_refused(fp32_ir):
    server = Served(fp32_ir, "--max-body-mb", "1", "--no-cache")
    try:
        reply = server.post({"model": "x", "messages": [user("a" * (2 << 20))]})
        assert reply.status_code == 413 and reply.json()["error"]["code"] == "body_too_large"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def fake_server(tiny_dir):
    server = Served(tiny_dir, "--backend", "fake", "--max-queue", "8",
                    env=FAKE | {"OVPHI_FAKE_WORDS": "5", "OVPHI_FAKE_DELAY": "0.02"})
    yield server
    server.stop()


def test_concurrent_clients_are_served_in_turn_and_counted(fake_server):
    client = fake_server.client()

    def three_requests(number):
        answers = []
        for turn in range(3):
            reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": f"{number}"}],
                                                   max_tokens=5)
            answers.append(reply.choices[0].message.content)
        return answers

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(three_requests, range(8)))
    assert results == [["a fake engine answers every"] * 3] * 8
    metrics = requests.get(f"{fake_server.base}/metrics", timeout=10).text
    assert 'ovphi_requests_total{status="200"} 24' in metrics and "ovphi_queue_depth 0" in metrics
    assert "ovphi_ttft_seconds_count 24" in metrics and "ovphi_generated_tokens_total 120" in metrics


def test_a_full_queue_answers_429_and_a_client_that_leaves_frees_the_slot(tiny_dir):
    server = Served(tiny_dir, "--backend", "fake", "--max-queue", "1",
                    env=FAKE | {"OVPHI_FAKE_WORDS": "200", "OVPHI_FAKE_DELAY": "0.05"})  # 10 s answers
    body = {"model": "tiny", "messages": [user("Tell me.")], "max_tokens": 200, "stream": True}
    try:
        payload = json.dumps(body).encode()
        running = server.raw_post(payload)
        assert running.recv(100).startswith(b"HTTP/1.1 200")  # the first answer is being written
        waiting = concurrent.futures.ThreadPoolExecutor(1).submit(server.post, body | {"stream": False})
        time.sleep(0.5)
        refused = server.post(body | {"stream": False})
        assert refused.status_code == 429 and refused.headers["Retry-After"]
        running.close()  # the client goes away mid-stream (as when it is killed): its generation stops
        started = time.monotonic()
        assert waiting.result(timeout=30).status_code == 200
        assert time.monotonic() - started < 12  # its own 10 s, not the rest of the abandoned one as well
    finally:
        server.stop()


def test_security_defaults(tiny_dir, red_image):
    result = subprocess.run([sys.executable, "-m", "ovphi", "serve", str(tiny_dir), "--host", "0.0.0.0"],
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 1 and "--api-key" in result.stderr
    server = Served(tiny_dir, "--backend", "fake", env=FAKE, key="sesame")
    try:
        body = {"model": "tiny", "messages": [user("Hi")]}
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            reply = requests.post(f"{server.base}/v1/chat/completions", json=body, headers=headers, timeout=30)
            assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"
        assert server.post(body).status_code == 200
        for path in ("/health", "/", "/page/chat.js"):  # no key needed: the page's files hold nothing of the model
            assert requests.get(f"{server.base}{path}", timeout=10).status_code == 200, path
        for path in ("/metrics", "/v1/models", "/pagex", "/page/../metrics"):
            assert requests.get(f"{server.base}{path}", timeout=10).status_code == 401, path
    finally:
        server.stop()


def test_private_addresses_and_paths_outside_the_allowed_folder_are_refused(tmp_path, red_image):
    from ovphi.server.app import ServerSettings
    from ovphi.server.requests import RequestError, read_image_url

    allowed = ServerSettings(model_name="m", allow_local_dir=str(tmp_path))
    for host in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "localhost", "[::1]"):
        with pytest.raises(RequestError, match="private addresses"):
            read_image_url(f"http://{host}/red.png", allowed)
    red_image.save(tmp_path / "red.png")
    assert read_image_url(str(tmp_path / "red.png"), allowed).size == red_image.size
    with pytest.raises(RequestError, match="not beneath"):
        read_image_url("/etc/hostname", allowed)
    with pytest.raises(RequestError, match="--allow-local-dir"):
        read_image_url(str(tmp_path / "red.png"), ServerSettings(model_name="m"))
