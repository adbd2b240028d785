"""The packed sparse int8 weight format (docs/PACKED_FORMAT.md is the spec for outside readers).

One int8 matrix [rows, cols] becomes three arrays:
    mask     uint64 [rows, ceil(cols/64)]  bit j of word b in row r <=> W[r, 64·b + j] != 0 (little-endian bits)
    values   int8   [nnz]                  the non-zeros, row by row, ascending column
    row_ptr  int64  [rows + 1]             values of row r are values[row_ptr[r]:row_ptr[r+1]]
Columns past `cols` (padding to a multiple of 64) have mask bit 0. 64-wide blocks match one 512-bit
register of int8, so a kernel expands a block with one instruction (AVX-512 VBMI2 vpexpandb).
uint64 words are stored as int64 (same bits) because safetensors/torch handle int64 everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

BLOCK = 64


@dataclass
class PackedInt8:
    rows: int
    cols: int
    mask: torch.Tensor  # int64 [rows, nblk] (uint64 bit patterns)
    values: torch.Tensor  # int8 [nnz]
    row_ptr: torch.Tensor  # int64 [rows + 1]

    @property
    def nblk(self) -> int:
        return (self.cols + BLOCK - 1) // BLOCK

    @property
    def nnz(self) -> int:
        return int(self.values.numel())

    def nbytes(self) -> int:
        """Bytes of the packed form (what is read per matmul)."""
        return self.mask.numel() * 8 + self.values.numel() + self.row_ptr.numel() * 8

    def check(self) -> None:
        """Structural consistency; raises ValueError naming what is wrong (a reader must not trust a file)."""
        if self.mask.dtype != torch.int64 or tuple(self.mask.shape) != (self.rows, self.nblk):
            raise ValueError(f"mask must be int64 [{self.rows}, {self.nblk}], got {self.mask.dtype} {tuple(self.mask.shape)}")
        if self.values.dtype != torch.int8 or self.values.dim() != 1:
            raise ValueError("values must be a 1-D int8 tensor")
        if self.row_ptr.dtype != torch.int64 or tuple(self.row_ptr.shape) != (self.rows + 1,):
            raise ValueError(f"row_ptr must be int64 [{self.rows + 1}]")
        counts = _popcount(self.mask).sum(1)
        if int(self.row_ptr[0]) != 0 or not torch.equal(self.row_ptr[1:] - self.row_ptr[:-1], counts) \
                or int(self.row_ptr[-1]) != self.nnz:
            raise ValueError("row_ptr does not match the mask's bit counts or the number of values")
        if self.cols % BLOCK and self.rows and bool((_bits(self.mask[:, -1:])[:, self.cols % BLOCK:]).any()):
            raise ValueError("mask has bits set in the padding columns")


_SHIFTS = torch.arange(BLOCK, dtype=torch.int64)


def _bits(mask: torch.Tensor) -> torch.Tensor:
    """int64 words [..., n] -> bool [..., n·64]."""
    b = (mask.unsqueeze(-1) >> _SHIFTS) & 1  # arithmetic shift, but only bit 0 is kept
    return b.bool().reshape(*mask.shape[:-1], -1)


def _popcount(mask: torch.Tensor) -> torch.Tensor:
    return _bits(mask).reshape(*mask.shape, BLOCK).sum(-1)


def pack_int8(q: torch.Tensor) -> PackedInt8:
    """Pack an int8 [rows, cols] matrix (any sparsity). Lossless: unpack_int8(pack_int8(q)) == q bit for bit."""
    if q.dtype != torch.int8 or q.dim() != 2:
        raise ValueError(f"pack_int8 takes a 2-D int8 tensor, got {q.dtype} {tuple(q.shape)}")
    rows, cols = q.shape
    nblk = (cols + BLOCK - 1) // BLOCK
    q = q.contiguous()
    nz = q != 0
    nzp = torch.zeros(rows, nblk * BLOCK, dtype=torch.bool)
    nzp[:, :cols] = nz
    # distinct powers of two never carry, so the int64 sum is the exact bit pattern (bit 63 included)
    mask = (nzp.view(rows, nblk, BLOCK).to(torch.int64) << _SHIFTS).sum(-1)
    values = q[nz]  # row-major boolean indexing: row by row, ascending column
    row_ptr = torch.zeros(rows + 1, dtype=torch.int64)
    row_ptr[1:] = torch.cumsum(nz.sum(1), 0)
    return PackedInt8(rows, cols, mask, values, row_ptr)


def unpack_int8(p: PackedInt8) -> torch.Tensor:
    """The dense int8 [rows, cols] matrix back."""
    p.check()
    nz = _bits(p.mask)[:, :p.cols]
    out = torch.zeros(p.rows, p.cols, dtype=torch.int8)
    out[nz] = p.values
    return out
