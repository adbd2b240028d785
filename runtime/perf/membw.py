"""Read bandwidth of this machine, measured the way the decode kernels read (the roofline's denominator).

The compiled probe (runtime/kernels/decode_src.py `read_probe`: AVX-512 loads, 4 accumulators, one contiguous
chunk per thread) reads as fast as llama.cpp's peers/membw_read.c; torch's `x.sum()` used before reads
slower on some CPUs and so understated the floor. Without the kernel the torch reduction is the fallback.
"""
from __future__ import annotations

import statistics
import time

import torch


def read_bandwidth(nbytes: int = 1 << 30, repeats: int = 7, threads: int | None = None) -> float:
    """GB/s (1e9 bytes/s): median over `repeats` reads of an `nbytes` float32 buffer (far beyond the LLC)."""
    return read_bandwidth_bytes(nbytes, repeats, threads)[0] / 1e9


def read_bandwidth_bytes(nbytes: int = 1 << 30, repeats: int = 7, threads: int | None = None) -> tuple[float, str]:
    """(bytes/s, method): the compiled probe when it loads, else torch's sum."""
    from ..kernels import decode

    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        x = torch.ones(nbytes // 4, dtype=torch.float32)
        try:
            mod = decode.module() if decode.cpu.missing(decode.BASE_FLAGS) == [] else None
        except RuntimeError:
            mod = None
        read, method = ((lambda: mod.read_probe(x)), "avx512 probe") if mod is not None else ((lambda: x.sum()), "torch sum")
        read()  # first touch, warm-up
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            read()
            ts.append(time.perf_counter() - t)
        return x.numel() * 4 / statistics.median(ts), method
    finally:
        torch.set_num_threads(old)
