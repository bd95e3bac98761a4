"""Bad input and faults, tried as a careful user would: each case is a command, the exit code, a phrase of its
one-line message, and, where data is at stake, the files that must still be there afterwards."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import default_sigint

ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")


def ovphi(*args, cwd=None, stdin=subprocess.DEVNULL, **options):
    return subprocess.run([sys.executable, "-m", "ovphi", *map(os.fsdecode, map(str, args))], capture_output=True,
                          env=ENV, cwd=cwd, stdin=stdin, timeout=600, **options)


@pytest.fixture
def place(tmp_path, int4_ir, tiny_dir, red_image):
    """Names the cases use: a folder of notes, an image, a symlink, the models."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "mine.txt").write_text("keep me")
    red_image.save(tmp_path / "red.png")
    (tmp_path / "not-utf8.txt").write_bytes(b"caf\xe9?")
    (tmp_path / "a-file").write_text("a file")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text('{"model_type": "phi3_v",')
    return {"broken": tmp_path / "broken", "tmp": tmp_path, "notes": notes, "image": tmp_path / "red.png", "ir": int4_ir, "tiny": tiny_dir,
            "not_utf8": tmp_path / "not-utf8.txt", "file": tmp_path / "a-file"}


CASES = [  # (arguments, exit code, phrase of the message, files that must survive)
    (["eval", "{ir}", "{ir}", "--out", "{notes}"], 1, "holds other files than a previous output", ["notes/mine.txt"]),
    (["eval", "{ir}", "{ir}", "--out", ".."], 1, "is the working folder or holds it", ["notes/mine.txt"]),
    (["bench", "{ir}", "--out", "."], 1, "is the working folder or holds it", ["notes/mine.txt"]),
    (["bench", "{ir}", "--out", "{notes}"], 1, "holds other files than a previous output", ["notes/mine.txt"]),
    (["bench", "{ir}", "--out", "{tmp}/r", "--scenario", "nope"], 1, "unknown scenario nope", []),
    (["bench", "{tmp}/missing", "--out", "{tmp}/r"], 1, "model folder", []),
    (["convert", "{tiny}", "{notes}"], 1, "--force", ["notes/mine.txt"]),
    (["convert", "{tiny}", "{file}"], 1, "is a file", ["a-file"]),
    (["convert", "{tiny}", "{tiny}/.."], 1, "must be kept", []),
    (["convert", "{ir}", "{tmp}/out"], 1, "already an OpenVINO IR folder", []),
    (["convert", "{tiny}", "{tmp}/out", "--backup-precision", "int2"], 1, "backup precision int2", []),
    (["ask", "{ir}", "--image", "{tmp}"], 1, "not a regular file", []),
    (["ask", "{ir}", "--image", "/dev/null"], 1, "not a regular file", []),
    (["ask", "{ir}", "--image", "{image}", "--output", "{tmp}"], 1, "is a folder", []),
    (["ask", "{ir}", "--image", "{image}", "--prompt-file", "{not_utf8}"], 1, "not UTF-8", []),
    (["ask", "{ir}", "--image", "{image}", "--prompt-file", "{tmp}/none.txt"], 1, "cannot read the prompt file", []),
    (["ask", "{ir}", "--image", "{image}", "--temperature", "-1"], 1, "temperature must be 0", []),
    (["ask", "{ir}", "--image", "{image}", "--repetition-penalty", "0"], 1, "repetition_penalty must be above 0", []),
    (["ask", "{ir}", "--image", "{image}", "--ov-option", "NOPE"], 1, "is not KEY=VALUE", []),
    (["ask", "{ir}", "--image", "{image}", "--ov-option", "NOT_A_PROPERTY=1"], 1, "NOT_A_PROPERTY", []),
    (["ask", "{ir}", "--image", "{image}", "--device", "HETERO:FOO"], 1, "FOO", []),
    (["serve", "{ir}", "--host", "0.0.0.0"], 1, "--api-key", []),
    (["serve", "{ir}", "--max-queue", "0"], 1, "--max-queue must be at least 1", []),
    (["nope"], 2, "unknown command 'nope'", []),
    (["ask", "{file}", "--image", "{image}"], 1, "is a file, not a folder", []),
    (["bench", "{file}", "--out", "{tmp}/r"], 1, "is a file, not a folder", []),
    (["convert", "{broken}", "{tmp}/out"], 1, "config.json is not JSON (Expecting", ["broken/config.json"]),
    (["ask", "{ir}", *["--image", "{image}"] * 9], 1, "9 images; one question takes at most 8", []),
    (["serve", "{ir}", "--port", "99999"], 1, "--port must be 1 to 65535", []),
    (["serve", "{ir}", "--header-timeout", "0"], 1, "--header-timeout must be more than 0 seconds", []),
    (["export-ovms", "{ir}", "--cache-size", "-5", "--max-num-seqs", "0", "--device", "FOO"], 1,
     "--device FOO is not an OpenVINO device", []),
]


@pytest.mark.parametrize("args, code, message, kept", CASES, ids=[" ".join(c[0][:2]) + f" #{n}" for n, c in
                                                               enumerate(CASES)])
def test_bad_input_fails_in_one_line_and_loses_nothing(place, args, code, message, kept):
    result = ovphi(*[a.format(**place) for a in args], cwd=place["notes"] if ".." in args or "." in args else None)
    stderr = result.stderr.decode()
    assert result.returncode == code, stderr
    last = stderr.strip().splitlines()[-1]
    assert message in last and "Traceback" not in stderr and "/home/jenkins" not in last, stderr
    for name in kept:
        assert (place["tmp"] / name).exists(), name
    assert not [p for p in place["tmp"].iterdir() if ".partial" in p.name]


def test_outputs_write_through_devices_and_symlinks(place):
    target = place["tmp"] / "answer.txt"
    link = place["tmp"] / "link.txt"
    link.symlink_to(target)
    for output in ("/dev/null", link):
        result = ovphi("ask", place["ir"], "--image", place["image"], "--max-new-tokens", 3, "--output", output)
        assert result.returncode == 0, result.stderr
    assert os.path.islink(link) and target.read_text().strip() and os.path.exists("/dev/null")
    assert not os.path.isfile("/dev/null")


def test_a_closed_pipe_ends_quietly(place):
    command = (f"{sys.executable} -m ovphi ask {place['ir']} --image {place['image']} --max-new-tokens 64 "
               f"--format json | head -c 1")
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, env=ENV, timeout=300)
    assert result.stdout == b"{" and b"Traceback" not in result.stderr and b"BrokenPipe" not in result.stderr


def test_non_utf8_prompt_bytes_are_one_line(place):
    result = subprocess.run([sys.executable.encode(), b"-m", b"ovphi", b"ask", os.fsencode(place["ir"]), b"--image",
                             os.fsencode(place["image"]), b"--prompt", b"caf\xe9?"], capture_output=True, env=ENV,
                            timeout=300)
    assert result.returncode == 1 and b"not valid UTF-8" in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_convert_or_checkpoint_leaves_nothing(tiny_dir, tmp_path, signal_number):
    for command in (["convert", str(tiny_dir), str(tmp_path / "ir"), "--weight-format", "fp16"],
                    ["make-checkpoint", "full", str(tmp_path / "ckpt"), "--layers", "2"]):
        process = subprocess.Popen([sys.executable, "-m", "ovphi", *command], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=ENV, preexec_fn=default_sigint)
        if command[0] == "convert":
            for line in process.stdout:
                if line.startswith(b"[1/"):
                    break
            time.sleep(2)
        else:
            deadline = time.monotonic() + 60
            while not list(tmp_path.glob(".ckpt.partial-*")) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1)  # drawing its random weights
        process.send_signal(signal_number)
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 130 and b"interrupted" in stderr, stderr
        assert list(tmp_path.iterdir()) == [], command[0]


def test_a_convert_removes_what_a_killed_one_left(tiny_dir, tmp_path):
    stale = tmp_path / ".ir.partial-999999"  # no process has that id: killed with SIGKILL, say
    stale.mkdir()
    (stale / "openvino_language_model.xml").write_text("half")
    result = ovphi("convert", tiny_dir, tmp_path / "ir", "--weight-format", "fp16")
    assert result.returncode == 0, result.stderr
    assert not stale.exists() and json.loads((tmp_path / "ir" / "ovphi_manifest.json").read_text())
