"""The decode GEMV kernels (M = 1..8): which ones this machine can run, and thin calls into them.

One extension (decode_src.py) compiled on first use through build.py; each function carries its own
target attribute, and the CPU's flags decide at run time which may be called. Without a compiler, the
flags, or with LLAMA_COMPRESS_KERNELS=off, `bf16_reason()`/`int8_reason()` say why and the linears stay
on torch/oneDNN. oneDNN also keeps every call with more than MAX_M rows (prefill, batched decode), where it is fast.
"""
from __future__ import annotations

import functools
import os

import torch

from . import cpu
from .decode_ops_src import OPS_FUNCTIONS, OPS_SRC
from .decode_src import FUNCTIONS, SRC

# The AVX-512 kernels take up to 8 rows, but the linears send them only up to AVX_MAX_M: measured on an Intel
# Xeon (AMX), 2 threads (benchmarks/decode_kernels.py), they beat oneDNN by 1.3x at M=1, 1.15x at M=4 and lose
# ~15% at M=8, where the activations no longer stay in L1. With AMX (amx_reason() is None) the AMX kernels
# take 5..AMX_MAX_M rows: one tile instruction serves all 8 tokens of a 16-row x 64-byte weight tile.
AVX_MAX_M = 4
AMX_MAX_M = 8
MAX_M = AVX_MAX_M  # the bound that holds on every CPU with the AVX-512 flags; max_rows() says what runs here
BASE_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512dq")
BF16_FLAGS = BASE_FLAGS + ("avx512_bf16",)
INT8_FLAGS = BASE_FLAGS + ("avx512_vnni",)
AMX_FLAGS = ("amx_tile", "amx_bf16", "amx_int8")


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
        mod = build_extension("lc_decode", SRC + OPS_SRC, FUNCTIONS + OPS_FUNCTIONS, label="decode GEMV",
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


@functools.lru_cache(maxsize=1)
def _amx_granted() -> str | None:
    """None once the OS has granted this process the AMX tile state, else why not (asked once)."""
    missing = cpu.missing(AMX_FLAGS)
    if missing:
        return f"the CPU lacks {', '.join(missing)}"
    mod, why = _load()
    if mod is None:
        return why
    return None if mod.amx_enable() else "the OS refused the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM)"


def amx_reason() -> str | None:
    """None when the AMX kernels run here (5..8-row decode), else why not. LLAMA_COMPRESS_AMX=off turns them
    off alone (the AVX-512 kernels stay)."""
    if os.environ.get("LLAMA_COMPRESS_AMX", "on").lower() in ("off", "0", "no", "false"):
        return "LLAMA_COMPRESS_AMX=off"
    return _amx_granted()


def max_rows() -> int:
    """The most rows a decode call sends to the project's kernels on this machine (AMX: 8; AVX-512 alone: 4),
    where bf16_reason()/int8_reason() says that kernel runs."""
    return AMX_MAX_M if amx_reason() is None else AVX_MAX_M


def _use_amx(M: int, amx: bool | None) -> bool:
    if amx is None:
        return M > AVX_MAX_M and amx_reason() is None
    if amx and _amx_granted() is not None:
        raise RuntimeError(f"AMX kernels unavailable: {_amx_granted()}")
    return amx


def module():
    mod, why = _load()
    if mod is None:
        raise RuntimeError(f"decode kernels unavailable: {why}")
    return mod


def bf16_gemv(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None, out_bf16: bool = True,
              amx: bool | None = None) -> torch.Tensor:
    """[M, N] = x [M, K] bf16 @ w [N, K] bf16ᵀ (+ bias), fp32 accumulation; M <= 8, K % 32 == 0.
    amx: None picks AMX for M > 4 where it runs; True/False force the path (tests)."""
    return module().bf16_gemv(x, w, bias, out_bf16, _use_amx(x.shape[0], amx))


def int8_linear(x: torch.Tensor, w: torch.Tensor, rowsum: torch.Tensor, wscale: torch.Tensor,
                bias: torch.Tensor | None, scale: float | None, offset: float | None, hadamard: int | None,
                out_bf16: bool, amx: bool | None = None) -> torch.Tensor:
    """W8A8 for M <= 8 rows: qmath's quantization of x (static when scale is given, else per token),
    exact int32 sums against w [N, K] int8, y = float(acc - zp·rowsum)·s_x·s_w (+ bias)."""
    dyn = scale is None
    return module().int8_linear(x, w, rowsum, wscale, bias, dyn, 0.0 if dyn else float(scale),
                                0.0 if dyn else float(offset), int(hadamard or 0), out_bf16,
                                _use_amx(x.shape[0], amx))


def u8s8_gemv(xq: torch.Tensor, w: torch.Tensor, amx: bool | None = None) -> torch.Tensor:
    """int32 [M, N] = xq [M, K] uint8 @ w [N, K] int8ᵀ, exact."""
    return module().u8s8_gemv(xq, w, _use_amx(xq.shape[0], amx))


def quantize_u8(x: torch.Tensor, kp: int, scale: float | None, offset: float | None,
                hadamard: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(qmath's codes + 128 as uint8 [M, kp] zero-padded, scale float32 [M], zero point int32 [M])."""
    dyn = scale is None
    q, s, zp = module().quantize_u8(x, kp, dyn, 0.0 if dyn else float(scale), 0.0 if dyn else float(offset),
                                    int(hadamard or 0))
    return q, s, zp


# ---------------------------------------------------------------- fused decode-step ops (decode_ops_src.py)
def ops_reason() -> str | None:
    """None when the fused bf16 decode ops (RMSNorm, SiLU·mul, RoPE + cache + attention) run here;
    LLAMA_COMPRESS_FUSED_OPS=off turns them off alone (the eager ops run)."""
    if os.environ.get("LLAMA_COMPRESS_FUSED_OPS", "on").lower() in ("off", "0", "no", "false"):
        return "LLAMA_COMPRESS_FUSED_OPS=off"
    return _reason(BASE_FLAGS)


def rms_norm_bf16(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """HF LlamaRMSNorm's bf16 arithmetic in one call (contiguous bf16 x [..., K], w [K])."""
    return module().rms_norm_bf16(x, w, eps)


def silu_mul_bf16(gu: torch.Tensor, f: int) -> torch.Tensor:
    """[..., 2f] gate|up -> silu(gate) * up, rounded as F.silu(g) * u rounds in bf16."""
    return module().silu_mul_bf16(gu, f)


def attn_decode_bf16(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, k_cache: torch.Tensor,
                     v_cache: torch.Tensor, n_heads: int, pos: int, mask: torch.Tensor | None) -> torch.Tensor:
    """One token per row: RoPE on q/k, k/v into the caches at pos, GQA attention over positions <= pos.
    qkv [B, 1, H + 2 Hkv, hd]; cos/sin [B, hd] (sin sign-folded); mask bool [B, pos + 1] or None -> [B, 1, H * hd]."""
    return module().attn_decode_bf16(qkv, cos, sin, k_cache, v_cache, n_heads, pos, mask)
