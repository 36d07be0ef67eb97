"""host_cpu: which hosts' int8 kernels saturate (x86-64 without VNNI), from /proc/cpuinfo flags."""

from __future__ import annotations

import pytest

from edgeconv.host_cpu import cpu_flags, int8_saturates

ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse sse2 ssse3 fma avx avx2 bmi2
bogomips\t: 4899.99

processor\t: 1
flags\t\t: fpu vme sse sse2 ssse3 fma avx avx2 bmi2 avx512_vnni
"""


def test_flags_of_the_first_processor() -> None:
    flags = cpu_flags(ZEN3)
    assert {"avx2", "fma"} <= flags and "avx512_vnni" not in flags
    assert cpu_flags("processor : 0\nmodel name : x\n") == frozenset()


@pytest.mark.parametrize("machine, flags, saturates", [
    ("x86_64", {"avx2", "fma"}, True),                       # Zen 2/3, Haswell..Skylake client
    ("x86_64", {"avx2", "avx512f", "avx512bw"}, True),       # Skylake-SP: AVX-512 without VNNI
    ("x86_64", {"avx2", "avx512f", "avx512_vnni"}, False),   # Cascade Lake and later, Zen 4
    ("x86_64", {"avx2", "avx_vnni"}, False),                 # Alder Lake client
    ("x86_64", {"avx2", "avx512_vnni", "amx_int8"}, False),  # Sapphire Rapids
    ("aarch64", {"fp", "asimd", "asimddp"}, False),          # ARM: no vpmaddubsw
    ("x86_64", set(), False),                                # flags unknown: nothing is assumed
])
def test_saturating_hosts(machine: str, flags: set[str], saturates: bool) -> None:
    assert int8_saturates(machine, frozenset(flags)) is saturates
