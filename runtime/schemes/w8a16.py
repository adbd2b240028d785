"""w8a16: int8 weights (symmetric per output channel, qmath.quantize_weight), float activations.

For float-fallback units (`compress quantize --fallback-weights int8`): their inputs stay float, as
the disable level asks, but decode reads 1 byte per weight instead of 2 (bf16). Tensors:
quant_weight int8 [out, in] and weight_scale float32 [out] of the unrotated anti_weight/ weight,
optional fp_bias [out] and input_hadamard [1]; y = x (quant_weight * weight_scale[:, None])^T + fp_bias.
With input_hadamard = b (down_proj, when the method rotates its input) quant_weight quantizes W H and the
input is rotated online as for W8A8: measured on SmolLM2-135M it takes the int8 weight error of an
outlier-heavy down_proj from 4.4e-3 to 4.9e-5 (relative squared error).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..quant import qmath
from . import BuildContext, Layout, Scheme, register

KINDS = {"quant_weight": Layout.WEIGHT, "weight_scale": Layout.PER_OUT, "fp_bias": Layout.BIAS,
         "input_hadamard": Layout.BLOCK}


def weight_tensors(module: str, w: torch.Tensor, hadamard: int | None = None) -> dict[str, torch.Tensor]:
    """The artifact tensors of one module's float weight `w` [out, in] (what compress quantize writes);
    `hadamard`: quantize W H for an input rotated online in blocks of that size."""
    q, s = qmath.quantize_weight(qmath.hadamard(w, hadamard) if hadamard else w)
    out = {f"{module}.quant_weight": q, f"{module}.weight_scale": s}
    if hadamard:
        out[f"{module}.input_hadamard"] = torch.tensor([hadamard], dtype=torch.int32)
    return out


def _int8pack_ok(dtype: torch.dtype, device: torch.device, in_features: int) -> bool:
    # aten's CPU int8-weight kernel reads the int8 matrix directly (no dequantized copy). Measured on this
    # CPU it returns wrong values and can crash for in_features not a multiple of 32: use it on 64-aligned only
    return device.type == "cpu" and dtype in (torch.bfloat16, torch.float16) and in_features % 64 == 0 and \
        hasattr(torch.ops.aten, "_weight_int8pack_mm")


class W8A16Linear(nn.Module):
    """y = x W_q^T * weight_scale + fp_bias with W_q int8 held as is; x stays in the model dtype.

    bf16/fp16 on CPU: aten's _weight_int8pack_mm (dequantizes inside the dot products). Elsewhere, and for
    fp32 (a quality setting, not a speed one), the int8 matrix is widened per call and the scale applied
    to the output: the same arithmetic, the int8 bytes resident.
    """

    def __init__(self, quant_weight: torch.Tensor, weight_scale: torch.Tensor, fp_bias: torch.Tensor | None,
                 out_splits: tuple[int, ...], dtype: torch.dtype, device: torch.device, hadamard: int | None = None):
        super().__init__()
        self.hadamard = hadamard
        self.out_splits = tuple(out_splits)
        self.out_features, self.in_features = quant_weight.shape
        self.dtype = dtype
        self.register_buffer("qweight", quant_weight.contiguous().to(device), persistent=False)
        self.register_buffer("weight_scale", weight_scale.float().to(device), persistent=False)
        self.fast = _int8pack_ok(dtype, device, self.in_features)
        self.register_buffer("scale_k", weight_scale.to(device=device, dtype=dtype) if self.fast else None,
                             persistent=False)
        b = None if fp_bias is None or not bool(fp_bias.any()) else fp_bias.float().to(device)
        self.register_buffer("bias", b, persistent=False)

    def weight_bytes(self) -> int:
        return self.qweight.numel() + self.weight_scale.numel() * 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if self.hadamard:
            x2 = qmath.hadamard(x2, self.hadamard)
        if self.fast:
            y = torch.ops.aten._weight_int8pack_mm(x2.to(self.dtype).contiguous(), self.qweight, self.scale_k)
        else:
            y = F.linear(x2.float(), self.qweight.float()) * self.weight_scale
        if self.bias is not None:
            y = y + self.bias
        return y.to(self.dtype).reshape(*shape[:-1], self.out_features)


class W8A16Reference(nn.Module):
    """The float32 reference: dequantized weights, unquantized inputs."""

    def __init__(self, quant_weight: torch.Tensor, weight_scale: torch.Tensor, fp_bias: torch.Tensor | None,
                 out_splits: tuple[int, ...], dtype: torch.dtype, float_weight: torch.Tensor | None = None,
                 hadamard: int | None = None):
        super().__init__()
        self.hadamard = hadamard
        self.register_buffer("w_dq", quant_weight.float() * weight_scale.float()[:, None], persistent=False)
        self.register_buffer("bias", None if fp_bias is None else fp_bias.float(), persistent=False)
        self.register_buffer("float_weight", None if float_weight is None else float_weight.float(), persistent=False)
        self.out_splits = tuple(out_splits)
        self.dtype = dtype
        self.enabled = True  # as FakeQuantLinear: False computes the float weight (sensitivity scoring)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled and self.float_weight is not None:
            return F.linear(x.float(), self.float_weight).to(self.dtype)
        xr = qmath.hadamard(x, self.hadamard) if self.hadamard else x.float()
        return F.linear(xr, self.w_dq, self.bias).to(self.dtype)


def _tensors(ctx: BuildContext, names: list[str]):
    t = ctx.tensors
    q = torch.cat([t.tensor(f"{n}.quant_weight") for n in names], 0)
    s = torch.cat([t.tensor(f"{n}.weight_scale").float() for n in names], 0)
    bs = [t.tensor(f"{n}.fp_bias").float() if t.has(f"{n}.fp_bias") else None for n in names]
    b = None if all(x is None for x in bs) else torch.cat(
        [x if x is not None else torch.zeros(t.tensor(f"{n}.quant_weight").shape[0]) for x, n in zip(bs, names)])
    had = {int(t.tensor(f"{n}.input_hadamard").reshape(-1)[0]) if t.has(f"{n}.input_hadamard") else None
           for n in names}
    if len(had) != 1:  # fused parts share one input, hence one rotation
        raise ValueError(f"fused parts {names} disagree on input_hadamard")
    return q, s, b, had.pop()


def _build(ctx: BuildContext, names: list[str], splits: tuple[int, ...]) -> nn.Module:
    q, s, b, had = _tensors(ctx, names)
    return W8A16Linear(q, s, b, splits, ctx.dtype, ctx.device, had)


def _reference(ctx: BuildContext, names: list[str], splits: tuple[int, ...],
               float_weight: torch.Tensor | None) -> nn.Module:
    q, s, b, had = _tensors(ctx, names)
    return W8A16Reference(q, s, b, splits, ctx.dtype, float_weight, had)


W8A16 = register(Scheme("w8a16", "w8a16", KINDS, ("quant_weight", "weight_scale"), float_activations=True,
                        can_pack=False, build=_build, reference=_reference,
                        summary="int8 weights per output channel, float activations",
                        tags={"weight_tensors": weight_tensors}))
