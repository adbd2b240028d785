"""QuantBinder: every decoder linear built by its scheme (runtime/schemes), float ones from anti_weight/.

The scheme of a module is the artifact manifest's (`schemes`, format 1.2) or, for older artifacts and
in-memory tensors, inferred from its tensors (runtime.schemes.infer). Every artifact tensor is obtained
through `tensors.tensor(name)` / `tensors.has(name)`, so a tensor-parallel wrapper can pass an accessor
that hands out row- or column-slices instead.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from .. import schemes as S
from ..errors import UserError
from ..linear import FloatBinder, FloatLinear, LinearSpec
from ..schemes.w8a8 import part_params  # noqa: F401  (re-exported: the W8A8 tensors of one module)
from .linear import GroupLinear


class QuantBinder(FloatBinder):
    """Each linear by its scheme; fused specs (q/k/v, gate/up) whose parts share a scheme stay one matmul.

    reference=True builds each scheme's float reference instead (FakeQuantLinear for W8A8): the
    computation the runtime kernels must match. split_parts: one module per part even when all share a
    scheme (per-linear sensitivity toggling). schemes: module -> scheme name, overriding the manifest's.
    """

    packed = None  # PackedTensors of a packed artifact (runtime/sparse/binder.py sets it)

    def __init__(self, float_source, tensors, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu", reference: bool = False, split_parts: bool = False,
                 schemes: Mapping[str, str] | None = None):
        super().__init__(float_source, dtype, device)
        self.tensors = tensors
        self.reference = reference
        self.split_parts = split_parts
        manifest = getattr(tensors, "manifest", None) or {}
        self.named = dict(manifest.get("schemes") or {})
        self.named.update(schemes or {})
        self.kinds: dict[str, str] = {}  # module name -> scheme label ("int8" | "float" | "w8a16")
        self.schemes: dict[str, str] = {}  # module name -> scheme name
        self.packed_modules: list[str] = []

    def scheme_of(self, module: str) -> S.Scheme:
        s = S.get(self.named[module]) if module in self.named else S.infer(self.tensors, module)
        missing = s.missing(self.tensors, module)
        if missing:
            raise UserError(f"{module} is a {s.name} linear but its tensors {', '.join(missing)} are missing: the "
                            "artifact is incomplete or its manifest is wrong; re-run the compress stage that wrote it")
        return s

    def _one(self, s: S.Scheme, names: list[str], splits: tuple[int, ...], fw: torch.Tensor | None) -> nn.Module:
        if self.reference:
            return s.reference(self, names, splits, fw)
        return s.build(self, names, splits)

    def linear(self, spec: LinearSpec) -> nn.Module:
        names = spec.names
        sch = [self.scheme_of(n) for n in names]
        for n, s in zip(names, sch):
            self.kinds[n], self.schemes[n] = s.label, s.name
        if all(s.build is None for s in sch):
            return super().linear(spec)  # float: the float binder's module (bf16 prepacked on CPU)
        if len({s.name for s in sch}) == 1 and not (self.split_parts and len(names) > 1):
            fw = self.float_weight(spec) if self.reference else None
            return self._one(sch[0], list(names), spec.out_features, fw)
        mods: list[nn.Module] = []
        for part, n, s, size in zip(spec.parts, names, sch, spec.out_features):
            if s.build is None:
                w = self.source.get(spec.weight_name(part)).to(device=self.device, dtype=self.dtype).contiguous()
                mods.append(FloatLinear(w, (size,)))
            else:
                fw = self.source.get(spec.weight_name(part)) if self.reference else None
                mods.append(self._one(s, [n], (size,), fw))
        return GroupLinear(mods, spec.out_features)
