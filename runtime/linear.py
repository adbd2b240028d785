"""The linear seam. The model asks a Binder for each weight matmul and never learns which kind it got.

Float, int8 (W8A8), packed-sparse int8 and tensor-parallel linears all plug in here: a Binder turns a
LinearSpec (which checkpoint tensors, what shape, how it may be split across ranks) into a module.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .kernels import decode


@dataclass(frozen=True)
class LinearSpec:
    """One matmul of the model. Several `parts` share an input and are fused into one matmul.

    prefix: HF module prefix, e.g. "model.layers.3.self_attn"; weights are f"{prefix}.{part}.weight".
    parallel: "column" (outputs split across ranks), "row" (inputs split; all-reduce after) or
        "vocab" (the LM head: outputs split, gathered after).
    head_dim: for column-parallel attention projections, outputs are split on head boundaries.
    """

    prefix: str
    parts: tuple[str, ...]
    in_features: int
    out_features: tuple[int, ...]
    parallel: str
    layer: int | None = None
    head_dim: int | None = None

    def weight_name(self, part: str) -> str:
        return f"{self.prefix}.{part}.weight" if self.prefix else f"{part}.weight"

    @property
    def names(self) -> tuple[str, ...]:
        """Module names, one per part: the unit a float-fallback or sensitivity score refers to."""
        return tuple(f"{self.prefix}.{p}" if self.prefix else p for p in self.parts)


class Binder(Protocol):
    """What the model is built from: linears for each spec, plain tensors for norms and embeddings."""

    dtype: torch.dtype
    device: torch.device

    def linear(self, spec: LinearSpec) -> nn.Module: ...

    def tensor(self, name: str) -> torch.Tensor: ...


class FloatLinear(nn.Module):
    """y = x W^T (+ b), with W the parts' weights stacked along the output dimension."""

    def __init__(self, weight: torch.Tensor, out_splits: tuple[int, ...], bias: torch.Tensor | None = None):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.out_splits = tuple(out_splits)
        self.in_features = weight.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def weight_bytes(self) -> int:
        return self.weight.numel() * self.weight.element_size()


def _mkldnn_bf16_ok() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise") and \
        torch.ops.mkldnn._is_mkldnn_bf16_supported()


# bf16 CPU linears run through oneDNN with the weight reordered once at load (see PackedLinear).
PACK_BF16 = True


class PackedLinear(nn.Module):
    """A bf16 CPU linear on the fastest path this machine has.

    With AVX512-BF16 (and the kernel built): decode calls (M <= decode.max_rows() rows: 4, or 8 with AMX) run the project's vdpbf16ps / AMX GEMV
    (runtime/kernels/decode_src.py) on the plain row-major weight, prefill runs F.linear on that same
    memory (oneDNN's matmul; as fast as the reordered layout at M = 512, benchmarks/KERNELS.md).
    Otherwise oneDNN's reordered weight, 22-32 GB/s at batch 1 against 15-20 GB/s for F.linear on the
    plain layout on the AMD EPYC of benchmarks/KERNELS.md; that copy replaces the plain one (same bytes),
    so `weight` is then a read-only property that unpacks a dense copy on demand.
    """

    def __init__(self, weight: torch.Tensor, out_splits: tuple[int, ...], bias: torch.Tensor | None = None):
        super().__init__()
        self.why_no_kernel = (f"in_features {weight.shape[1]} is not a multiple of 32" if weight.shape[1] % 32
                              else decode.bf16_reason())
        self.use_kernel = self.why_no_kernel is None
        self.kernel_rows = decode.max_rows() if self.use_kernel else 0
        if self.use_kernel:
            self.plain = weight.contiguous()
            self.packed = None
        else:
            self.plain = None
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), None)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.out_splits = tuple(out_splits)
        self.in_features = weight.shape[1]
        self.out_features = weight.shape[0]
        self._nbytes = weight.numel() * weight.element_size()

    @property
    def weight(self) -> torch.Tensor:
        return self.plain if self.plain is not None else self.packed.to_dense()

    @property
    def decode_path(self) -> str:
        if not self.use_kernel:
            return "oneDNN bf16"
        return "bf16 vdpbf16ps kernel" + (" + AMX for 5-8 rows" if self.kernel_rows > decode.AVX_MAX_M else "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_kernel:
            shape = x.shape
            x2 = x.reshape(-1, shape[-1])
            if x2.shape[0] <= self.kernel_rows and x2.dtype == torch.bfloat16:
                y = decode.bf16_gemv(x2.contiguous(), self.plain, self.bias, True)
                return y.reshape(*shape[:-1], self.out_features)
            return F.linear(x, self.plain, self.bias)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    def weight_bytes(self) -> int:
        return self._nbytes


class FloatBinder:
    """Binds float weights from a TensorSource, cast to `dtype` on `device` one tensor at a time."""

    def __init__(self, source, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        self.source = source
        self.dtype = dtype
        self.device = torch.device(device)

    def tensor(self, name: str) -> torch.Tensor:
        return self.source.get(name).to(device=self.device, dtype=self.dtype)

    def float_weight(self, spec: LinearSpec) -> torch.Tensor:
        ws = [self.source.get(spec.weight_name(p)) for p in spec.parts]
        w = ws[0] if len(ws) == 1 else torch.cat(ws, 0)
        return w.to(device=self.device, dtype=self.dtype).contiguous()

    def linear(self, spec: LinearSpec) -> nn.Module:
        w = self.float_weight(spec)
        if PACK_BF16 and w.dtype == torch.bfloat16 and w.device.type == "cpu" and _mkldnn_bf16_ok():
            return PackedLinear(w, spec.out_features)
        return FloatLinear(w, spec.out_features)
