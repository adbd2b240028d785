"""The float scheme and W8A8 (int8 weights per output channel, int8 activations static or dynamic).

Tensors (docs/ARTIFACT.md): quant_weight int8 [out, in], weight_scale [out], fp_bias [out]; static adds
input_scale / input_offset [1] and deq_scale [out] (= input_scale * weight_scale, kept for readers of
the guide's format); input_hadamard [1] is an online rotation of the input (down_proj by default).
"""
from __future__ import annotations

import torch
from torch import nn

from ..quant.linear import FakeQuantLinear, Int8Linear, PartParams
from . import BuildContext, Layout, Scheme, Tensors, register


def part_params(tensors: Tensors, module: str) -> PartParams:
    """One module's W8A8 tensors (static exactly when input_scale is present)."""
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


def _build(ctx: BuildContext, names: list[str], splits: tuple[int, ...]) -> nn.Module:
    return Int8Linear([part_params(ctx.tensors, n) for n in names], splits, ctx.dtype, ctx.device)


def _reference(ctx: BuildContext, names: list[str], splits: tuple[int, ...],
               float_weight: torch.Tensor | None) -> nn.Module:
    return FakeQuantLinear([part_params(ctx.tensors, n) for n in names], splits, ctx.dtype, float_weight)


WEIGHT_KINDS = {"quant_weight": Layout.WEIGHT, "weight_scale": Layout.PER_OUT, "fp_bias": Layout.BIAS,
                "input_hadamard": Layout.BLOCK}
STATIC_KINDS = {"input_scale": Layout.PER_TENSOR, "input_offset": Layout.PER_TENSOR, "deq_scale": Layout.PER_OUT}

FLOAT = register(Scheme("float", "float", {}, (), float_activations=True, can_pack=False, build=None,
                        reference=None, summary="float weight from anti_weight/, float activations"))
# registration order fixes ARTIFACT_KINDS, the order cut writes kind files in: keep the format 1.1 order
STATIC = register(Scheme("w8a8-static", "int8",
                         {"quant_weight": Layout.WEIGHT, "weight_scale": Layout.PER_OUT,
                          "deq_scale": Layout.PER_OUT, "input_scale": Layout.PER_TENSOR,
                          "input_offset": Layout.PER_TENSOR, "fp_bias": Layout.BIAS,
                          "input_hadamard": Layout.BLOCK},
                         ("quant_weight", "weight_scale", "input_scale", "input_offset"),
                         float_activations=False, can_pack=True, build=_build, reference=_reference,
                         summary="int8 weights per output channel, int8 activations per tensor (static)"))
DYNAMIC = register(Scheme("w8a8-dynamic", "int8", dict(WEIGHT_KINDS), ("quant_weight", "weight_scale"),
                          float_activations=False, can_pack=True, build=_build, reference=_reference,
                          summary="int8 weights per output channel, int8 activations per token (dynamic)"))
