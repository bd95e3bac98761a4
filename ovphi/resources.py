"""Process resource readings shared by the checkpoint builder, convert and the benchmarks."""
import resource
from pathlib import Path


def peak_rss_bytes():
    """Peak resident memory of this process so far: VmHWM, which starts afresh at exec (ru_maxrss
    also counts the parent's memory at fork, so a small child of a big parent would read big)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
