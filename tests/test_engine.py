"""The engine contract: a new engine is one file and one registry entry, and runs through ask, chat and bench
with no edit elsewhere; nothing outside the registry compares engine names."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ovphi.errors import OvphiError
from ovphi.runtime import registry

TESTS = Path(__file__).parent
ENV = dict(os.environ, HF_HUB_OFFLINE="1", OVPHI_ENGINES="fake=fake_engine:FakeEngine",
           PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))


def ovphi(*args):
    return subprocess.run([sys.executable, "-m", "ovphi", *map(str, args)], capture_output=True, text=True,
                          env=ENV, stdin=subprocess.DEVNULL, timeout=600)


def test_the_registry_resolves_names_and_specs():
    assert registry.names()[0] == registry.DEFAULT == "optimum"
    assert registry.split_spec("pytorch:models/tiny") == ("models/tiny", "pytorch")
    assert registry.split_spec("models/a:b") == ("models/a:b", None)  # not an engine name: a folder
    with pytest.raises(OvphiError, match="unknown backend 'nope'"):
        registry.engine_class("nope")


def test_no_engine_name_is_compared_outside_the_registry():
    names = "|".join(re.escape(name) for name in registry.names())
    comparison = re.compile(rf"""(backend|engine|name|spec)\w*\s*(==|!=|\bin\b)\s*[(\[{{]?\s*["']({names})["']"""
                            rf"""|(startswith|endswith)\(\s*[(]?\s*["']({names}|-stock)""")
    found = [f"{path}:{number}" for path in Path("ovphi").rglob("*.py") if path.name != "registry.py"
             for number, line in enumerate(path.read_text().splitlines(), 1) if comparison.search(line)]
    assert found == []


def test_a_new_engine_answers_through_ask(tiny_dir):
    result = ovphi("ask", tiny_dir, "--backend", "fake", "--image", TESTS.parent / "ovphi/calibration/builtin/scene_0.png",
                   "--format", "json", "--max-new-tokens", 4)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["answer"] == "a fake engine answers" and answer["backend"] == "fake"
    assert answer["finish_reason"] == "length" and answer["timings"]["answer_tokens"] == 4


def test_a_new_engine_chats(tiny_dir, tmp_path):
    """Through a pipe: ptyprocess forks this (by now many-threaded) test process and runs Python in the child
    before exec, which crashed it (SIGSEGV) once engines had been loaded here; the pty itself is tested in
    test_chat.py, early in the run."""
    result = subprocess.run([sys.executable, "-m", "ovphi", "chat", str(tiny_dir), "--backend", "fake"],
                            input="Hello?\n/quit\n", capture_output=True, text=True, timeout=120,
                            env=ENV | {"XDG_STATE_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "assistant> a fake engine answers every question the same way" in result.stdout


def test_a_new_engine_is_benchmarked(tiny_dir, tmp_path):
    result = ovphi("bench", f"fake:{tiny_dir}", "--scenario", "image_nc4", "--scenario", "second_turn", "--runs", 1,
                   "--out", tmp_path / "report")
    assert result.returncode == 0, result.stderr
    variant, = json.loads((tmp_path / "report" / "report.json").read_text())["variants"]
    assert variant["backend"] == "fake" and variant["weights"] == "unknown"  # a folder with no manifest says none
    assert variant["language_weight_bytes"] is None and variant["scenarios"]["image_nc4"]["roofline"]["decode_roof_s"] is None
    assert variant["scenarios"]["image_nc4"]["prompt_tokens"]["median"] == 110  # 1 message, 1 image
    assert variant["scenarios"]["second_turn"]["prompt_tokens"]["median"] == 130
