"""What this CPU can do, from /proc/cpuinfo: whether it has int8 dot-product instructions.

Static INT8 (weights and activations) pays only with them: on an AVX2-only AMD EPYC the static INT8 vision
encoder ran no faster than the weight-only one (32 s vs 31 s).
"""
from pathlib import Path

INT8_DOT_PRODUCT_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")  # /proc/cpuinfo names


def cpu_flags():
    """The instruction-set flags of this CPU (empty where there is no /proc/cpuinfo)."""
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def int8_dot_products(flags):
    """The int8 dot-product instruction sets among FLAGS, in INT8_DOT_PRODUCT_FLAGS order."""
    return [flag for flag in INT8_DOT_PRODUCT_FLAGS if flag in flags]
