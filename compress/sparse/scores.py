"""Importance scores: which weights matter. Higher score = keep."""
from __future__ import annotations

import torch


def magnitude_score(weight: torch.Tensor) -> torch.Tensor:
    """|W|: the baseline, blind to the activations the weight meets."""
    return weight.detach().float().abs()


def wanda_score(weight: torch.Tensor, act_norm: torch.Tensor) -> torch.Tensor:
    """Wanda (Sun et al. 2023): |W_ij| · ‖X_j‖₂, with ‖X_j‖₂ the L2 norm of input channel j over calibration tokens.

    A small weight on a channel that carries large activations still moves the output, so it is kept.
    The score is invariant to SmoothQuant-style migration (W·diag(s), X·diag(1/s)), so pruning before or
    after smoothing picks the same weights.
    """
    if act_norm.dim() != 1 or act_norm.numel() != weight.shape[1]:
        raise ValueError(f"act_norm must be [in_features={weight.shape[1]}], got {tuple(act_norm.shape)}")
    return weight.detach().float().abs() * act_norm.float().to(weight.device)[None, :]
