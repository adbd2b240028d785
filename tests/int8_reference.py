"""Float64 references of the runtime's integer arithmetic, and the tolerance any x86 CPU meets.

Kernels (ours, oneDNN's, fbgemm's) accumulate the int8 products exactly in int32; they differ only in
the float epilogue (acc -> float, the order of the scale multiplications, fused or not, bf16 or float32
output), and oneDNN picks a different kernel per CPU (AVX-512 VNNI, AMX, AVX2). So no test compares bits
with a kernel: each output is held against the same integer arithmetic carried out in float64, within a
few float32 (or bf16) roundings of the terms it sums.
"""
from __future__ import annotations

import torch

from runtime.quant import qmath

# float32 epilogue: acc -> float (1 rounding), x scale_x, x scale_w, + bias: 4 roundings of 2^-24 each,
# with room for a fused (scale_x * scale_w) product or an fma. bf16 output adds 2^-8.
RTOL_F32 = 1e-6
RTOL_BF16 = 2 ** -8


def act_codes(x: torch.Tensor, scale: float | None, offset: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes - zero point as float64 [M, K], per-row scale float64 [M, 1]) by qmath's arithmetic."""
    x2 = x.reshape(-1, x.shape[-1])
    if scale is not None:
        c = qmath.quantize_act_static(x2, scale, offset).double() - float(offset)
        return c, torch.full((x2.shape[0], 1), float(scale), dtype=torch.float64)
    s = qmath.dynamic_scales(x2)
    c = torch.clamp(torch.round(x2.float() / s), -127, 127).double()
    return c, s.double()


def int8_linear_reference(x: torch.Tensor, w_q: torch.Tensor, weight_scale: torch.Tensor,
                          bias: torch.Tensor | None, scale: float | None, offset: float | None,
                          hadamard: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(y float64 [M, N], magnitude float64 [M, N]): y = Σ_k (x_q - o)·w · s_x · s_w + b, exactly;
    magnitude = |Σ·s_x·s_w| + |b|, what the float32 roundings of the epilogue are relative to."""
    x2 = x.reshape(-1, x.shape[-1])
    if hadamard:
        x2 = qmath.hadamard(x2, hadamard)
    c, s = act_codes(x2, scale, offset)
    acc = c @ w_q.double().t()  # exact: integers far below 2^53
    term = acc * s * weight_scale.double()[None, :]
    b = torch.zeros(w_q.shape[0], dtype=torch.float64) if bias is None else bias.double()
    return term + b, term.abs() + b.abs()


def assert_matches(y: torch.Tensor, ref: torch.Tensor, mag: torch.Tensor, rtol: float | None = None) -> None:
    """|y - ref| <= rtol·magnitude elementwise, rtol from y's dtype."""
    if rtol is None:
        rtol = RTOL_BF16 if y.dtype == torch.bfloat16 else RTOL_F32
    y2 = y.reshape(ref.shape).double()
    err = (y2 - ref).abs()
    bound = rtol * mag + 1e-30
    bad = err > bound
    assert not bool(bad.any()), (f"{int(bad.sum())} of {bad.numel()} outputs off the float64 reference; "
                                 f"worst error / bound = {float((err / bound).max()):.3g}")
