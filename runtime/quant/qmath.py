"""The quantization arithmetic shared by the compressor and the runtime (one definition, no drift).

Weights: int8, symmetric per output channel, q = clamp(round(w / s_w), -127, 127).
Activations, static: int8, asymmetric per tensor, x_q = clamp(round(x / s_x) + o_x, -128, 127),
    dequantized as (x_q - o_x) * s_x  (the guide's input_scale / input_offset).
Activations, dynamic: int8, symmetric per token, s = absmax(row) / 127 computed at run time.

This is the normative arithmetic of docs/ARTIFACT.md ("Arithmetic"): x is converted to float32 first;
`/` is an IEEE float32 division by the float32 scale (NOT a multiplication by its reciprocal, which
differs in the last bit and flips codes at rounding boundaries); `round` is round-half-to-even
(torch.round), applied before the offset is added; codes are exact integers. Every int8 path (oneDNN,
the packed-sparse kernel, the fake-quant reference, exporters) must take its codes from here.
"""
from __future__ import annotations

import torch

QMIN, QMAX = -128, 127


def quantize_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 [out, in], float32 scale [out]) with symmetric per-output-channel scales."""
    w = w.float()
    mn, mx = torch.aminmax(w, dim=1)  # absmax = max(mx, -mn) exactly, without an |w| copy of the matrix
    s = (torch.maximum(mx, -mn) / 127.0).clamp(min=1e-12)
    # in place on the one temporary (w / s): the same values as clamp(round(w / s)), a third of the traffic
    q = (w / s[:, None]).round_().clamp_(-127, 127).to(torch.int8)
    return q, s


def act_params(lo: float, hi: float) -> tuple[float, float]:
    """(input_scale, input_offset) mapping [lo, hi] (widened to contain 0) onto [-128, 127]."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = max((hi - lo) / 255.0, 1e-8)
    offset = float(round(QMIN - lo / scale))
    offset = float(min(max(offset, QMIN), QMAX))
    # the scale is stored as float32: compute everything downstream from the rounded value
    return float(torch.tensor(scale, dtype=torch.float32)), offset


def act_codes_static(x: torch.Tensor, scale: float, offset: float) -> torch.Tensor:
    """The static codes x_q of x as float32 integers in [-128, 127] (float32 division, half-to-even)."""
    return (x.float() / scale).round_().add_(offset).clamp_(QMIN, QMAX)  # in place on the quotient: same values


def quantize_act_static(x: torch.Tensor, scale: float, offset: float) -> torch.Tensor:
    """int8 codes of x (float32 arithmetic, any input dtype)."""
    return act_codes_static(x, scale, offset).to(torch.int8)


def fake_act_static(x: torch.Tensor, scale: float, offset: float) -> torch.Tensor:
    """(x_q - o_x) * s_x in float32: the codes are exact integers, so no int8 round trip is needed."""
    return act_codes_static(x, scale, offset).sub_(offset).mul_(scale)


def dynamic_scales(x: torch.Tensor) -> torch.Tensor:
    """Per-token (last-dim row) symmetric scales, float32 [..., 1]."""
    return (x.float().abs().amax(-1, keepdim=True) / 127.0).clamp(min=1e-8)


def act_codes_dynamic(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """The per-token codes of x under scales s ([..., 1]) as float32 integers in [-127, 127]."""
    return (x.float() / s).round_().clamp_(-127, 127)


def fake_act_dynamic(x: torch.Tensor) -> torch.Tensor:
    s = dynamic_scales(x)
    return act_codes_dynamic(x, s).mul_(s)


def hadamard_block(n: int, cap: int = 512) -> int:
    """The Hadamard block for an input of n channels: the largest power of two dividing n, at most cap."""
    b = 1
    while n % (b * 2) == 0 and b * 2 <= cap:
        b *= 2
    return b


_H: dict[int, torch.Tensor] = {}


def _sylvester(n: int) -> torch.Tensor:
    """The normalized Sylvester Hadamard matrix of size n (a power of two), float32, cached."""
    if n not in _H:
        h = torch.ones(1, 1, dtype=torch.float64)
        while h.shape[0] < n:
            h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
        _H[n] = (h * n ** -0.5).float()
    return _H[n]


def hadamard(x: torch.Tensor, block: int) -> torch.Tensor:
    """x @ blockdiag(H, ..., H) over the last dim, H the normalized Sylvester Hadamard matrix of size `block`
    (orthogonal and symmetric, so x W^T = hadamard(x) hadamard(W)^T). Fast Walsh-Hadamard butterflies in
    float32: log2(block) passes instead of a dense matmul. This is the runtime's online rotation of
    activations: the decode kernels mirror these butterflies, so their int8 codes are this function's."""
    shape = x.shape
    y = x.float().reshape(-1, shape[-1] // block, block)
    rows, nb = y.shape[0], y.shape[1]
    h = 1
    while h < block:
        y = y.view(rows, nb, block // (2 * h), 2, h)
        a, c = y[:, :, :, 0], y[:, :, :, 1]
        y = torch.stack((a + c, a - c), dim=3)
        h *= 2
    return (y.reshape(shape) * (block ** -0.5))


def hadamard_offline(x: torch.Tensor, block: int) -> torch.Tensor:
    """The same rotation as `hadamard` (equal up to float32 rounding) for offline work: weights folded or
    quantized by the compressor and its calibration rows, where no kernel must reproduce the rounding.

    H_{ab} = H_a (x) H_b (Kronecker), so each block viewed as an a x b matrix X becomes H_a X H_b: two small
    matmuls with a, b <= 64 (2(a+b) flops per element). On LLaMA-2-7B weights (11008 x 4096, block 4096)
    this took 0.13 s against ~1 s for the butterflies, which are memory-bound (three tensor writes per pass)."""
    if block & (block - 1) or block < 1:
        raise ValueError(f"Hadamard block {block} is not a power of two")
    shape = x.shape
    k = block.bit_length() - 1
    a, b = 1 << (k // 2), 1 << (k - k // 2)
    y = x.float().reshape(-1, a, b)
    if b > 1:
        y = y @ _sylvester(b)
    if a > 1:
        y = _sylvester(a) @ y
    return y.reshape(shape) if a * b > 1 else y.reshape(shape).clone()
