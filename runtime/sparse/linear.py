"""The runtime linear that runs W8A8 straight from the packed sparse form (tile by tile, see kernel.py)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import decode
from ..quant import qmath
from .format import BLOCK, PackedInt8
from .kernel import sparse_u8s8_mm


def cat_packed(ps: list[PackedInt8]) -> PackedInt8:
    """Stack packed matrices along the output dim (fused q/k/v, gate/up): masks and values concatenate."""
    if len(ps) == 1:
        return ps[0]
    if len({p.cols for p in ps}) != 1:
        raise ValueError("fused parts must share in_features")
    ptrs, base = [torch.zeros(1, dtype=torch.int64)], 0
    for p in ps:
        ptrs.append(p.row_ptr[1:] + base)
        base += p.nnz
    return PackedInt8(sum(p.rows for p in ps), ps[0].cols, torch.cat([p.mask for p in ps]),
                      torch.cat([p.values for p in ps]), torch.cat(ptrs))


def row_sums(p: PackedInt8) -> torch.Tensor:
    """Σ_k W[n, k] per row, int64: the zero-point correction of the int32 accumulators."""
    counts = p.row_ptr[1:] - p.row_ptr[:-1]
    rows = torch.repeat_interleave(torch.arange(p.rows), counts)
    return torch.zeros(p.rows, dtype=torch.int64).index_add_(0, rows, p.values.to(torch.int64))


class PackedSparseInt8Linear(nn.Module):
    """y = dequant(x_q · W_qᵀ) + fp_bias, W_q read from mask + values; int32 accumulation is exact.

    static: x_q = clamp(round(x / input_scale) + input_offset, -128, 127) (qmath), fed to the kernel as
    uint8 x_q + 128; acc - (offset + 128)·rowsum recovers Σ (x_q - offset)·w exactly in int32.
    dynamic: per-token symmetric scales, zero point 128 the same way.
    """

    def __init__(self, packed: list[PackedInt8], weight_scale: torch.Tensor, input_scale: float | None,
                 input_offset: float | None, fp_bias: torch.Tensor | None, out_splits: tuple[int, ...],
                 dtype: torch.dtype):
        super().__init__()
        p = cat_packed(packed)
        p.check()
        self.rows, self.cols, self.kp = p.rows, p.cols, p.nblk * BLOCK
        self.register_buffer("mask", p.mask.contiguous(), persistent=False)
        self.register_buffer("values", p.values.contiguous(), persistent=False)
        self.register_buffer("row_ptr", p.row_ptr.contiguous(), persistent=False)
        self.register_buffer("rowsum", row_sums(p), persistent=False)
        self.register_buffer("weight_scale", weight_scale.float().contiguous(), persistent=False)
        self.register_buffer("bias", None if fp_bias is None or not bool(fp_bias.any()) else fp_bias.float(),
                             persistent=False)
        self.static = input_scale is not None
        self.scale_sync: Callable[[torch.Tensor], torch.Tensor] | None = None  # see Int8Linear
        self.scale = float(input_scale) if self.static else None
        self.offset = int(input_offset) if self.static else None
        if self.static:
            self.register_buffer("zp_rowsum", (self.offset + 128) * self.rowsum, persistent=False)
        self.out_splits = tuple(out_splits)
        self.in_features = self.cols
        self.out_features = self.rows
        self.dtype = dtype
        self._nbytes = p.nbytes()
        # qmath's quantization compiled (one call instead of ~8 torch ops per linear) where the decode kernels run
        self.fused_quant = decode.int8_reason() is None

    @property
    def decode_path(self) -> str:
        return "packed-sparse vpexpandb+vpdpbusd kernel"

    def weight_bytes(self) -> int:
        return self._nbytes + self.weight_scale.numel() * 4

    def _u8(self, codes: torch.Tensor) -> torch.Tensor:
        """int codes in [-128, 127] (float) -> uint8 +128, zero-padded to whole 64-column blocks."""
        u = (codes + 128).to(torch.uint8)
        return F.pad(u, (0, self.kp - self.cols)) if self.kp != self.cols else u.contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        if self.fused_quant and (self.static or self.scale_sync is None):
            x2 = x.reshape(-1, shape[-1])
            x2 = (x2 if x2.dtype in (torch.float32, torch.bfloat16) else x2.float()).contiguous()
            u8, s, _ = decode.quantize_u8(x2, self.kp, self.scale, self.offset)
            acc = sparse_u8s8_mm(u8, self.mask, self.values, self.row_ptr).to(torch.int64)
            if self.static:
                y = (acc - self.zp_rowsum).float() * self.scale * self.weight_scale
            else:
                y = (acc - 128 * self.rowsum).float() * s[:, None] * self.weight_scale
            if self.bias is not None:
                y = y + self.bias
            return y.to(self.dtype).reshape(*shape[:-1], self.rows)
        x2 = x.reshape(-1, shape[-1]).float()
        if self.static:
            codes = qmath.quantize_act_static(x2, self.scale, self.offset).float()
            acc = sparse_u8s8_mm(self._u8(codes), self.mask, self.values, self.row_ptr)
            # acc·scale_x·scale_w in that order, as oneDNN's dense int8 linear does: same bits, same logits
            y = (acc.to(torch.int64) - self.zp_rowsum).float() * self.scale * self.weight_scale
        else:
            s = qmath.dynamic_scales(x2)
            if self.scale_sync is not None:  # row-parallel: every rank must use the full row's scale
                s = self.scale_sync(s)
            codes = qmath.act_codes_dynamic(x2, s)
            acc = sparse_u8s8_mm(self._u8(codes), self.mask, self.values, self.row_ptr)
            y = (acc.to(torch.int64) - 128 * self.rowsum).float() * s * self.weight_scale
        if self.bias is not None:
            y = y + self.bias
        return y.to(self.dtype).reshape(*shape[:-1], self.rows)
