"""An `ovphi serve` process on a free loopback port, for the tests that talk to a real server (the `openai`
client, a browser): the fake engine (fake_engine.py) where only the protocol matters."""
import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import openai
import requests

TESTS = Path(__file__).parent
FAKE = {"OVPHI_ENGINES": "fake=fake_engine:FakeEngine",
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def data_url(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class Served:
    """An `ovphi serve` process on a free loopback port, ready once /health says so."""

    def __init__(self, model_dir, *args, env=None, key=None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.key = key
        command = [sys.executable, "-m", "ovphi", "serve", str(model_dir), "--port", str(self.port), *args]
        command += ["--api-key", key] if key else []
        self.process = subprocess.Popen(command, env=dict(os.environ, HF_HUB_OFFLINE="1", **(env or {})),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.stderr.read()
            try:
                if requests.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise AssertionError("the server did not get ready")

    def client(self):
        return openai.OpenAI(base_url=f"{self.base}/v1", api_key=self.key or "none", max_retries=0, timeout=120)

    def post(self, body, **options):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        headers = {"Content-Type": "application/json"} | (
            {"Authorization": f"Bearer {self.key}"} if self.key else {}) | options.pop("headers", {})
        return requests.post(f"{self.base}/v1/chat/completions", data=data, headers=headers, timeout=120, **options)

    def raw_post(self, body, length=None):
        """A socket that has sent a chat completion request as plainly as a client can (a Content-Length of
        `length`, the body's by default), for a test to read, drip into or drop."""
        connection = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        connection.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n%s" % (len(body) if length is None else length, body))
        return connection

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


