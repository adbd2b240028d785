"""GPTQ weight rounding (Frantar et al., 2023) for int8 symmetric per-output-channel weights.

Round-to-nearest minimises each weight's own error; GPTQ minimises the layer's OUTPUT error on the
calibration inputs, ||X W^T - X Q^T||^2 = tr((W - Q) H (W - Q)^T) with H = X^T X: columns are quantized
one at a time and the rounding error of each is pushed onto the columns not yet quantized, weighted
by the inverse Hessian (its upper Cholesky factor, the paper's numerically stable form).

The per-channel scales are fixed up front from the weight's absmax (the artifact's `weight_scale`),
so the result is stored and executed exactly like a round-to-nearest weight; only the codes change.
"""
from __future__ import annotations

import torch

from runtime.quant import qmath


def inverse_hessian_factor(h: torch.Tensor, damp: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """(upper Cholesky factor of H^-1 [in, in], dead-column mask). Damping: `damp` x mean diag(H)."""
    h = h.double().clone()
    dead = torch.diag(h) <= 0
    h[dead, dead] = 1.0  # a channel never active: any code is exact for it
    d = float(torch.diag(h).mean())
    lam = damp * d
    for _ in range(6):  # grow the damping until H is numerically positive definite
        hd = h + lam * torch.eye(h.shape[0], dtype=h.dtype)
        l, info = torch.linalg.cholesky_ex(hd)
        if int(info) == 0:
            break
        lam *= 10
    else:
        raise RuntimeError("GPTQ: the Hessian is not positive definite even with heavy damping")
    hinv = torch.cholesky_inverse(l)
    return torch.linalg.cholesky(hinv, upper=True), dead


def gptq_quantize(w: torch.Tensor, h: torch.Tensor, damp: float = 0.01,
                  block: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 codes [out, in], float32 scales [out]) of `w` [out, in] for inputs with Hessian `h` [in, in].

    Same scales as qmath.quantize_weight(w); codes chosen by GPTQ's error feedback. Weights that are
    exactly zero (pruned by `compress sparse`) stay zero: their codes are forced to 0 and the error of
    that is fed forward like any other, so GPTQ never undoes a sparsity pattern.
    """
    _, scale = qmath.quantize_weight(w)
    u, dead = inverse_hessian_factor(h, damp)
    keep = w != 0  # pruned weights have no code to choose
    W = w.double().clone()
    W[:, dead] = 0.0
    s = scale.double()[:, None]
    n = W.shape[1]
    Q = torch.zeros_like(W)
    for i1 in range(0, n, block):
        i2 = min(i1 + block, n)
        W1 = W[:, i1:i2].clone()
        U1 = u[i1:i2, i1:i2]
        E1 = torch.zeros_like(W1)
        for j in range(i2 - i1):
            col = W1[:, j:j + 1]
            q = torch.clamp(torch.round(col / s), -127, 127) * keep[:, i1 + j:i1 + j + 1]
            Q[:, i1 + j:i1 + j + 1] = q
            e = (col - q * s) / U1[j, j]
            W1[:, j:] -= e * U1[j:j + 1, j:]  # feed the error to the rest of the block
            E1[:, j:j + 1] = e
        W[:, i2:] -= E1 @ u[i1:i2, i2:]  # ... and to every later block at once
    return Q.to(torch.int8), scale


def output_error(w: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, h: torch.Tensor) -> float:
    """tr((W - Q) H (W - Q)^T): the summed squared output error over the inputs behind H."""
    d = (w.double() - q.double() * scale.double()[:, None])
    return float(((d @ h.double()) * d).sum())
