"""Process resource readings shared by the checkpoint builder, convert and the benchmarks."""
import os
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


def rss_file_bytes():
    """Resident memory of this process that maps files (e.g. model weights read through mmap): clean
    pages the kernel can drop under pressure, unlike anonymous memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) * 1024
    return None


def seconds_since_start():
    """Seconds since this process started (interpreter start-up and imports included), from /proc."""
    ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22: starttime
    return float(Path("/proc/uptime").read_text().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
