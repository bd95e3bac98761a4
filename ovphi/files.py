"""Writing files and folders so that a reader never sees a half-written one and nothing else is lost."""
import json
import os
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path

from .errors import OvphiError


def check_model_folder(path):
    """Refuse a model folder that is missing or is a file, saying which."""
    path = Path(path)
    if not path.is_dir():
        raise OvphiError(f"model folder {path} is a file, not a folder" if path.exists() else
                         f"model folder {path} does not exist")


def read_json(path, what):
    """The JSON in a file; one line naming the file and `what` it is when it is not JSON or cannot be read."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise OvphiError(f"{path} is not JSON ({error.msg}, line {error.lineno}): {what}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise OvphiError(f"{path} cannot be read ({type(error).__name__}): {what}") from None


def check_output_file(path):
    """Refuse, before any work, an output path that cannot be written: a folder, or a missing or
    read-only parent folder."""
    path = Path(path)
    if path.is_dir():
        raise OvphiError(f"output {path} is a folder")
    parent = path.resolve().parent
    if not parent.is_dir():
        raise OvphiError(f"output folder {parent} does not exist")
    if not os.access(parent if not path.exists() else path, os.W_OK):
        raise OvphiError(f"output {path} is not writable")


def write_atomically(path, text):
    """Write text to path. A regular file (or a new one) is written beside it and renamed into place; a
    symlink is followed to its target; a device or a pipe (/dev/stdout, a FIFO) is written through."""
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    if path.exists() and not stat.S_ISREG(path.stat().st_mode):
        with open(path, "w") as stream:
            stream.write(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        try:
            partial.write_text(text)
        except OSError as error:  # e.g. /proc/version: the file exists, its folder takes no new one
            raise OvphiError(f"cannot write {path}: no new file can be made in {path.parent} to replace it with"
                             f" ({error.strerror or error})") from None
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def partial_name(out):
    return Path(out).with_name(f".{Path(out).name}.partial-{os.getpid()}")


def stale_partials(out):
    """Partial folders of OUT (and old ones renamed aside) left by processes that no longer run (killed: nothing
    could remove them)."""
    out = Path(out)
    stale = []
    candidates = [*out.parent.glob(f".{out.name}.partial-*"), *out.parent.glob(f".{out.name}.old-*")] \
        if out.parent.is_dir() else []
    for candidate in candidates:
        pid = candidate.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            stale.append(candidate)
    return stale


@contextmanager
def partial_folder(out):
    """Yields an empty folder beside OUT; when the block ends without error it replaces OUT. Whatever
    happens, nothing partial is left and OUT is whole, the old one or the new (stale partials of killed runs
    are removed first). The old OUT is renamed aside before the new one is renamed in, and removed only then:
    an interruption while it is removed leaves the new OUT in place, one between the renames puts the old back."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in stale_partials(out):
        if stale.name.startswith(f".{out.name}.old-") and not out.exists():
            stale.rename(out)  # a run killed between its two renames: its old OUT comes back
        else:
            shutil.rmtree(stale, ignore_errors=True)
    partial, old = partial_name(out), out.with_name(f".{out.name}.old-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        yield partial
        if out.exists():
            out.rename(old)
        partial.rename(out)
    finally:
        if old.exists():
            if out.exists():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.rename(out)
        shutil.rmtree(partial, ignore_errors=True)


def write_folder_atomically(out, write):
    """Fill a folder beside OUT with write(folder), then rename it to OUT (replacing it)."""
    with partial_folder(out) as folder:
        write(folder)


def write_report(out, report, markdown):
    """OUT/report.json (`report`) and OUT/report.md (`markdown`, its text), written as one folder (a benchmark's)."""

    def write(folder):
        (folder / "report.json").write_text(json.dumps(report, indent=2))
        (folder / "report.md").write_text(markdown)

    write_folder_atomically(out, write)


def check_replaceable(out, ours, force=False, keep=()):
    """Refuse, before any work, to replace OUT unless it is new, empty, or holds only files named in `ours`
    (a previous output of the same kind); `force` allows any other folder. Never OUT = the working
    folder or one of its parents, a file, or a folder that is or holds one of `keep` (e.g. the model)."""
    out = Path(out).resolve()
    cwd = Path.cwd().resolve()
    if out == cwd or out in cwd.parents:
        raise OvphiError(f"{out} is the working folder or holds it: choose a new folder")
    for kept in keep:
        kept = Path(kept).resolve()
        if out == kept or out in kept.parents:
            raise OvphiError(f"{out} is or holds {kept}, which must be kept: choose another folder")
    if not out.exists():
        return
    if not out.is_dir():
        raise OvphiError(f"{out} is a file, not a folder")
    names = {item.name for item in out.iterdir()}
    if names and not names <= set(ours) and not force:
        raise OvphiError(f"{out} holds other files than a previous output ({sorted(names - set(ours))[0]}, ...);"
                         " choose a new folder, or pass --force to replace it")
