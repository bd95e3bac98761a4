"""Process readings: peak and file-mapped RSS, seconds since start, paging out mapped weights, reading ahead."""
import ctypes
import mmap
import time

from ovphi.bench.memory_limit import evict_from_page_cache
from ovphi.resources import (READ_AHEAD_STEP, mapped_file_bytes, page_out_mapped_files, paging_out, peak_rss_bytes,
                             read_ahead, release_memory, rss_bytes, seconds_since_start)


def resident_bytes_of(path):
    return mapped_file_bytes().get(str(path.resolve()), 0)


def test_paging_out_a_mapped_file_frees_its_pages_and_keeps_its_data(tmp_path):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(bytes(range(256)) * (64 * 4096))  # 64 MB
    with weights.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        checksum = sum(mapped[i] for i in range(0, len(mapped), 4096))  # touches every page
        assert resident_bytes_of(weights) > 60e6 and rss_bytes("RssFile") > 60e6
        assert page_out_mapped_files([weights]) >= 64 * 2**20
        assert resident_bytes_of(weights) < 8e6
        assert sum(mapped[i] for i in range(0, len(mapped), 4096)) == checksum  # read back on use
    assert page_out_mapped_files([]) == 0


def test_pages_read_inside_a_paging_out_block_do_not_stay_resident(tmp_path):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(bytes(range(256)) * (64 * 4096))  # 64 MB
    with weights.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        with paging_out(lambda: [weights], every=0.05):
            for start in range(0, len(mapped), 16 << 20):  # read in four parts, as a job reads its weights
                sum(mapped[i] for i in range(start, start + (16 << 20), 4096))
                time.sleep(0.3)
            assert resident_bytes_of(weights) < 24e6  # at most the part read last, and what came after it
        sum(mapped[i] for i in range(0, len(mapped), 4096))
        assert resident_bytes_of(weights) > 60e6  # after the block, pages stay


def test_readings_are_plausible():
    release_memory()
    assert 10e6 < peak_rss_bytes() < 100e9 and 0 < seconds_since_start() < 24 * 3600


def cached_bytes(path):
    """Bytes of the file `path` in the page cache (mincore on a private mapping of it, which reads nothing)."""
    size = path.stat().st_size
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY) as mapped:
        start = ctypes.c_char.from_buffer(mapped)
        pages = (ctypes.c_ubyte * -(-size // mmap.PAGESIZE))()
        assert ctypes.CDLL(None).mincore(ctypes.c_void_p(ctypes.addressof(start)), ctypes.c_size_t(size), pages) == 0
        del start
    return sum(page & 1 for page in pages) * mmap.PAGESIZE


def test_read_ahead_brings_whole_files_into_the_page_cache_and_passes_over_missing_ones(tmp_path):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(bytes(range(256)) * (48 * 4096))  # 48 MB: many readahead windows and steps
    evict_from_page_cache(tmp_path)
    assert cached_bytes(weights) < READ_AHEAD_STEP
    read_ahead([tmp_path / "gone.bin", weights]).join()  # the reads are queued; the kernel finishes them
    deadline = time.monotonic() + 10
    while cached_bytes(weights) < weights.stat().st_size and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cached_bytes(weights) == weights.stat().st_size
