"""The packed-sparse int8 matmul: decompresses each 64-weight block inside the dot product.

acc[m, n] = Σ_k x[m, k] · W[n, k] with x uint8 codes and W read straight from the packed form (mask + values):
one vpexpandb per 64 weights puts the non-zeros back in place in a register, vpdpbusd (VNNI) multiplies and
accumulates in int32. The dense matrix never exists in memory, so a decode step reads ~0.63 bytes per weight at
50% sparsity instead of 1: on a memory-bound CPU that is the speed-up.

Built once by runtime/kernels/build.py (private temp dir + atomic rename under $LLAMA_COMPRESS_CACHE/kernels).
Needs gcc and a CPU with AVX-512 VBMI2 + VNNI; `available()` says whether it is usable and `why_unavailable()` why
not, in which case the runtime decompresses at load instead (same results, no speed-up).
"""
from __future__ import annotations

import functools

import torch

from ..kernels import cpu

_SRC = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <cstdint>

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi2,avx512vnni,popcnt")))

// MC tokens at once share each expanded weight block (prefill); MC == 1 is the decode path.
template <int MC>
TGT static void rows_mc(const uint8_t* x, int64_t kp, const uint64_t* mask, const int8_t* vals,
                        const int64_t* row_ptr, int64_t nblk, int32_t* out, int64_t n_out, int64_t r0, int64_t r1,
                        const int8_t* vend) {
  for (int64_t n = r0; n < r1; ++n) {
    const uint64_t* mk = mask + n * nblk;
    const int8_t* v = vals + row_ptr[n];
    __m512i acc[MC], acc2 = _mm512_setzero_si512();
    for (int i = 0; i < MC; ++i) acc[i] = _mm512_setzero_si512();
    int64_t b = 0;
    if (MC == 1) {  // two accumulators: hide vpdpbusd latency when only one token is in flight
      // full 64-byte loads may read past a block's values: only while 128 bytes remain in the buffer (the
      // matrix's last blocks take the masked-load loop below, which touches only its own bytes)
      for (; b + 1 < nblk && v + 128 <= vend; b += 2) {
        // both streams prefetched well ahead (values 4 KB, masks 512 B; both run on into the next rows, which
        // follow in memory), and the expand from a register: measured 1.2-1.35x over a 1 KB value prefetch
        // and the memory-operand vpexpandb on an AMX Xeon, 1 thread (benchmarks/KERNELS.md)
        _mm_prefetch(reinterpret_cast<const char*>(v) + 4096, _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(mk + b) + 512, _MM_HINT_T0);
        uint64_t m0 = mk[b], m1 = mk[b + 1];
        __m512i w0 = _mm512_maskz_expand_epi8(m0, _mm512_loadu_si512(v));
        v += _mm_popcnt_u64(m0);
        __m512i w1 = _mm512_maskz_expand_epi8(m1, _mm512_loadu_si512(v));
        v += _mm_popcnt_u64(m1);
        acc[0] = _mm512_dpbusd_epi32(acc[0], _mm512_loadu_si512(x + b * 64), w0);
        acc2 = _mm512_dpbusd_epi32(acc2, _mm512_loadu_si512(x + b * 64 + 64), w1);
      }
    }
    for (; b < nblk; ++b) {
      uint64_t m = mk[b];
      __m512i w = _mm512_maskz_expandloadu_epi8(m, v);
      v += _mm_popcnt_u64(m);
      for (int i = 0; i < MC; ++i)
        acc[i] = _mm512_dpbusd_epi32(acc[i], _mm512_loadu_si512(x + i * kp + b * 64), w);
    }
    if (MC == 1) acc[0] = _mm512_add_epi32(acc[0], acc2);
    for (int i = 0; i < MC; ++i) out[i * n_out + n] = _mm512_reduce_add_epi32(acc[i]);
  }
}

// x: uint8 [M, nblk*64] (zero-padded columns); mask: int64 [N, nblk]; vals: int8 [nnz (+64 slack)];
// row_ptr: int64 [N+1]. Returns int32 [M, N].
torch::Tensor sparse_u8s8_mm(torch::Tensor x, torch::Tensor mask, torch::Tensor vals, torch::Tensor row_ptr) {
  TORCH_CHECK(x.dtype() == torch::kUInt8 && x.dim() == 2 && x.is_contiguous(), "x must be contiguous uint8 [M, K]");
  TORCH_CHECK(mask.dtype() == torch::kInt64 && mask.dim() == 2 && mask.is_contiguous(), "mask must be int64 [N, nblk]");
  TORCH_CHECK(vals.dtype() == torch::kInt8 && vals.is_contiguous(), "vals must be int8");
  TORCH_CHECK(row_ptr.dtype() == torch::kInt64 && row_ptr.numel() == mask.size(0) + 1, "row_ptr must be int64 [N+1]");
  const int64_t M = x.size(0), N = mask.size(0), nblk = mask.size(1), kp = x.size(1);
  TORCH_CHECK(kp == nblk * 64, "x must have nblk*64 columns");
  auto out = torch::empty({M, N}, torch::dtype(torch::kInt32));
  const uint8_t* xp = x.data_ptr<uint8_t>();
  const uint64_t* mp = reinterpret_cast<const uint64_t*>(mask.data_ptr<int64_t>());
  const int8_t* vp = vals.data_ptr<int8_t>();
  const int64_t* rp = row_ptr.data_ptr<int64_t>();
  int32_t* op = out.data_ptr<int32_t>();
  const int8_t* vend = vp + vals.numel();
  at::parallel_for(0, N, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t m0 = 0; m0 < M;) {
      int64_t left = M - m0;
      const uint8_t* xm = xp + m0 * kp;
      int32_t* om = op + m0 * N;
      if (left >= 8) { rows_mc<8>(xm, kp, mp, vp, rp, nblk, om, N, r0, r1, vend); m0 += 8; }
      else if (left >= 4) { rows_mc<4>(xm, kp, mp, vp, rp, nblk, om, N, r0, r1, vend); m0 += 4; }
      else if (left >= 2) { rows_mc<2>(xm, kp, mp, vp, rp, nblk, om, N, r0, r1, vend); m0 += 2; }
      else { rows_mc<1>(xm, kp, mp, vp, rp, nblk, om, N, r0, r1, vend); m0 += 1; }
    }
  });
  return out;
}
"""

_CPP_DECL = "torch::Tensor sparse_u8s8_mm(torch::Tensor x, torch::Tensor mask, torch::Tensor vals, torch::Tensor row_ptr);"
NEEDED_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512_vbmi2", "avx512_vnni", "popcnt")


def _cpu_flags() -> frozenset[str]:
    return cpu.cpu_flags()


@functools.lru_cache(maxsize=1)
def _load():
    """(module, None) or (None, reason)."""
    missing = cpu.missing(NEEDED_FLAGS)
    if missing:
        return None, f"the CPU lacks {', '.join(missing)}"
    try:
        from ..kernels.build import build_extension

        mod = build_extension("lc_sparse_u8s8", _SRC, ["sparse_u8s8_mm"], label="packed-sparse int8",
                              cflags=["-O3", "-fopenmp", *cpu.gcc_flags(NEEDED_FLAGS)], ldflags=["-fopenmp"])
        return mod, None
    except Exception as e:  # no compiler, no headers: fall back, say why
        return None, f"the C++ kernel did not build ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"


def available() -> bool:
    return _load()[0] is not None


def why_unavailable() -> str | None:
    return _load()[1]


def sparse_u8s8_mm(x_u8: torch.Tensor, mask: torch.Tensor, values: torch.Tensor, row_ptr: torch.Tensor) -> torch.Tensor:
    """int32 [M, N] = x_u8 [M, nblk·64] (uint8) @ W^T, W given in packed form (see format.py)."""
    mod, why = _load()
    if mod is None:
        raise RuntimeError(f"packed-sparse kernel unavailable: {why}")
    return mod.sparse_u8s8_mm(x_u8, mask, values, row_ptr)
