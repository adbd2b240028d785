"""Per-group choice of the smoothing strength and the static activation range, by measured output error.

The objective is the group's own output error on the calibration rows, weight quantization included:
    err = ||X W^T - Q_a(X / s) Q_w(W * s)^T||^2 / ||X W^T||^2   (summed over all tokens)
Static ranges are searched (min-max shrunk jointly, then each end alone) instead of taking min-max,
because one rare outlier token would otherwise waste most of the 256 levels on every other token.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from runtime.quant import qmath

from .smooth import share_over_gqa, smooth_scales

JOINT = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.07, 0.05, 0.03)
SIDE = (1.0, 0.85, 0.7, 0.55, 0.4, 0.25)


@dataclass
class GroupChoice:
    alpha: float  # 0.0 = no smoothing
    scales: torch.Tensor | None  # smoothing scales [in], None when alpha == 0
    lo: float | None  # static range of the smoothed input (None for dynamic)
    hi: float | None
    err: float  # relative output error at the choice
    err_minmax: float  # ... with the plain min-max range at the same alpha (static), for the record


def _rel(e: torch.Tensor, ref_norm: torch.Tensor, wts: torch.Tensor | None = None) -> float:
    """Total squared output error `e` relative to the total output energy (rows weighted by `wts`, the
    number of calibration tokens each stands for). Measured: the per-token mean of relative errors clips the
    rare massive-activation tokens (attention sinks) and costs far more perplexity (SmolLM2: +329% vs +99%
    for min-max), so outlier tokens must keep their weight."""
    e = e.square_().sum(-1)  # in place: `e` is the caller's temporary
    return float((e if wts is None else e * wts).sum() / ref_norm)


class OutputError:
    """The group output error of quantized inputs, Q_a(xs) Q_w(ws)^T - xs ws^T, split as
        D Q_w(ws)^T + xs (Q_w(ws) - ws)^T      with D = Q_a(xs) - xs (the activation error).
    The second term is fixed for a smoothing strength (one float32 matmul); the first, the only one a range
    candidate changes, is a bf16 matmul with float32 accumulation: D and Q_w(ws) lose 2^-9 of their own size,
    which is 0.4% of the error, not of the output. Why: the range search evaluates ~24 candidates for each of
    5 strengths, and at LLaMA-2-7B width that is 2-4 min per layer in float32 and 5x less in bf16 (AMX)."""

    def __init__(self, xs: torch.Tensor, ws: torch.Tensor):
        wdq = _dq_weight(ws)
        self.xs = xs
        self.wdq = wdq.to(torch.bfloat16)
        self.fixed = xs @ wdq.sub_(ws).t()  # in place: wdq is not needed in float32 again

    def __call__(self, xq: torch.Tensor) -> torch.Tensor:
        """The output error for quantized inputs `xq` (consumed: it becomes D in place)."""
        return torch.add(xq.sub_(self.xs).to(torch.bfloat16) @ self.wdq.t(), self.fixed)


def _dq_weight(w: torch.Tensor) -> torch.Tensor:
    q, s = qmath.quantize_weight(w)
    return q.float().mul_(s[:, None])


def search_range(xs: torch.Tensor, out_err: OutputError, ref_norm: torch.Tensor, lo0: float, hi0: float,
                 search: str, wts: torch.Tensor | None = None) -> tuple[float, float, float, float]:
    """(lo, hi, err, err_minmax) for static per-tensor asymmetric quantization of xs."""

    def err(lo: float, hi: float) -> float:
        sc, off = qmath.act_params(lo, hi)
        return _rel(out_err(qmath.fake_act_static(xs, sc, off)), ref_norm, wts)

    e_mm = err(lo0, hi0)
    if search == "minmax":
        return lo0, hi0, e_mm, e_mm
    best = (e_mm, 1.0, 1.0)
    for c in JOINT[1:]:
        e = err(lo0 * c, hi0 * c)
        if e < best[0]:
            best = (e, c, c)
    _, cl, ch = best
    for c in SIDE:  # refine each end alone around the joint choice
        for lo_c, hi_c in ((cl * c, ch), (cl, ch * c)):
            if (lo_c, hi_c) == (cl, ch):
                continue
            e = err(lo0 * lo_c, hi0 * hi_c)
            if e < best[0]:
                best = (e, lo_c, hi_c)
    e, cl, ch = best
    return lo0 * cl, hi0 * ch, e, e_mm


def search_group(rows: torch.Tensor, w: torch.Tensor, ch_min: torch.Tensor, ch_max: torch.Tensor,
                 act_method: str, alphas: tuple[float, ...], range_search: str = "mse",
                 gqa: tuple[int, int] | None = None, wts: torch.Tensor | None = None,
                 hadamard: int | None = None) -> GroupChoice:
    """Best (alpha, range) for one group. rows: [R, in] float inputs; w: [out, in] the group's weights.

    gqa=(n_heads, n_kv) for o_proj: smoothing scales are shared by the query heads of one kv head.
    wts: [R] how many calibration tokens each row stands for (None: all equal).
    hadamard: block size of an online Hadamard rotation of the (smoothed) input, applied to the rows and
    to the weights alike; the static range is then searched in the rotated domain.
    """
    x, w = rows.float(), w.float()
    wts = None if wts is None else wts.float()
    ref = x @ w.t()
    e_ref = ref.pow(2).sum(-1)
    ref_norm = (e_ref if wts is None else e_ref * wts).sum().clamp(min=1e-12)
    absmax = torch.maximum(ch_min.abs(), ch_max.abs())
    best: GroupChoice | None = None
    for a in alphas:
        if a > 0:
            s = smooth_scales(absmax, w, a)
            if gqa is not None:
                s = share_over_gqa(s, *gqa)
            xs, ws = x / s, w * s
            lo0, hi0 = float((ch_min / s).min()), float((ch_max / s).max())
        else:
            s, xs, ws = None, x, w
            lo0, hi0 = float(ch_min.min()), float(ch_max.max())
        if hadamard:
            xs, ws = qmath.hadamard_offline(xs, hadamard), qmath.hadamard_offline(ws, hadamard)
            lo0, hi0 = float(xs.min()), float(xs.max())  # rows hold the exact peak tokens
        out_err = OutputError(xs, ws)
        if act_method == "dynamic":
            e = _rel(out_err(qmath.fake_act_dynamic(xs)), ref_norm, wts)
            c = GroupChoice(a, s, None, None, e, e)
        else:
            lo, hi, e, e_mm = search_range(xs, out_err, ref_norm, lo0, hi0, range_search, wts)
            c = GroupChoice(a, s, lo, hi, e, e_mm)
        if best is None or c.err < best.err:
            best = c
    assert best is not None
    return best
