"""A safetensors file written one tensor at a time, byte-identical to `save_tensors` of the same tensors.

Why not safetensors' own `save_file`: it needs every tensor in memory at once (and copies each to bytes),
which is 13 GB of int8 for LLaMA-2-13B's `quant_weight.safetensors`. The layout is the library's: an
8-byte little-endian header length, a compact JSON header ("__metadata__" first, then the tensors in data
order) padded with spaces to a multiple of 8, then the data, ordered by dtype (widest first, as the
library's dtype enum sorts) and then by name. tests/test_streamed_safetensors.py checks the bytes against
`save_file` for mixed dtypes, so a change of the library's layout fails a test instead of a checksum.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch

from .files import ST_METADATA

# safetensors' Dtype enum order (the data is sorted by it, descending); the dtypes our formats use
_DTYPE = {torch.bool: ("BOOL", 0), torch.uint8: ("U8", 4), torch.int8: ("I8", 5), torch.int16: ("I16", 9),
          torch.float16: ("F16", 11), torch.bfloat16: ("BF16", 12), torch.int32: ("I32", 13),
          torch.float32: ("F32", 15), torch.float64: ("F64", 16), torch.int64: ("I64", 17)}


@dataclass(frozen=True)
class PendingTensor:
    """A tensor to be written: its name, dtype and shape now, its values when `load()` is called."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    load: Callable[[], torch.Tensor]

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n * torch.empty((), dtype=self.dtype).element_size()


def save_tensors_streamed(path: Path, tensors: Iterable[PendingTensor]) -> None:
    """Write `tensors` to `path` holding one tensor at a time (the file is complete only on return)."""
    items = list(tensors)
    if len({t.name for t in items}) != len(items):
        raise ValueError("duplicate tensor names")
    for t in items:
        if t.dtype not in _DTYPE:
            raise ValueError(f"{t.name}: dtype {t.dtype} is not supported by the streamed writer")
    items.sort(key=lambda t: (-_DTYPE[t.dtype][1], t.name))
    header: dict = {"__metadata__": dict(ST_METADATA)}
    off = 0
    for t in items:
        header[t.name] = {"dtype": _DTYPE[t.dtype][0], "shape": list(t.shape), "data_offsets": [off, off + t.nbytes]}
        off += t.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-(8 + len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for t in items:
            v = t.load()
            if v.dtype != t.dtype or tuple(v.shape) != t.shape:
                raise ValueError(f"{t.name}: loaded {v.dtype} {tuple(v.shape)}, announced {t.dtype} {t.shape}")
            f.write(v.contiguous().view(torch.uint8).numpy().tobytes() if v.numel() else b"")
        f.flush()
        os.fsync(f.fileno())
