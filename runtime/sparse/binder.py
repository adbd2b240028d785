"""SparseBinder: the binder of a packed artifact (compress pack). Its packed modules are scheme
w8a8-packed-sparse (runtime/schemes/packed_sparse.py), everything else as in QuantBinder.

mode "kernel" (default where the C++ kernel builds): decompression happens tile by tile inside the matmul.
mode "unpack": decompress at load into the dense Int8Linear of runtime/quant (fallback; same numbers on
the int32 level, no speed-up).
"""
from __future__ import annotations

import torch

from ..quant.binder import QuantBinder
from .artifact import PackedTensors, UnpackingAccessor


class SparseBinder(QuantBinder):
    def __init__(self, float_source, tensors, packed: PackedTensors, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu", mode: str = "kernel", reference: bool = False):
        named = dict((getattr(tensors, "manifest", None) or {}).get("schemes") or {})
        # packed artifacts of format 1.1 name no schemes: their packed modules are packed-sparse
        legacy = {m: "w8a8-packed-sparse" for m in packed.modules if m not in named}
        super().__init__(float_source, UnpackingAccessor(tensors, packed), dtype, device, reference=reference,
                         schemes={**named, **legacy})
        self.packed = packed
        self.mode = mode
