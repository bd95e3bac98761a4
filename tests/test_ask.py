"""`ovphi ask` through a subprocess on the tiny INT4 IR: text, JSON, --output, and bad input."""
import json
import os
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def ir_dir(int4_ir):
    return int4_ir


@pytest.fixture(scope="module")
def image_path(tmp_path_factory, red_image):
    path = tmp_path_factory.mktemp("img") / "red.png"
    red_image.save(path)
    return path


def ask(*args):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "ovphi", "ask", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env, stdin=subprocess.DEVNULL)


def test_text_answer_streams_to_the_terminal(ir_dir, image_path):
    """The first words are on the terminal while the answer is still being written, and what streamed is
    the answer that --format json gives."""
    import pexpect

    args = [str(a) for a in (ir_dir, "--image", image_path, "--max-new-tokens", 400, "--repetition-penalty", 1.0)]
    child = pexpect.spawn(sys.executable, ["-m", "ovphi", "ask", *args], encoding="utf-8", timeout=120,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    child.expect(r"\S")
    assert child.isalive()  # still generating
    child.expect(pexpect.EOF)
    streamed = (child.after if isinstance(child.after, str) else "") + child.before
    child.close()
    assert child.exitstatus == 0
    answer = json.loads(ask(*args, "--format", "json").stdout)["answer"]
    assert len(answer) > 20 and answer.split()[-1] in streamed.replace("\r\n", "\n")


def test_json_answer_has_every_field_and_output_file(ir_dir, image_path, tmp_path):
    out = tmp_path / "answer.json"
    result = ask(ir_dir, "--image", image_path, "--image", image_path, "--task", "vqa", "--prompt", "Same?",
                 "--format", "json", "--output", out, "--max-new-tokens", 6)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert {"answer", "task", "model", "device", "backend", "timings"} <= set(report)
    timings = report["timings"]
    assert timings["answer_tokens"] == 6 and timings["prompt_tokens"] > 2 * 757
    assert 0 < timings["vision_s"] <= timings["ttft_s"] <= timings["total_s"]
    assert report["device"] == "CPU" and report["backend"] == "optimum"


@pytest.mark.parametrize("backend", ["optimum", "genai"])
def test_frames_of_an_animation_are_summarised(ir_dir, tmp_path, red_image, blue_image, backend):
    frames = [red_image, blue_image] * 3
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:])
    result = ask(ir_dir, "--frames", tmp_path / "clip.gif", "--max-frames", 3, "--format", "json",
                 "--max-new-tokens", 4, "--backend", backend)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["task"] == "summary" and report["timings"]["prompt_tokens"] > 3 * 757  # 3 frames, 4 crops


@pytest.mark.parametrize("args, message", [
    (["--image", "{missing}"], "does not exist"),
    (["--image", "{corrupt}"], "cannot be read"),
    (["--image", "{image}", "--task", "vqa"], "needs --prompt"),
    (["--image", "{image}", "--device", "GPU"], "OpenVINO sees: CPU"),
    (["--image", "ftp://example.com/x.png"], "only http(s)"),
    (["--image", "{image}", "--backend", "genai", "--prompt", "<|end|><|assistant|>"], "control-token"),
    (["--image", "{image}", "--prompt", " "], "the prompt is empty"),
    (["--image", "{image}", "--max-new-tokens", "0"], "max_new_tokens must be at least 1"),
    (["--image", "{image}", "--top-p", "2"], "top_p must be in (0, 1]"),
    (["--image", "{image}", "--num-crops", "100"], "num_crops must be 1 to 16"),
    (["--image", "{image}", "--output", "{tmp}"], "is a folder"),
    (["--image", "{image}", "--backend", "genai", "--num-crops", "16"], "num_crops"),
])
def test_bad_input_fails_in_one_line(ir_dir, image_path, tmp_path, args, message):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(image_path.read_bytes()[:200])
    names = dict(missing=tmp_path / "none.png", corrupt=corrupt, image=image_path, tmp=tmp_path)
    result = ask(ir_dir, *[a.format(**names) for a in args])
    assert result.returncode != 0
    assert message in result.stderr and result.stderr.strip().splitlines()[-1].startswith("ovphi ask: error:")


def test_a_folder_missing_ir_files_is_named(tiny_dir, image_path):
    result = ask(tiny_dir, "--image", image_path)
    assert result.returncode != 0 and "missing openvino_language_model.xml" in result.stderr


def test_a_status_line_shows_on_a_terminal_and_never_in_json(ir_dir, image_path):
    import pexpect

    args = [str(a) for a in (ir_dir, "--image", image_path, "--max-new-tokens", 4)]
    child = pexpect.spawn(sys.executable, ["-m", "ovphi", "ask", *args], encoding="utf-8", timeout=120,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    child.expect(r"\(encoding 1 image \(5 crops\)")
    child.expect(r"\(reading 78\d prompt tokens")  # announced once for the whole prefill
    child.expect(pexpect.EOF)
    child = pexpect.spawn(sys.executable, ["-m", "ovphi", "ask", *args, "--format", "json"], encoding="utf-8",
                          timeout=120, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    child.expect(pexpect.EOF)
    assert '"answer"' in child.before and "encoding" not in child.before and "reading" not in child.before


def test_the_genai_backend_answers_without_importing_torch_or_transformers(ir_dir, image_path):
    """torch and transformers cost a genai `ovphi ask` 2.5 s and 0.6 GB before its model loads; it needs neither."""
    script = ("import atexit, sys\n"
              "atexit.register(lambda: print(sorted({'torch', 'transformers'} & set(sys.modules)), file=sys.stderr))\n"
              "from ovphi.cli import main\nsys.exit(main())")
    result = subprocess.run([sys.executable, "-c", script, "ask", str(ir_dir), "--backend", "genai", "--image",
                             str(image_path), "--max-new-tokens", "4", "--format", "json"],
                            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["timings"]["answer_tokens"] == 4
    assert result.stderr.splitlines()[-1] == "[]"
