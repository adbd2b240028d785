"""Rotary position embeddings in HF's rotate-half layout, with the config's theta and scaling."""
from __future__ import annotations

import math

import torch

from .config import ModelConfig
from .errors import UserError


def inv_frequencies(cfg: ModelConfig) -> torch.Tensor:
    hd = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    rs = cfg.rope_scaling
    if not rs:
        return inv
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "linear":
        return inv / rs["factor"]
    if kind == "llama3":  # Llama 3.1: scale low frequencies, keep high ones, blend between
        factor, lo, hi = rs["factor"], rs.get("low_freq_factor", 1.0), rs.get("high_freq_factor", 4.0)
        old = rs.get("original_max_position_embeddings", 8192)
        wavelen = 2 * math.pi / inv
        smooth = (old / wavelen - lo) / (hi - lo)
        scaled = torch.where(wavelen > old / lo, inv / factor, inv)
        mid = (wavelen <= old / lo) & (wavelen >= old / hi)
        return torch.where(mid, (1 - smooth) * inv / factor + smooth * inv, scaled)
    raise UserError(f"rope_scaling type {kind!r} is not supported (supported: linear, llama3)")


def rope_tables(cfg: ModelConfig, max_len: int, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, each [max_len, head_dim]."""
    inv = inv_frequencies(cfg)
    t = torch.arange(max_len, dtype=torch.float64)
    freqs = torch.outer(t, inv)
    emb = torch.cat([freqs, freqs], -1)
    return emb.cos().to(device=device, dtype=dtype), emb.sin().to(device=device, dtype=dtype)


def rope_for_layers(cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, 1, T, hd] tables -> the [B, T, 1, hd] form the model applies to [B, T, heads, hd] activations,
    with rotate-half's sign folded into sin: x*cos + rotate_half(x)*sin == x*cos + roll(x, hd/2)*sin_signed."""
    h = sin.shape[-1] // 2
    sin_signed = torch.cat([-sin[..., :h], sin[..., h:]], -1)
    return cos.transpose(1, 2), sin_signed.transpose(1, 2)
