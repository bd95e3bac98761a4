"""Writing files so that a reader never sees a half-written one."""
import os
from pathlib import Path


def write_atomically(path, text):
    """Write text to a temporary file beside path, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        partial.write_text(text)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def write_folder_atomically(out, write):
    """Fill a temporary folder beside `out` with write(folder), then rename it to `out` (replacing it)."""
    import shutil

    out = Path(out)
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        write(partial)
        if out.exists():
            shutil.rmtree(out)
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
