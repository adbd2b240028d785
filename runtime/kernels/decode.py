"""The decode GEMV kernels (M = 1..8): which ones this machine can run, and thin calls into them.

One extension (decode_src.py) compiled on first use through build.py; each function carries its own
target attribute, and the CPU's flags decide at run time which may be called. Without a compiler, the
flags, or with LLAMA_COMPRESS_KERNELS=off, `bf16_reason()`/`int8_reason()` say why and the linears stay
on torch/oneDNN. oneDNN also keeps every call with more than MAX_M rows (prefill, batched decode), where it is fast.
"""
from __future__ import annotations

import functools

import torch

from . import cpu
from .decode_src import FUNCTIONS, SRC

# The kernels take up to 8 rows, but the linears send them only up to MAX_M: measured on an Intel Xeon (AMX),
# 2 threads (benchmarks/decode_kernels.py), they beat oneDNN by 1.3x at M=1, 1.15x at M=4 and lose ~15% at
# M=8, where the activations no longer stay in L1 (K-blocking would fix that; not done yet).
MAX_M = 4
BASE_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512dq")
BF16_FLAGS = BASE_FLAGS + ("avx512_bf16",)
INT8_FLAGS = BASE_FLAGS + ("avx512_vnni",)


@functools.lru_cache(maxsize=1)
def _load():
    """(module, None) or (None, reason). LLAMA_COMPRESS_KERNELS is read by the *_reason() calls, not here, so
    turning it off for one model does not stick to the process."""
    missing = cpu.missing(BASE_FLAGS)
    if missing:
        return None, f"the CPU lacks {', '.join(missing)}"
    try:
        from .build import build_extension

        # the per-function target attributes carry the ISA; no -march=native, no fast-math, no FMA contraction
        mod = build_extension("lc_decode", SRC, FUNCTIONS, label="decode GEMV",
                              cflags=["-O3", "-fopenmp", "-ffp-contract=off", "-fno-fast-math"], ldflags=["-fopenmp"])
        return mod, None
    except Exception as e:  # no compiler, no headers: fall back, say why
        msg = str(e).splitlines()[0][:200] if str(e) else ""
        return None, f"the decode kernels did not build ({type(e).__name__}: {msg})"


def _reason(flags: tuple[str, ...]) -> str | None:
    if not cpu.kernels_enabled():
        return "LLAMA_COMPRESS_KERNELS=off"
    missing = cpu.missing(flags)
    if missing:
        return f"the CPU lacks {', '.join(missing)}"
    return _load()[1]


def bf16_reason() -> str | None:
    """None when the bf16 kernel runs here, else why not."""
    return _reason(BF16_FLAGS)


def int8_reason() -> str | None:
    """None when the int8 kernel runs here, else why not."""
    return _reason(INT8_FLAGS)


def module():
    mod, why = _load()
    if mod is None:
        raise RuntimeError(f"decode kernels unavailable: {why}")
    return mod


def bf16_gemv(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None, out_bf16: bool = True) -> torch.Tensor:
    """[M, N] = x [M, K] bf16 @ w [N, K] bf16ᵀ (+ bias), fp32 accumulation; M <= 8, K % 32 == 0."""
    return module().bf16_gemv(x, w, bias, out_bf16)


def int8_linear(x: torch.Tensor, w: torch.Tensor, rowsum: torch.Tensor, wscale: torch.Tensor,
                bias: torch.Tensor | None, scale: float | None, offset: float | None, hadamard: int | None,
                out_bf16: bool) -> torch.Tensor:
    """W8A8 for M <= 8 rows: qmath's quantization of x (static when scale is given, else per token),
    exact int32 sums against w [N, K] int8, y = float(acc - zp·rowsum)·s_x·s_w (+ bias)."""
    dyn = scale is None
    return module().int8_linear(x, w, rowsum, wscale, bias, dyn, 0.0 if dyn else float(scale),
                                0.0 if dyn else float(offset), int(hadamard or 0), out_bf16)


def u8s8_gemv(xq: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """int32 [M, N] = xq [M, K] uint8 @ w [N, K] int8ᵀ, exact."""
    return module().u8s8_gemv(xq, w)


def quantize_u8(x: torch.Tensor, kp: int, scale: float | None, offset: float | None,
                hadamard: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(qmath's codes + 128 as uint8 [M, kp] zero-padded, scale float32 [M], zero point int32 [M])."""
    dyn = scale is None
    q, s, zp = module().quantize_u8(x, kp, dyn, 0.0 if dyn else float(scale), 0.0 if dyn else float(offset),
                                    int(hadamard or 0))
    return q, s, zp
