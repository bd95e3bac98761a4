"""Process resource readings shared by the checkpoint builder, convert and the benchmarks."""
import ctypes
import os
import resource
import threading
from contextlib import contextmanager
from pathlib import Path

import psutil

MADV_DONTNEED, MADV_PAGEOUT = 4, 21  # MADV_PAGEOUT: Linux 5.4+
READ_AHEAD_STEP = 128 << 10  # read_ahead's bytes a call: the smallest readahead window Linux sets by default
CGROUP_V1_MEMORY, CGROUP_V2 = Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup")


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


def memory_cgroups():
    """The memory cgroup folders this process is charged to: its own and those above it (v1's memory controller,
    else v2's unified hierarchy); none where /proc/self/cgroup says nothing of them."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    paths = {controllers: path for _, controllers, path in (line.split(":", 2) for line in lines)}
    v1 = next((path for controllers, path in paths.items() if "memory" in controllers.split(",")), None)
    root, path = (CGROUP_V1_MEMORY, v1) if v1 is not None else (CGROUP_V2, paths.get(""))
    if path is None:
        return []
    folders, folder = [], root / path.lstrip("/")
    while root in folder.parents:  # the root's own files set no limit
        folders.append(folder)
        folder = folder.parent
    return folders


def available_memory_bytes():
    """Bytes this process can take without pushing anything out: the system's available memory, or less where a
    memory cgroup it is charged to has a nearer limit (the limit less the usage, whose inactive file pages count
    as free: the kernel drops those first)."""
    available = psutil.virtual_memory().available
    for group in memory_cgroups():
        v1 = (group / "memory.limit_in_bytes").exists()
        try:
            limit = (group / ("memory.limit_in_bytes" if v1 else "memory.max")).read_text().strip()
            usage = int((group / ("memory.usage_in_bytes" if v1 else "memory.current")).read_text())
            stat = dict(line.split() for line in (group / "memory.stat").read_text().splitlines())
        except OSError:  # the root cgroup has no limit files in v2
            continue
        if limit != "max":
            inactive = int(stat.get("total_inactive_file" if v1 else "inactive_file", 0))
            available = min(available, int(limit) - usage + inactive)
    return max(available, 0)


def read_ahead(paths):
    """Start reading the files `paths` into the page cache, in order, on a daemon thread, so that a load's disk
    reads overlap its imports and compiling instead of stalling them a page fault at a time. posix_fadvise
    WILLNEED queues the reads and returns, but reads no more than the device's readahead window a call (8 MB
    here, 128 KB by default), hence a call per READ_AHEAD_STEP. Nothing is read unless the memory available is
    twice the files' size, room for their pages and the plugin's repacked copy of them: inside a 4 GiB limit,
    reading a full-size folder's files ahead pushed out pages still to be used (a fresh `ovphi ask` then loaded
    2-3 s slower). Returns the thread, or None."""
    paths = [path for path in paths if Path(path).is_file()]
    if not paths or 2 * sum(Path(path).stat().st_size for path in paths) > available_memory_bytes():
        return None

    def read():
        for path in paths:
            try:
                with open(path, "rb") as file:
                    for offset in range(0, os.fstat(file.fileno()).st_size, READ_AHEAD_STEP):
                        os.posix_fadvise(file.fileno(), offset, READ_AHEAD_STEP, os.POSIX_FADV_WILLNEED)
            except OSError:  # gone or unreadable: the load itself will say so
                pass

    thread = threading.Thread(target=read, name="read-ahead", daemon=True)
    thread.start()
    return thread


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
