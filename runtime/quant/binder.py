"""QuantBinder: builds int8 linears from an artifact's tensors, float ones from its anti_weight/.

Every artifact tensor is obtained through `tensors.tensor(name)` / `tensors.has(name)`, so a
tensor-parallel wrapper can pass an accessor that hands out row- or column-slices instead.
"""
from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from ..linear import FloatBinder, FloatLinear, LinearSpec
from .linear import FakeQuantLinear, GroupLinear, Int8Linear, PartParams


class TensorAccessor(Protocol):
    def has(self, name: str) -> bool: ...

    def tensor(self, name: str) -> torch.Tensor: ...


def part_params(tensors: TensorAccessor, module: str) -> PartParams:
    static = tensors.has(f"{module}.input_scale")
    return PartParams(
        quant_weight=tensors.tensor(f"{module}.quant_weight"),
        weight_scale=tensors.tensor(f"{module}.weight_scale").float(),
        input_scale=float(tensors.tensor(f"{module}.input_scale").reshape(-1)[0]) if static else None,
        input_offset=float(tensors.tensor(f"{module}.input_offset").reshape(-1)[0]) if static else None,
        fp_bias=tensors.tensor(f"{module}.fp_bias").float() if tensors.has(f"{module}.fp_bias") else None,
        hadamard=int(tensors.tensor(f"{module}.input_hadamard").reshape(-1)[0])
        if tensors.has(f"{module}.input_hadamard") else None,
    )


class QuantBinder(FloatBinder):
    """Int8 where the artifact has a module's quant_weight, float (from anti_weight/) elsewhere.

    reference=True builds FakeQuantLinear instead: the float computation the int8 kernels must match.
    """

    def __init__(self, float_source, tensors: TensorAccessor, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu", reference: bool = False, split_parts: bool = False):
        super().__init__(float_source, dtype, device)
        self.tensors = tensors
        self.reference = reference
        self.split_parts = split_parts  # one module per part even when all are int8 (per-linear toggling)
        self.kinds: dict[str, str] = {}  # module name -> "int8" | "float"

    def _quant(self, parts: list[PartParams], splits: tuple[int, ...], fw: torch.Tensor | None = None) -> nn.Module:
        if self.reference:
            return FakeQuantLinear(parts, splits, self.dtype, fw)
        return Int8Linear(parts, splits, self.dtype, self.device)

    def linear(self, spec: LinearSpec) -> nn.Module:
        names = spec.names
        is_q = [self.tensors.has(f"{n}.quant_weight") for n in names]
        for n, q in zip(names, is_q):
            self.kinds[n] = "int8" if q else "float"
        if not any(is_q):
            return super().linear(spec)
        if all(is_q) and not (self.split_parts and len(names) > 1):
            fw = self.float_weight(spec) if self.reference else None
            return self._quant([part_params(self.tensors, n) for n in names], spec.out_features, fw)
        mods: list[nn.Module] = []
        for part, n, q, size in zip(spec.parts, names, is_q, spec.out_features):
            if q:
                fw = self.source.get(spec.weight_name(part)) if self.reference else None
                mods.append(self._quant([part_params(self.tensors, n)], (size,), fw))
            else:
                w = self.source.get(spec.weight_name(part)).to(device=self.device, dtype=self.dtype).contiguous()
                mods.append(FloatLinear(w, (size,)))
        return GroupLinear(mods, spec.out_features)
