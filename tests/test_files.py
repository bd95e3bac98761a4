"""Replacing a folder: interrupted at any step, OUT is whole (the old one or the new), never half of either."""
import os
import shutil
from pathlib import Path

import pytest

from ovphi import files
from ovphi.files import partial_folder


def folder(path, name):
    path.mkdir()
    for part in ("language.xml", "language.bin", "manifest.json"):
        (path / part).write_text(f"{name} {part}")


def contents(path):
    return sorted((item.name, item.read_text()) for item in path.iterdir())


def interrupt_at(monkeypatch, name, after_files=0):
    """The named step raises KeyboardInterrupt (SIGTERM's way in ovphi), rmtree after removing some files."""
    real = {"rmtree": shutil.rmtree, "rename": Path.rename}[name]
    calls = []

    def rmtree(path, ignore_errors=False):
        if Path(path).name.startswith(".out.partial"):
            return real(path, ignore_errors=ignore_errors)
        for item in sorted(Path(path).iterdir())[:after_files]:
            item.unlink()
        calls.append(path)
        raise KeyboardInterrupt

    def rename(self, target):
        calls.append(self)
        if self.name.startswith(".out.partial"):  # the new folder into place
            raise KeyboardInterrupt
        return real(self, target)

    monkeypatch.setattr(*(files.shutil, "rmtree", rmtree) if name == "rmtree" else (Path, "rename", rename))
    return calls


@pytest.mark.parametrize("step", ["rmtree", "rename"])
def test_an_interrupted_replacement_leaves_one_whole_folder(tmp_path, monkeypatch, step):
    out = tmp_path / "out"
    folder(out, "old")
    calls = interrupt_at(monkeypatch, step, after_files=2)
    with pytest.raises(KeyboardInterrupt):
        with partial_folder(out) as new:
            for part in ("language.xml", "language.bin", "manifest.json"):
                (new / part).write_text(f"new {part}")
    monkeypatch.undo()
    assert calls
    expected = "new" if step == "rmtree" else "old"  # removing the old one: the new one is in; else the old one
    assert contents(out) == [(part, f"{expected} {part}") for part in ("language.bin", "language.xml", "manifest.json")]
    assert [item.name for item in tmp_path.iterdir() if item.name != "out" and not item.name.startswith(".out.old")] \
        == []


def test_a_run_killed_between_its_renames_gets_its_old_folder_back(tmp_path):
    out = tmp_path / "out"
    folder(tmp_path / ".out.old-999999999", "old")  # a pid that runs no process
    assert not out.exists()
    with partial_folder(out) as new:
        assert contents(out) == [(p, f"old {p}") for p in ("language.bin", "language.xml", "manifest.json")]
        (new / "x").write_text("new")
    assert contents(out) == [("x", "new")] and sorted(os.listdir(tmp_path)) == ["out"]
