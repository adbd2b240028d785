"""Which instruction sets this CPU has, read at run time (the build cache may be shared by other machines)."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

# /proc/cpuinfo flag names -> the gcc -m flags that enable them
GCC_FLAGS = {
    "avx512f": "-mavx512f", "avx512bw": "-mavx512bw", "avx512vl": "-mavx512vl", "avx512dq": "-mavx512dq",
    "avx512_vnni": "-mavx512vnni", "avx512_bf16": "-mavx512bf16", "avx512_vbmi2": "-mavx512vbmi2",
    "popcnt": "-mpopcnt", "fma": "-mfma", "f16c": "-mf16c",
}


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The kernel's view of the CPU's flags; empty when they cannot be read (then no kernel is used)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    # no /proc (not Linux): torch's own dispatch level says at least whether AVX-512 is there
    cap = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else ""
    return frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq"} if cap.startswith("AVX512") else ())


def missing(needed: tuple[str, ...]) -> list[str]:
    have = cpu_flags()
    return [f for f in needed if f not in have]


def gcc_flags(needed: tuple[str, ...]) -> list[str]:
    return [GCC_FLAGS[f] for f in needed]


def kernels_enabled() -> bool:
    """LLAMA_COMPRESS_KERNELS=off sends every linear to torch/oneDNN (A/B runs, or to rule a kernel out)."""
    return os.environ.get("LLAMA_COMPRESS_KERNELS", "on").lower() not in ("off", "0", "no", "false")
