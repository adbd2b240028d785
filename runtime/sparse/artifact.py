"""Packed weights inside an artifact: the file, its manifest section, and the reader the runtime uses.

A packed artifact is an ordinary artifact (runtime/quant/artifact.py) whose `quant_weight.safetensors` is
replaced by `quant_weight.packed.safetensors` (or `.safetensors.xz`, the same file compressed with LZMA), holding
per module "<module>.packed_mask" int64 [out, nblk], "<module>.packed_values" int8 [nnz],
"<module>.packed_row_ptr" int64 [out+1] and "<module>.packed_shape" int64 [2]; artifact.json gains a "packing"
section. docs/PACKED_FORMAT.md is the full spec.
"""
from __future__ import annotations

import lzma
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load as st_load

from ..errors import UserError
from ..format import PACKED, check_format
from .format import PackedInt8, unpack_int8

PACKED_FORMAT = PACKED.name
PACKED_VERSION = PACKED.version
PACKED_FILE = "quant_weight.packed.safetensors"


def packing_of(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest's "packing" section, checked; None for an unpacked artifact."""
    p = manifest.get("packing")
    if p is None:
        return None
    check_format({"name": p.get("format"), "version": p.get("version")}, PACKED.name, PACKED.version,
                 "the artifact's packing section", PACKED.what, PACKED.fix)
    return p


class PackedTensors:
    """Module name -> PackedInt8 over the packed file of an artifact (decompressed to memory if .xz)."""

    def __init__(self, root: Path, packing: dict[str, Any]):
        path = Path(root) / packing["file"]
        if not path.exists():
            raise UserError(f"{path} is missing: the packed artifact is incomplete; copy it again or re-run "
                            "compress pack")
        if packing.get("codec", "none") == "lzma":
            self._tensors = st_load(lzma.decompress(path.read_bytes()))
            self._handle = None
            keys = list(self._tensors)
        else:
            self._tensors = None
            self._handle = safe_open(str(path), framework="pt")
            keys = list(self._handle.keys())
        self.modules = sorted({k.rsplit(".", 1)[0] for k in keys if k.endswith(".packed_values")})
        self._set = set(self.modules)

    def _get(self, key: str) -> torch.Tensor:
        return self._tensors[key] if self._tensors is not None else self._handle.get_tensor(key)

    def has(self, module: str) -> bool:
        return module in self._set

    def packed(self, module: str) -> PackedInt8:
        rows, cols = (int(v) for v in self._get(f"{module}.packed_shape").tolist())
        p = PackedInt8(rows, cols, self._get(f"{module}.packed_mask"), self._get(f"{module}.packed_values"),
                       self._get(f"{module}.packed_row_ptr"))
        try:
            p.check()
        except ValueError as e:
            raise UserError(f"packed weights of {module} are inconsistent ({e}): the file is damaged; "
                            "copy the artifact again or re-run compress pack") from None
        return p

    def dense(self, module: str) -> torch.Tensor:
        return unpack_int8(self.packed(module))


class UnpackingAccessor:
    """An artifact tensor accessor that serves "<module>.quant_weight" by unpacking: decompress at load."""

    def __init__(self, base, packed: PackedTensors):
        self.base, self.packed = base, packed

    def has(self, name: str) -> bool:
        if name.endswith(".quant_weight") and self.packed.has(name[: -len(".quant_weight")]):
            return True
        return self.base.has(name)

    def tensor(self, name: str) -> torch.Tensor:
        if name.endswith(".quant_weight") and self.packed.has(name[: -len(".quant_weight")]):
            return self.packed.dense(name[: -len(".quant_weight")])
        return self.base.tensor(name)
