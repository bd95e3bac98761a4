"""MemoryLimit: a real memory cgroup (the machines run the suite as root), a real child process."""
import subprocess
import sys

import pytest

from ovphi.bench.memory_limit import MemoryLimit, evict_from_page_cache
from ovphi.errors import OvphiError

ALLOCATE = "import sys; block = bytearray(int(sys.argv[1]) * 2**20); print(len(block))"  # zero-filled: resident


def test_a_process_within_the_limit_runs_and_its_usage_is_read():
    with MemoryLimit(256 * 2**20) as limit:
        result = subprocess.run(limit.wrap([sys.executable, "-c", ALLOCATE, "64"]), capture_output=True, text=True)
        readings = limit.readings()
    assert result.returncode == 0 and result.stdout.strip() == str(64 * 2**20)
    assert readings["limit_bytes"] == 256 * 2**20 and readings["oom_kills"] == 0
    assert 64 * 2**20 < readings["max_usage_bytes"] <= 256 * 2**20
    assert not limit.path.exists()  # removed after the run


def test_a_process_beyond_the_limit_is_killed_and_counted():
    with MemoryLimit(96 * 2**20) as limit:
        result = subprocess.run(limit.wrap([sys.executable, "-c", ALLOCATE, "400"]), capture_output=True, text=True)
        readings = limit.readings()
    assert result.returncode == -9 and readings["oom_kills"] == 1 and readings["limit_hits"] > 0


def test_a_limit_that_cannot_be_created_is_one_clear_error(tmp_path):
    with pytest.raises(OvphiError, match="cannot create a 0.5 GiB memory limit"):
        with MemoryLimit(2**29, root=tmp_path / "missing"):
            pass


def test_a_limited_process_is_charged_for_a_file_only_once_it_is_evicted(tmp_path):
    (tmp_path / "weights.bin").write_bytes(bytes(range(256)) * (64 * 4096))  # 64 MB, now in the page cache
    read = [sys.executable, "-c", "import sys; file = open(sys.argv[1], 'rb')\nwhile file.read(2**20): pass",
            str(tmp_path / "weights.bin")]  # 1 MB at a time: the file's pages are the only big charge

    def usage():
        with MemoryLimit(2**30) as limit:
            subprocess.run(limit.wrap(read), check=True)
            return limit.readings()["max_usage_bytes"]

    cached = usage()  # the file's pages were charged to this process's cgroup when it wrote them
    evict_from_page_cache(tmp_path)
    assert usage() > cached + 48 * 2**20


def test_inside_a_limit_the_memory_available_is_the_limits_and_nothing_too_large_is_read_ahead(tmp_path):
    (tmp_path / "weights.bin").write_bytes(bytes(200 * 2**20))
    check = ("import sys; from ovphi.resources import available_memory_bytes, read_ahead;"
             "print(available_memory_bytes(), read_ahead([sys.argv[1]]))")
    with MemoryLimit(256 * 2**20) as limit:
        result = subprocess.run(limit.wrap([sys.executable, "-c", check, str(tmp_path / "weights.bin")]),
                                capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    available, thread = result.stdout.split()
    assert 0 < int(available) <= 256 * 2**20 and thread == "None"  # 200 MB twice would not fit
