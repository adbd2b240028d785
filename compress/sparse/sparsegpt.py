"""SparseGPT-style pruning (Frantar & Alistarh 2023): choose the mask and update the kept weights so the
layer's output on the calibration inputs changes as little as possible (an OBS step per column).

Written from the paper's description: H = XᵀX (+ damping), the upper Cholesky factor U of H⁻¹ gives, column by
column, the error of zeroing a weight (w / U_jj) and the best correction of the columns still to come
(-err · U_j,j+1:). Masks are chosen lazily per block of columns with the OBS score w² / U_jj².
"""
from __future__ import annotations

import torch


def _prune_counts(cols: int, blocksize: int, sparsity: float) -> list[int]:
    """Per-block prune counts that add up to exactly round(cols·sparsity) per row (cumulative rounding)."""
    edges = list(range(0, cols, blocksize)) + [cols]
    return [int(round(b * sparsity)) - int(round(a * sparsity)) for a, b in zip(edges[:-1], edges[1:])]


@torch.no_grad()
def sparsegpt_prune(weight: torch.Tensor, hessian: torch.Tensor, sparsity: float, nm: tuple[int, int] | None = None,
                    blocksize: int = 128, percdamp: float = 0.01) -> torch.Tensor:
    """The pruned and updated weight (float32, same shape). hessian: Σ xxᵀ over calibration tokens, [in, in]."""
    W = weight.detach().float().clone()
    rows, cols = W.shape
    H = hessian.detach().float().clone()
    dead = torch.diag(H) == 0  # channels never active: their weights cannot matter, prune them first
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(cols, dtype=H.dtype)
    L = torch.linalg.cholesky(H)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    if nm is not None:
        n, m = nm
        blocksize = max(m, blocksize // m * m)  # N:M groups never straddle two blocks
    counts = _prune_counts(cols, blocksize, sparsity)
    for bi, i1 in enumerate(range(0, cols, blocksize)):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()
        Hinv1 = Hinv[i1:i2, i1:i2]
        d = torch.diag(Hinv1)
        Err1 = torch.zeros_like(W1)
        if nm is None:
            prune = torch.zeros_like(W1, dtype=torch.bool)
            if counts[bi]:
                score = W1 ** 2 / d[None, :] ** 2
                idx = torch.sort(score, dim=1, stable=True).indices[:, :counts[bi]]
                prune.scatter_(1, idx, True)
        for i in range(i2 - i1):
            w = W1[:, i]
            if nm is not None and i % nm[1] == 0:
                n, m = nm
                score = W1[:, i:i + m] ** 2 / d[None, i:i + m] ** 2
                g = torch.zeros_like(score, dtype=torch.bool)
                g.scatter_(1, torch.sort(score, dim=1, stable=True).indices[:, :m - n], True)
                gprune = g
            pr = gprune[:, i % nm[1]] if nm is not None else prune[:, i]
            q = torch.where(pr, torch.zeros_like(w), w)
            err = (w - q) / Hinv1[i, i]
            W1[:, i:] -= err[:, None] * Hinv1[i, i:][None, :]
            W1[:, i] = q  # exactly zero where pruned, whatever rounding the update left
            Err1[:, i] = err
        W[:, i1:i2] = W1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return W
