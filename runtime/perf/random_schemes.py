"""Random weights in a compressed scheme, so `runtime perf --shape ... --scheme w8a8` needs no artifact.

Speed depends on shapes, dtypes and (for packed sparse) the number of non-zeros, not on the values. Each
scheme is laid out as the compressor lays it out, so the same modules and kernels run as for a real
artifact: embeddings, norms and lm_head in the model dtype; every decoder-layer linear in the scheme.
  bf16           the float model (PackedLinear)
  w8a8           int8 weights, static per-tensor activations, down_proj rotated online (Hadamard), as
                 `compress quantize` writes by default
  w8a8-sparse50  packed 50% unstructured sparse int8 (64-column blocks of random bits), down_proj's input
                 quantized per token, as `compress sparse` + `compress pack` write
  w8a8-sparse24  the same with a 2:4 pattern (2 non-zeros in every 4 columns)
Every matrix gets its own memory (filled from one random pool, like FastRandomSource), so a decode step
reads every layer from DRAM as it would a real checkpoint.
"""
from __future__ import annotations

import zlib

import torch
from torch import nn

from ..errors import UserError
from ..linear import FloatBinder, LinearSpec
from ..quant import qmath
from ..quant.linear import Int8Linear, PartParams
from ..sparse.format import BLOCK, PackedInt8, _popcount
from ..sparse.linear import PackedSparseInt8Linear

SCHEMES = ("bf16", "w8a8", "w8a8-sparse50", "w8a8-sparse24")
_POOL = 1 << 22
_WORDS = 1 << 16
# a static activation range any random input mostly falls in; speed does not depend on it
_ACT_SCALE, _ACT_OFFSET = qmath.act_params(-4.0, 4.0)


def check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise UserError(f"--scheme {scheme!r} is not one of {', '.join(SCHEMES)}")
    return scheme


class RandomSchemeBinder(FloatBinder):
    def __init__(self, source, scheme: str, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu",
                 seed: int = 0):
        super().__init__(source, dtype, device)
        self.scheme = check_scheme(scheme)
        self.seed = seed
        g = torch.Generator().manual_seed(seed)
        v = torch.randint(1, 128, (2 * _POOL,), dtype=torch.int8, generator=g)  # non-zero codes, random signs
        self._values = torch.where(torch.rand(2 * _POOL, generator=g) < 0.5, -v, v)
        if scheme.startswith("w8a8-sparse"):
            self._words = self._mask_words(g, scheme == "w8a8-sparse24")
            self._word_counts = _popcount(self._words)

    @staticmethod
    def _mask_words(g: torch.Generator, two_four: bool) -> torch.Tensor:
        """A pool of 64-bit block masks: iid 50% bits, or 2 of every 4 bits set (one of the 6 patterns)."""
        if two_four:
            pats = torch.tensor([0b0011, 0b0101, 0b0110, 0b1001, 0b1010, 0b1100], dtype=torch.int64)
            nib = pats[torch.randint(0, 6, (_WORDS, 16), generator=g)]
            return (nib << (4 * torch.arange(16, dtype=torch.int64))).sum(1)  # disjoint bits: the sum is the OR
        lo = torch.randint(0, 1 << 32, (_WORDS,), dtype=torch.int64, generator=g)
        hi = torch.randint(-(1 << 31), 1 << 31, (_WORDS,), dtype=torch.int64, generator=g)
        return hi * (1 << 32) + lo

    def _fill(self, n: int, key: str) -> torch.Tensor:
        off = zlib.crc32(f"{self.seed}:{key}".encode()) % _POOL
        out = torch.empty(n, dtype=torch.int8)
        for i in range(0, n, _POOL):
            k = min(_POOL, n - i)
            out[i:i + k] = self._values[off:off + k]
        return out

    def linear(self, spec: LinearSpec) -> nn.Module:
        if spec.layer is None or self.scheme == "bf16":
            return super().linear(spec)
        N, K = sum(spec.out_features), spec.in_features
        key = spec.prefix + "." + "+".join(spec.parts)
        ws = torch.full((N,), 0.02 / 127, dtype=torch.float32)
        down = spec.parts == ("down_proj",)
        if self.scheme == "w8a8":
            w = self._fill(N * K, key).view(N, K)
            part = PartParams(w, ws, _ACT_SCALE, _ACT_OFFSET, None, qmath.hadamard_block(K) if down else None)
            return Int8Linear([part], spec.out_features, self.dtype, self.device)
        if K % BLOCK:
            raise UserError(f"random packed-sparse weights need in_features divisible by {BLOCK}, got {K}")
        nblk = K // BLOCK
        g = torch.Generator().manual_seed(zlib.crc32(key.encode()) + self.seed)
        idx = torch.randint(0, _WORDS, (N, nblk), generator=g)
        mask = self._words[idx]
        row_ptr = torch.zeros(N + 1, dtype=torch.int64)
        row_ptr[1:] = torch.cumsum(self._word_counts[idx].sum(1), 0)
        p = PackedInt8(N, K, mask, self._fill(int(row_ptr[-1]), key), row_ptr)
        scale, offset = (None, None) if down else (_ACT_SCALE, _ACT_OFFSET)  # down_proj per token, as compress sparse
        return PackedSparseInt8Linear([p], ws, scale, offset, None, spec.out_features, self.dtype)
