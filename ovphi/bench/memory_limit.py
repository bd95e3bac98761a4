"""A process under a memory limit, as on a laptop with little RAM: a memory cgroup of its own (cgroup v1's
memory controller, or v2's), created for one run and removed after it. Creating one needs root (or a
delegated cgroup); where it cannot be created, MemoryLimit says why in one line."""
import os
import time
from pathlib import Path

from ..errors import OvphiError
from ..resources import CGROUP_V1_MEMORY, CGROUP_V2


def evict_from_page_cache(folder):
    """Drop the clean cached pages of every file under `folder` (posix_fadvise DONTNEED), so that a process
    that reads them next is charged for them: pages already cached were charged to whoever read them first.
    Pages not yet written back are written first (dirty pages cannot be dropped)."""
    for path in Path(folder).rglob("*"):
        if path.is_file():
            with open(path, "rb") as file:
                os.fdatasync(file.fileno())
                os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


class MemoryLimit:
    """`with MemoryLimit(bytes) as limit:` a fresh memory cgroup; `subprocess.run(limit.wrap(command))` runs a
    command inside it; `limit.readings()` says what the limit did to it."""

    def __init__(self, limit_bytes, root=None):
        self.limit_bytes = limit_bytes
        self.version = 1 if (root or CGROUP_V1_MEMORY).joinpath("memory.limit_in_bytes").exists() else 2
        root = root or (CGROUP_V1_MEMORY if self.version == 1 else CGROUP_V2)
        self.path = root / f"ovphi-{os.getpid()}-{time.monotonic_ns()}"

    def __enter__(self):
        limit_file = "memory.limit_in_bytes" if self.version == 1 else "memory.max"
        try:
            self.path.mkdir()
            (self.path / limit_file).write_text(str(self.limit_bytes))
        except OSError as error:
            self.remove()
            raise OvphiError(f"cannot create a {self.limit_bytes / 2**30:g} GiB memory limit (a memory cgroup in"
                             f" {self.path.parent}: {error.strerror}; it needs root or a delegated cgroup)") from None
        return self

    def __exit__(self, *exc):
        self.remove()

    def remove(self):
        try:
            self.path.rmdir()
        except OSError:
            pass

    def wrap(self, command):
        """`command` run by a shell that first moves itself into the cgroup (so everything the command
        allocates is charged to it; no preexec_fn, which is unsafe in a process with threads)."""
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"), *command]

    def readings(self):
        """{limit_bytes, max_usage_bytes (None where the kernel does not keep it), limit_hits (times usage
        reached the limit and the kernel had to reclaim), oom_kills}."""
        if self.version == 1:
            oom = dict(line.split() for line in (self.path / "memory.oom_control").read_text().splitlines())
            return {"limit_bytes": self.limit_bytes,
                    "max_usage_bytes": int((self.path / "memory.max_usage_in_bytes").read_text()),
                    "limit_hits": int((self.path / "memory.failcnt").read_text()),
                    "oom_kills": int(oom.get("oom_kill", 0))}
        events = dict(line.split() for line in (self.path / "memory.events").read_text().splitlines())
        peak = self.path / "memory.peak"  # Linux 5.19+
        return {"limit_bytes": self.limit_bytes, "max_usage_bytes": int(peak.read_text()) if peak.exists() else None,
                "limit_hits": int(events.get("max", 0)), "oom_kills": int(events.get("oom_kill", 0))}
