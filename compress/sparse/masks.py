"""Pruning masks from scores. True = keep. Comparison groups follow Wanda: per output row, or per N:M group."""
from __future__ import annotations

import re

import torch

from runtime.errors import UserError


def parse_pattern(pattern: str) -> tuple[int, int] | None:
    """'unstructured' -> None; 'N:M' (e.g. '2:4') -> (N, M): keep N of every M consecutive input weights."""
    if pattern == "unstructured":
        return None
    m = re.fullmatch(r"(\d+):(\d+)", pattern)
    if not m or not (0 < int(m.group(1)) < int(m.group(2))):
        raise UserError(f"unknown sparsity pattern {pattern!r}: use 'unstructured' or N:M with 0<N<M, e.g. '2:4'")
    return int(m.group(1)), int(m.group(2))


def row_mask(score: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Prune the round(in·sparsity) lowest scores in every output row: each row, hence the layer, hits the target.

    Ties are broken by position (stable sort) so the mask is deterministic.
    """
    if not 0.0 <= sparsity < 1.0:
        raise UserError(f"--sparsity must be in [0, 1), got {sparsity}")
    rows, cols = score.shape
    n_prune = int(round(cols * sparsity))
    mask = torch.ones_like(score, dtype=torch.bool)
    if n_prune:
        idx = torch.sort(score, dim=1, stable=True).indices[:, :n_prune]
        mask.scatter_(1, idx, False)
    return mask


def nm_mask(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the n highest scores in every group of m consecutive input channels (2:4 = NVIDIA's sparse pattern)."""
    rows, cols = score.shape
    if cols % m:
        raise UserError(f"in_features {cols} is not a multiple of {m}: the {n}:{m} pattern cannot be applied")
    g = score.reshape(rows, cols // m, m)
    # stable sort on the negated score: among equal scores the earlier position wins
    keep = torch.sort(-g, dim=2, stable=True).indices[..., :n]
    mask = torch.zeros_like(g, dtype=torch.bool).scatter_(2, keep, True)
    return mask.reshape(rows, cols)


def check_pattern(weight: torch.Tensor, n: int, m: int) -> bool:
    """True if at most n of every m consecutive weights along the input dim are non-zero."""
    rows, cols = weight.shape
    if cols % m:
        return False
    return bool(((weight.reshape(rows, cols // m, m) != 0).sum(-1) <= n).all())
