"""What `ovphi serve` accepts and refuses of OpenAI's chat completions API, each case as a client sends it (the fake
engine behind a real server on 127.0.0.1; the `openai` client where it can send the case)."""
import http.server
import io
import json
import threading

import pytest
import requests
from served import FAKE, Served

from ovphi.errors import OvphiError
from ovphi.images import fetch

HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def server(tiny_dir):
    served = Served(tiny_dir, "--backend", "fake", env=FAKE | {"OVPHI_FAKE_WORDS": "4"})
    yield served
    served.stop()


REFUSED = [  # (what the request changes, the param the 400 names, words of its message)
    ({"temperature": 3}, "temperature", "less than or equal to 2"),
    ({"temperature": -0.5}, "temperature", "greater than or equal to 0"),
    ({"top_p": 0}, "top_p", "greater than 0"),
    ({"seed": 2 ** 70}, "seed", "less than"),
    ({"max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
    ({"max_completion_tokens": -3}, "max_completion_tokens", "greater than or equal to 1"),
    ({"stream_options": {"include_usage": True}}, "stream_options", "only allowed when stream is true"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
    ({"n": 2}, "n", "only n = 1"),
    ({"logprobs": True}, "logprobs", "cannot report log probabilities"),  # the fake engine
    ({"top_logprobs": 2}, "top_logprobs", "only allowed when logprobs is true"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "0 to 20"),
    ({"logit_bias": {"50256": -100}}, "logit_bias", "cannot apply logit_bias"),  # the fake engine
    ({"logit_bias": {"x": 1}}, "logit_bias", "keys are token ids"),
    ({"logit_bias": {"5": 101}}, "logit_bias", "-100 to 100"),
    ({"presence_penalty": 0.5}, "presence_penalty", "cannot apply presence or frequency"),
    ({"frequency_penalty": 2.5}, "frequency_penalty", "less than or equal to 2"),
    ({"response_format": {"type": "json_object"}}, "response_format", "cannot constrain"),  # the fake engine
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "cannot constrain"),  # the fake engine
    ({"tools": [{"type": "function", "function": {"name": "two words"}}]}, "tools[0].function.name", "pattern"),
    ({"tool_choice": "required"}, "tool_choice", "only allowed when tools are given"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content[0]",
     "needs image_url"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "video"}]}]},
     "messages[0].content[1].type", "'text' or 'image_url'"),
    ({"messages": [{"role": "robot", "content": "42"}]}, "messages[0].role", "Input should be"),
    ({"messages": HI + [{"role": "assistant", "content": "Hel"}]}, "messages[1].role", "prefill"),
]


@pytest.mark.parametrize("change, param, words", REFUSED, ids=[case[1] for case in REFUSED])
def test_a_request_out_of_range_or_asking_for_what_is_not_supported_gets_a_400_naming_it(server, change, param,
                                                                                          words):
    reply = server.post({"model": "tiny", "messages": HI} | change)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == param and words in error["message"]


@pytest.mark.parametrize("raw, param, words", [
    ('{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "temperature": NaN}', "temperature",
     "finite number"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": "a \\ud800 b"}]}', "messages[0].content",
     "lone surrogate"),
    ('{"model": "tiny", "messages": [{"role": "user", "content": [{"type": "text", "text": "\\udfff"}]}]}',
     "messages[0].content", "not valid Unicode"),
    ("[" * 100_000 + "]" * 100_000, None, "nests too deeply"),
])
def test_bodies_no_schema_catches_get_a_400_not_a_traceback(server, raw, param, words):
    reply = server.post(raw)
    assert reply.status_code == 400 and reply.headers["content-type"] == "application/json", reply.text
    assert reply.json()["error"]["param"] == param and words in reply.json()["error"]["message"]


def test_accepted_edges_are_answered(server):
    client = server.client()
    for change in ({"temperature": 1e-300}, {"seed": -1}, {"seed": 2 ** 63 - 1}, {"temperature": 2, "top_p": 1}):
        assert client.chat.completions.create(model="tiny", messages=HI, **change).choices[0].message.content
    for messages in ([{"role": "developer", "content": "Be brief."}] + HI, [{"role": "system", "content": "Hi"}]):
        reply = client.chat.completions.create(model="tiny", messages=messages)
        assert reply.choices[0].message.content == "a fake engine answers"


def test_the_model_is_described_and_answers_carry_a_fingerprint(server):
    client = server.client()
    listed = client.models.list().data[0]
    assert client.models.retrieve("tiny") == listed and listed.created > 1_700_000_000
    missing = requests.get(f"{server.base}/v1/models/other", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    reply = client.chat.completions.create(model="tiny", messages=HI)
    assert reply.system_fingerprint.startswith("ovphi-") and reply.system_fingerprint.endswith("-fake")
    streamed = server.post({"model": "tiny", "messages": HI, "stream": True}, stream=True)
    assert streamed.headers["cache-control"] == "no-cache"
    chunks = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: {")]
    assert {chunk["system_fingerprint"] for chunk in chunks} == {reply.system_fingerprint}
    assert "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks) == \
        reply.choices[0].message.content


def test_a_browser_preflight_is_answered_before_the_key_is_checked(tiny_dir):
    served = Served(tiny_dir, "--backend", "fake", "--cors-origin", "http://page.test", env=FAKE, key="sesame")
    try:
        preflight = requests.options(f"{served.base}/v1/chat/completions", timeout=10, headers={
            "Origin": "http://page.test", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "http://page.test"
        refused = requests.post(f"{served.base}/v1/chat/completions", json={"model": "tiny", "messages": HI},
                                headers={"Origin": "http://page.test"}, timeout=10)
        assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "http://page.test"
    finally:
        served.stop()


class Redirects(http.server.BaseHTTPRequestHandler):
    """/to?URL answers 302 to URL; /png answers a picture."""

    def do_GET(self):
        if self.path.startswith("/to?"):
            self.send_response(302)
            self.send_header("Location", self.path[4:])
            self.end_headers()
            return
        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (4, 4), "red").save(buffer, format="PNG")
        self.send_response(200)
        self.send_header("Content-Length", str(len(buffer.getvalue())))
        self.end_headers()
        self.wfile.write(buffer.getvalue())

    def log_message(self, *args):
        pass


def test_every_redirect_of_an_image_url_is_checked_before_it_is_followed():
    """127.0.0.1 stands for a public host and 127.0.0.2 for a private one: the guard is given every hop's address."""
    listener = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirects)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    port = listener.server_address[1]
    checked = []

    def only_first(host, address):
        checked.append(address)
        if address != "127.0.0.1":
            raise OvphiError(f"refused {address}")

    try:
        assert fetch(f"http://127.0.0.1:{port}/to?/png", check_address=only_first).startswith(b"\x89PNG")
        with pytest.raises(OvphiError, match="refused 127.0.0.2"):
            fetch(f"http://127.0.0.1:{port}/to?http://127.0.0.2:{port}/png", check_address=only_first)
        assert checked == ["127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.2"]
    finally:
        listener.shutdown()


@pytest.fixture(scope="module")
def impatient(tiny_dir):
    """A server that gives a request's headers and its body one second each, and answers in 1.5 s."""
    served = Served(tiny_dir, "--backend", "fake", "--body-timeout", "1", "--header-timeout", "1",
                    env=FAKE | {"OVPHI_FAKE_PREFILL": "1.5"})
    yield served
    served.stop()


def test_a_body_that_drips_in_is_refused_in_time(impatient):
    import time

    with impatient.raw_post(b"{", length=1000) as client:
        started = time.monotonic()
        for _ in range(3):
            time.sleep(0.5)
            try:
                client.sendall(b" ")
            except OSError:
                break
        answer = client.recv(1000)
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in answer
    assert time.monotonic() - started < 3
    assert impatient.client().chat.completions.create(model="tiny", messages=HI).choices[0].message.content


def test_connections_that_never_finish_their_headers_are_closed_in_time(impatient):
    import socket
    import time

    started = time.monotonic()
    half_open = [socket.create_connection(("127.0.0.1", impatient.port), timeout=10) for _ in range(50)]
    for connection in half_open:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    kept_alive = socket.create_connection(("127.0.0.1", impatient.port), timeout=10)
    kept_alive.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while not answer.endswith(b"}"):
        answer += kept_alive.recv(1000)
    assert answer.startswith(b"HTTP/1.1 200") and b'"status":"ready"' in answer
    kept_alive.sendall(b"GET /health HTTP/1.1\r\n")  # the next request on it stalls too
    for connection in [*half_open, kept_alive]:
        with connection:
            assert connection.recv(1000) == b""  # closed by the server, without an answer
    assert time.monotonic() - started < 5
    assert impatient.client().chat.completions.create(model="tiny", messages=HI).choices[0].message.content


def test_a_pipelined_request_is_answered_though_its_answer_takes_longer_than_the_header_deadline(impatient):
    import socket

    body = json.dumps({"model": "tiny", "messages": HI}).encode()
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=30) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                           b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                           b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        answers = b""
        while part := connection.recv(65536):
            answers += part
    assert answers.count(b"HTTP/1.1 200") == 2 and b'"chat.completion"' in answers
