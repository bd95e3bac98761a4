"""The compiled-model cache keeps one folder, the current settings': a load removes blobs that other devices,
properties, OpenVINO versions or an earlier IR left behind, and says what it wrote and removed."""
import os
import shutil
import subprocess
import sys

from ovphi.runtime import RuntimeOptions, load
from ovphi.runtime.compiled_cache import cache_folder, keep_only
from ovphi.runtime.engine import Capabilities


def test_the_folder_changes_with_the_device_the_properties_and_the_ir(tmp_path):
    (tmp_path / "openvino_language_model.xml").write_text("<net/>")
    folder = cache_folder(tmp_path, "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    assert folder == cache_folder(tmp_path, "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    assert folder.parent == tmp_path / "model_cache"
    assert folder != cache_folder(tmp_path, "GPU", {"PERFORMANCE_HINT": "LATENCY"})
    assert folder != cache_folder(tmp_path, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
    (tmp_path / "openvino_language_model.xml").write_text("<net version='2'/>")  # converted again
    assert folder != cache_folder(tmp_path, "CPU", {"PERFORMANCE_HINT": "LATENCY"})


def test_keep_only_removes_every_other_folder_and_loose_blob(tmp_path):
    cache = tmp_path / "model_cache"
    (cache / "current").mkdir(parents=True)
    (cache / "current" / "a.blob").write_bytes(b"x" * 300)
    (cache / "older").mkdir()
    (cache / "older" / "b.blob").write_bytes(b"y" * 500)
    (cache / "loose.blob").write_bytes(b"z" * 200)  # where ovphi wrote blobs before it kept a folder per setting
    use = keep_only(cache / "current", bytes_before=100)
    assert sorted(path.name for path in cache.iterdir()) == ["current"]
    assert (use.bytes, use.written_bytes, use.removed_bytes) == (300, 200, 700)
    assert "0.00 GB" in str(use) and "removed" in str(use)


def test_a_load_with_other_settings_replaces_the_cache_and_a_repeated_load_writes_nothing(int4_ir, tmp_path):
    model = tmp_path / "ir"
    shutil.copytree(int4_ir, model, ignore=shutil.ignore_patterns("model_cache"))
    first = load(model).compiled_cache
    assert first.written_bytes > 0 and first.removed_bytes == 0
    other = load(model, precision="f32").compiled_cache
    assert other.folder != first.folder and other.removed_bytes == first.bytes
    assert [path.name for path in (model / "model_cache").iterdir()] == [other.folder.name]
    again = load(model, precision="f32").compiled_cache
    assert (again.written_bytes, again.removed_bytes) == (0, 0) and again.bytes == other.bytes
    assert load(model, options=RuntimeOptions(cache=False)).compiled_cache is None
    assert [path.name for path in (model / "model_cache").iterdir()] == [other.folder.name]  # untouched when off


def test_the_command_that_fills_the_cache_says_how_much_it_holds(int4_ir, tmp_path, red_image):
    model = tmp_path / "ir"
    shutil.copytree(int4_ir, model, ignore=shutil.ignore_patterns("model_cache"))
    red_image.save(tmp_path / "red.png")
    command = [sys.executable, "-m", "ovphi", "ask", str(model), "--image", str(tmp_path / "red.png"),
               "--max-new-tokens", "2", "--format", "json"]
    filled = subprocess.run(command, capture_output=True, text=True, timeout=300, env=os.environ | {"HF_HUB_OFFLINE": "1"})
    assert filled.returncode == 0, filled.stderr
    assert "compiled-model cache: " in filled.stderr and str(model / "model_cache") in filled.stderr
    quiet = subprocess.run(command, capture_output=True, text=True, timeout=300, env=os.environ | {"HF_HUB_OFFLINE": "1"})
    assert quiet.returncode == 0 and "compiled-model cache" not in quiet.stderr  # nothing written, nothing removed


def test_the_genai_engines_compile_on_cpu_and_use_the_cache_on_accelerators(int4_ir, tmp_path):
    # on CPU, compiling the IR loads faster than importing the blobs (docs/benchmarks.md, goal 3)
    genai = Capabilities(compiled_cache="accelerators")
    assert not genai.uses_compiled_cache("CPU") and genai.uses_compiled_cache("GPU.0")
    assert Capabilities(compiled_cache="all").uses_compiled_cache("CPU") and not Capabilities().uses_compiled_cache("GPU")
    model = tmp_path / "ir"
    shutil.copytree(int4_ir, model, ignore=shutil.ignore_patterns("model_cache"))
    engine = load(model, backend="genai")
    assert engine.compiled_cache is None and "CACHE_DIR" not in engine.pipeline_properties()
    assert not (model / "model_cache").exists()
