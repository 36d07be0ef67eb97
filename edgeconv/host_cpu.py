"""What the host CPU's 8-bit arithmetic is. On x86-64 CPUs without VNNI (AVX2 or AVX-512 only: AMD Zen 2/3, Intel
before Cascade Lake), the u8 x s8 dot-product instruction that ONNX Runtime's and OpenVINO's int8 kernels use there
(vpmaddubsw) adds pairs of products in 16 bits and saturates, so an int8 model computes something else on such a host
than on the chips it is made for (VNNI/AMX CPUs, ARM, the Hexagon HTP, GPUs and NPUs). Validation must not measure
the host: each runtime that runs int8 on the CPU asks here and computes exactly where the host would not."""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

# cpuinfo flags of the x86 instructions that sum u8 x s8 products in 32 bits (no saturation)
EXACT_INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first processor in a /proc/cpuinfo text (empty when it lists none)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def int8_saturates(machine: str, flags: frozenset[str]) -> bool:
    """True for an x86-64 CPU whose flags are known and hold no exact 8-bit dot product (see the module docstring)."""
    return machine.lower() in ("x86_64", "amd64") and bool(flags) and not flags & EXACT_INT8_FLAGS


@lru_cache(maxsize=1)
def host_int8_saturates() -> bool:
    """int8_saturates for this machine (Linux reads /proc/cpuinfo; elsewhere the flags are unknown: False)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return int8_saturates(platform.machine(), cpu_flags(text))


def describe() -> str:
    """One line for reports: what this host's int8 kernels compute."""
    if host_int8_saturates():
        return "saturating (x86-64 without VNNI): int8 validation computes exactly instead"
    return "exact"
