"""Int8 linears for the runtime (W8A8), their fake-quantized float reference, and a mixed group.

All share the LinearSpec contract of runtime/linear.py: `out_splits` and `forward(x) -> y` in the
model dtype. Fused specs (q/k/v, gate/up) share one input, hence one static input scale.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import decode
from . import qmath
from .weight_copies import keep_prepacked_copy


@dataclass
class PartParams:
    """One HF linear's artifact tensors (static mode has input_scale/offset; dynamic has None)."""

    quant_weight: torch.Tensor  # int8 [out, in]
    weight_scale: torch.Tensor  # float32 [out]
    input_scale: float | None
    input_offset: float | None
    fp_bias: torch.Tensor | None  # float32 [out]
    hadamard: int | None = None  # block of the online input rotation (quant_weight holds W rotated alike)


def _cat(ps: list[PartParams]):
    w = torch.cat([p.quant_weight for p in ps], 0).contiguous()
    ws = torch.cat([p.weight_scale.float() for p in ps], 0).contiguous()
    biases = [p.fp_bias for p in ps]
    if all(b is None for b in biases):
        b = None
    else:
        b = torch.cat([bb.float() if bb is not None else torch.zeros(p.quant_weight.shape[0])
                       for bb, p in zip(biases, ps)], 0)
        b = None if not bool(b.any()) else b
    return w, ws, b


def _onednn_ok() -> bool:
    return hasattr(torch.ops, "onednn") and hasattr(torch.ops.onednn, "qlinear_pointwise") and \
        torch.backends.mkldnn.is_available()


class Int8Linear(nn.Module):
    """W8A8 on CPU through oneDNN's int8 GEMM (VNNI): u8 activations x s8 weights -> float output.

    static: the artifact's per-tensor input_scale/offset; int8 code c maps to u8 c+128 with zero point
    offset+128 (same values). dynamic: per-token symmetric scales; rows are run one scale at a time
    through oneDNN for a single token (decode), else through torch._int_mm.
    """

    def __init__(self, parts: list[PartParams], out_splits: tuple[int, ...], dtype: torch.dtype,
                 device: torch.device):
        super().__init__()
        w, ws, b = _cat(parts)
        self.out_splits = tuple(out_splits)
        self.in_features = w.shape[1]
        self.out_features = w.shape[0]
        self.dtype = dtype
        self.static = parts[0].input_scale is not None
        # dynamic inputs under tensor parallelism: maps this rank's per-token scales to the whole row's
        self.scale_sync: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.hadamard = parts[0].hadamard
        if self.static:
            self.scale = float(parts[0].input_scale)
            self.offset = int(parts[0].input_offset)
        self.register_buffer("weight_scale", ws.to(device), persistent=False)
        self.register_buffer("bias", None if b is None else b.to(device), persistent=False)
        self.use_onednn = device.type == "cpu" and _onednn_ok()
        # decode (M <= decode.max_rows() rows: 4, or 8 with AMX): the project's VNNI / AMX kernel on the plain [out, in] layout (runtime/kernels);
        # why_no_kernel says why not (CPU flags, no compiler, shape, LLAMA_COMPRESS_KERNELS=off)
        self.why_no_kernel = "not on CPU" if device.type != "cpu" else (
            f"in_features {w.shape[1]} is not a multiple of 64" if w.shape[1] % 64 else decode.int8_reason())
        self.use_kernel = self.why_no_kernel is None
        self.kernel_rows = decode.max_rows() if self.use_kernel else 0
        if self.use_kernel and not keep_prepacked_copy():
            # one copy of the weight only (weight_copies.py): prefill runs through torch._int_mm on the plain layout
            self.use_onednn = False
        if self.use_onednn:
            self.packed = torch.ops.onednn.qlinear_prepack(w, None)
            self.register_buffer("w_zp", torch.zeros(w.shape[0], dtype=torch.long), persistent=False)
            self.out_dtype = dtype if dtype in (torch.float32, torch.bfloat16) else torch.float32
            self.bias_k = None if b is None else b.to(self.out_dtype)
        # dynamic prefill (many rows, one scale each) runs through torch._int_mm on the plain layout
        keep_plain = not self.use_onednn or not self.static or self.use_kernel
        self.register_buffer("qweight", w.to(device) if keep_plain else None, persistent=False)
        self.register_buffer("rowsum", w.sum(1, dtype=torch.int32) if self.use_kernel or (self.static and not
                             self.use_onednn) else None, persistent=False)
        self._nbytes = w.numel()

    @property
    def qweight_t(self) -> torch.Tensor | None:
        return None if self.qweight is None else self.qweight.t()

    @property
    def decode_path(self) -> str:
        if self.use_kernel:
            return "int8 vpdpbusd kernel" + (" + AMX for 5-8 rows" if self.kernel_rows > decode.AVX_MAX_M else "")
        return ("oneDNN int8" if self.use_onednn else "torch int_mm")

    def weight_bytes(self) -> int:
        return self._nbytes + self.weight_scale.numel() * 4

    def _onednn(self, xq: torch.Tensor, scale: float, zp: int) -> torch.Tensor:
        y = torch.ops.onednn.qlinear_pointwise(xq, scale, zp, self.packed, self.weight_scale, self.w_zp,
                                               self.bias_k, 1.0, 0, self.out_dtype, "none", [], "")
        return y if y.dtype == self.dtype else y.to(self.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if x2.shape[0] <= self.kernel_rows and (self.static or self.scale_sync is None):
            # quantization (qmath's arithmetic, the Hadamard rotation included), GEMV and epilogue in one call
            xk = x2 if x2.dtype in (torch.float32, torch.bfloat16) else x2.float()
            y = decode.int8_linear(xk.contiguous(), self.qweight, self.rowsum, self.weight_scale, self.bias,
                                   self.scale if self.static else None, self.offset if self.static else None,
                                   self.hadamard, self.dtype == torch.bfloat16)
            return (y if y.dtype == self.dtype else y.to(self.dtype)).reshape(*shape[:-1], self.out_features)
        if self.hadamard:
            x2 = qmath.hadamard(x2, self.hadamard)
        if self.static:
            if self.use_onednn:
                # qmath's codes (int8) -> uint8 by +128, zero point offset+128: the same values
                xq = qmath.quantize_act_static(x2, self.scale, self.offset).view(torch.uint8) ^ 128
                y = self._onednn(xq, self.scale, self.offset + 128)
            else:
                xq = qmath.quantize_act_static(x2, self.scale, self.offset)
                y = self._int_mm(xq, self.offset) * (self.weight_scale * self.scale)
                y = (y if self.bias is None else y + self.bias).to(self.dtype)
        else:
            s = qmath.dynamic_scales(x2)
            if self.scale_sync is not None:  # row-parallel: every rank must use the full row's scale
                s = self.scale_sync(s)
            xq = qmath.act_codes_dynamic(x2, s)
            if self.use_onednn and x2.shape[0] == 1:
                y = self._onednn((xq + 128).to(torch.uint8), float(s), 128)
            else:
                y = self._int_mm(xq.to(torch.int8), 0) * s * self.weight_scale
                y = (y if self.bias is None else y + self.bias).to(self.dtype)
        return y.reshape(*shape[:-1], self.out_features)

    def _int_mm(self, xq: torch.Tensor, offset: int) -> torch.Tensor:
        """int32 accumulate of (xq - offset) @ W^T, returned as float32."""
        wt = self.qweight_t
        M = xq.shape[0]
        if M <= 16:  # torch._int_mm wants M > 16 on some backends: pad rows
            pad = torch.zeros(17 - M, xq.shape[1], dtype=torch.int8, device=xq.device)
            acc = torch._int_mm(torch.cat([xq, pad]), wt)[:M]
        else:
            acc = torch._int_mm(xq, wt)
        acc = acc.float()
        if offset:  # sum_k (x_k - offset) w_k = acc - offset * rowsum (no float copy of the weight)
            acc = acc - offset * (self.rowsum.float() if self.rowsum is not None else wt.float().sum(0))
        return acc


class FakeQuantLinear(nn.Module):
    """The float reference of Int8Linear: dequantized weights, fake-quantized inputs, float32 math.

    `enabled=False` turns it into the plain float linear over `float_weight` (when given): the compressor
    uses that to measure one unit's quantization sensitivity at a time.
    """

    def __init__(self, parts: list[PartParams], out_splits: tuple[int, ...], dtype: torch.dtype,
                 float_weight: torch.Tensor | None = None):
        super().__init__()
        w, ws, b = _cat(parts)
        self.register_buffer("w_dq", (w.float() * ws[:, None]), persistent=False)
        self.register_buffer("bias", b, persistent=False)
        self.register_buffer("float_weight", None if float_weight is None else float_weight.float(), persistent=False)
        self.static = parts[0].input_scale is not None
        self.hadamard = parts[0].hadamard
        self.scale = float(parts[0].input_scale) if self.static else None
        self.offset = float(parts[0].input_offset) if self.static else None
        self.out_splits = tuple(out_splits)
        self.dtype = dtype
        self.enabled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled and self.float_weight is not None:
            return F.linear(x.float(), self.float_weight).to(self.dtype)
        if self.hadamard:
            x = qmath.hadamard(x, self.hadamard)
        xf = qmath.fake_act_static(x, self.scale, self.offset) if self.static else qmath.fake_act_dynamic(x)
        return F.linear(xf, self.w_dq, self.bias).to(self.dtype)


class GroupLinear(nn.Module):
    """A fused spec whose parts are of different kinds (some float, some int8): one module per part,
    outputs concatenated in spec order."""

    def __init__(self, modules: list[nn.Module], out_splits: tuple[int, ...]):
        super().__init__()
        self.parts = nn.ModuleList(modules)
        self.out_splits = tuple(out_splits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(x) for m in self.parts], -1)

    def weight_bytes(self) -> int:
        return sum(m.weight_bytes() for m in self.parts if hasattr(m, "weight_bytes"))
