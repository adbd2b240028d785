"""SparseBinder: int8 linears that run from the packed form (PackedSparseInt8Linear), float ones as usual.

mode "kernel" (default where the C++ kernel builds): decompression happens tile by tile inside the matmul.
mode "unpack": decompress at load into the dense Int8Linear of runtime/quant (fallback; same numbers on
the int32 level, no speed-up).
"""
from __future__ import annotations

import torch
from torch import nn

from ..linear import LinearSpec
from ..quant.binder import QuantBinder
from .artifact import PackedTensors, UnpackingAccessor
from .linear import PackedSparseInt8Linear


class SparseBinder(QuantBinder):
    def __init__(self, float_source, tensors, packed: PackedTensors, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu", mode: str = "kernel"):
        super().__init__(float_source, UnpackingAccessor(tensors, packed), dtype, device)
        self.packed = packed
        self.mode = mode
        self.packed_modules: list[str] = []

    def _module(self, names: tuple[str, ...], splits: tuple[int, ...]) -> nn.Module:
        t = self.tensors
        n0 = names[0]
        static = t.has(f"{n0}.input_scale")
        biases = [t.tensor(f"{n}.fp_bias").float() if t.has(f"{n}.fp_bias") else torch.zeros(s)
                  for n, s in zip(names, splits)]
        return PackedSparseInt8Linear(
            [self.packed.packed(n) for n in names],
            torch.cat([t.tensor(f"{n}.weight_scale").float() for n in names]),
            float(t.tensor(f"{n0}.input_scale").reshape(-1)[0]) if static else None,
            float(t.tensor(f"{n0}.input_offset").reshape(-1)[0]) if static else None,
            torch.cat(biases), splits, self.dtype)

    def linear(self, spec: LinearSpec) -> nn.Module:
        names = spec.names
        rotated = any(self.tensors.has(f"{n}.input_hadamard") for n in names)  # dense by construction: unpack
        if self.mode == "kernel" and self.device.type == "cpu" and all(self.packed.has(n) for n in names) \
                and not rotated:
            for n in names:
                self.kinds[n] = "int8"  # counted with the dense ones; self.packed_modules says which
            self.packed_modules += list(names)
            return self._module(names, spec.out_features)
        return super().linear(spec)  # mixed float/int8 groups, or unpack mode: dense int8 from unpacked weights
