"""Process resource readings shared by the checkpoint builder, convert and the benchmarks."""
import ctypes
import os
import resource
import threading
from contextlib import contextmanager
from pathlib import Path

MADV_DONTNEED, MADV_PAGEOUT = 4, 21  # MADV_PAGEOUT: Linux 5.4+


def peak_rss_bytes(pids=()):
    """Peak resident memory of this process so far: VmHWM, which starts afresh at exec (ru_maxrss
    also counts the parent's memory at fork, so a small child of a big parent would read big); with `pids`
    (an engine's worker processes, Engine.worker_pids), the sum of their peaks and this one's (an upper bound:
    the peaks need not have come at once)."""
    if not Path("/proc/self/status").exists():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return sum(status_bytes(pid, "VmHWM") or 0 for pid in ("self", *pids))


def rss_bytes(field, pids=()):
    """Resident memory of one kind, of this process and of `pids`: "RssAnon" (anonymous: the heap, the plugin's
    repacked weights, the KV cache) or "RssFile" (pages that map files, e.g. weights read through mmap: clean
    pages the kernel can drop under pressure and read back on use)."""
    readings = [status_bytes(pid, field) for pid in ("self", *pids)]
    return None if None in readings else sum(readings)


def mapped_file_bytes(pids=()):
    """{path: resident bytes} of the files mapped by this process and `pids`, from /proc/PID/smaps."""
    resident = {}
    for pid in ("self", *pids):
        path = None
        for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
            fields = line.split()
            if not fields[0].endswith(":"):  # a mapping's header: address range, perms, offset, dev, inode[, path]
                path = fields[5] if len(fields) > 5 and fields[5].startswith("/") else None
            elif fields[0] == "Rss:" and path:
                resident[path] = resident.get(path, 0) + int(fields[1]) * 1024
    return resident


def status_bytes(pid, field):
    """A memory field of /proc/PID/status in bytes (None where it has none)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return None


def seconds_since_start():
    """Seconds since this process started (interpreter start-up and imports included), from /proc."""
    ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22: starttime
    return float(Path("/proc/uptime").read_text().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")


def page_out_mapped_files(paths, advice=MADV_PAGEOUT):
    """Drop this process's resident pages of the memory-mapped `paths` (clean file pages: whatever is still needed
    is read back on use). MADV_PAGEOUT reclaims them, from the page cache too; MADV_DONTNEED only unmaps them, so
    they stay in the page cache for the kernel to keep or drop, and a later read is a minor fault. Returns the bytes
    of mappings advised; 0 where the kernel refuses the advice."""
    wanted = {str(Path(path).resolve()) for path in paths}
    maps = Path("/proc/self/maps")
    if not wanted or not maps.exists():
        return 0
    madvise = ctypes.CDLL(None, use_errno=True).madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    advised = 0
    for line in maps.read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] in wanted:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if madvise(start, end - start, advice) == 0:
                advised += end - start
    return advised


@contextmanager
def paging_out(paths, every=1.0, advice=MADV_PAGEOUT):
    """While the block runs, page out this process's mapped pages of the files `paths` (a callable that lists
    them) every `every` seconds, and once more as it ends: a job that reads big mapped weights once, as nncf does while compressing,
    otherwise keeps all of them resident (full-size INT4 compression: 8.3 GB of mapped fp16 weights beside
    3 GB in use; paged out, 4.2 GB peak RSS, the same IR, the same time)."""
    done = threading.Event()

    def page_out():
        while not done.wait(every):
            page_out_mapped_files(paths(), advice)

    thread = threading.Thread(target=page_out, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        page_out_mapped_files(paths(), advice)


def release_memory():
    """Collect garbage and hand the C heap's free pages back to the system (glibc's malloc_trim), so the next
    step of a long job starts from what is really in use, not from the last step's high-water mark."""
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
