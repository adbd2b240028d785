"""w8a8-packed-sparse: a W8A8 linear whose int8 weight is stored packed (bitmask + non-zero values,
docs/PACKED_FORMAT.md) by `compress pack`, run tile by tile from that form (runtime/sparse/kernel.py).

Its tensors are W8A8's; `quant_weight` lives in the packing section's file instead of
quant_weight.safetensors (the binder reads it through runtime/sparse/artifact.py's UnpackingAccessor).
Where the kernel is unavailable (or the input is rotated, so the weight is dense) it is unpacked at
load into the dense int8 linear: the same int32 results, no speed-up.
"""
from __future__ import annotations

import torch
from torch import nn

from . import BuildContext, Scheme, register
from .w8a8 import STATIC, _build as _dense_build, _reference


def _build(ctx: BuildContext, names: list[str], splits: tuple[int, ...]) -> nn.Module:
    from ..sparse.linear import PackedSparseInt8Linear

    t, packed = ctx.tensors, ctx.packed
    rotated = any(t.has(f"{n}.input_hadamard") for n in names)
    if getattr(ctx, "mode", "unpack") != "kernel" or ctx.device.type != "cpu" or packed is None or rotated \
            or not all(packed.has(n) for n in names):
        return _dense_build(ctx, names, splits)
    n0 = names[0]
    static = t.has(f"{n0}.input_scale")
    biases = [t.tensor(f"{n}.fp_bias").float() if t.has(f"{n}.fp_bias") else torch.zeros(s)
              for n, s in zip(names, splits)]
    ctx.packed_modules += list(names)
    return PackedSparseInt8Linear(
        [packed.packed(n) for n in names],
        torch.cat([t.tensor(f"{n}.weight_scale").float() for n in names]),
        float(t.tensor(f"{n0}.input_scale").reshape(-1)[0]) if static else None,
        float(t.tensor(f"{n0}.input_offset").reshape(-1)[0]) if static else None,
        torch.cat(biases), splits, ctx.dtype)


PACKED_SPARSE = register(Scheme("w8a8-packed-sparse", "int8", dict(STATIC.kinds), ("quant_weight", "weight_scale"),
                                float_activations=False, can_pack=False, build=_build, reference=_reference,
                                summary="W8A8 (static or dynamic by input_scale) from packed sparse int8 weights",
                                tags={"packed": True}))
