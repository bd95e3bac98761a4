"""What this CPU is, from /proc/cpuinfo: its model name, its instruction-set flags, and which int8
dot-product instructions it has (static INT8 pays only with them: benchmarks/README.md)."""
import platform
from pathlib import Path

INT8_DOT_PRODUCT_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")  # /proc/cpuinfo names


def cpuinfo_field(name):
    """The first value of NAME in /proc/cpuinfo, or None (no such field, or no /proc/cpuinfo)."""
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def cpu_model():
    """The CPU's model name."""
    return cpuinfo_field("model name") or platform.processor()


def cpu_flags():
    """The instruction-set flags of this CPU (empty where there is no /proc/cpuinfo)."""
    return set((cpuinfo_field("flags") or "").split())


def int8_dot_products(flags):
    """The int8 dot-product instruction sets among FLAGS, in INT8_DOT_PRODUCT_FLAGS order."""
    return [flag for flag in INT8_DOT_PRODUCT_FLAGS if flag in flags]


def cpu_kind(model=None, flags=None):
    """A short name for the kind of CPU, for report folders: vendor and family, plus its widest matrix
    or vector unit (e.g. intel-xeon-amx, amd-epyc-avx2)."""
    model, flags = (model or cpu_model() or "cpu").lower(), flags if flags is not None else cpu_flags()
    vendor = next((name for name in ("intel", "amd") if name in model), "cpu")
    family = next((name for name in ("xeon", "epyc", "core", "ryzen", "atom") if name in model), "")
    unit = next((unit for flag, unit in (("amx_int8", "amx"), ("avx512f", "avx512"), ("avx2", "avx2")) if flag in flags),
                "sse")
    return "-".join(part for part in (vendor, family, unit) if part)
