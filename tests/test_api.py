"""The public API: `from ovphi import ...` works in any order, and the README's library example and the
runtime docstring's run as written."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ovphi.runtime

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("first", ["import ovphi.convert.vision", "from ovphi.convert import Recipe",
                                   "import ovphi.runtime", "import ovphi"])
def test_public_names_work_whatever_was_imported_first(first):
    code = (f"{first}\nimport ovphi\nfrom ovphi import load, convert, Recipe, ChatSession, read_image\n"
            "assert callable(ovphi.convert) and ovphi.convert is convert\n"
            "assert ovphi.Recipe(weight_format='int8').awq is False and Recipe().awq is True\n"
            "assert callable(load) and callable(read_image) and ChatSession.__name__ == 'ChatSession'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def python_block(text, after):
    return re.search(r"```python\n(.*?)```", text[text.index(after):], re.S).group(1)


def test_the_readme_and_runtime_examples_run_as_written(tiny_dir, tmp_path, red_image, monkeypatch, capsys):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny").symlink_to(tiny_dir)
    red_image.save(tmp_path / "photo.png")
    red_image.save(tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    exec(python_block((ROOT / "README.md").read_text(), "## Library"), {})
    printed = capsys.readouterr().out
    assert "length" in printed and "TurnTimings(" in printed
    exec(re.search(r'\n    (from ovphi.runtime import.*?)\n\n', ovphi.runtime.__doc__, re.S).group(1)
         .replace("\n    ", "\n"), {})
    assert "TurnTimings(" in capsys.readouterr().out
