"""Process resource readings shared by the checkpoint builder, convert and the benchmarks."""
import resource


def peak_rss_bytes():
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
