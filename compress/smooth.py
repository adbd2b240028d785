"""Anti-outlier smoothing (SmoothQuant-style per-channel migration), folded exactly into the model.

For a linear group with input X and weight W: X W^T = (X / s)(W * s)^T for any positive per-input-
channel s. X / s is folded into whatever produced X, so the float model is unchanged:
  q/k/v, gate/up  -> the preceding RMSNorm's weight (divided by s)
  down_proj       -> up_proj's rows (silu(g) * u is linear in u)
  o_proj          -> v_proj's rows (attention output is a convex mix of v); with GQA the scale of
                     an o_proj input channel must be shared by every query head of one kv head.
s = absmax(X)^alpha / absmax(W)^(1-alpha) per input channel (Xiao et al.).
"""
from __future__ import annotations

import torch


def smooth_scales(act_absmax: torch.Tensor, w: torch.Tensor, alpha: float) -> torch.Tensor:
    a = act_absmax.float().clamp(min=1e-5)
    wm = w.float().abs().amax(0).clamp(min=1e-5)
    s = (a.pow(alpha) / wm.pow(1 - alpha)).clamp(min=1e-5, max=1e5)
    return s


def share_over_gqa(s: torch.Tensor, n_heads: int, n_kv: int) -> torch.Tensor:
    """o_proj input scales made equal across the query heads that read one kv head (max of the group)."""
    hd = s.numel() // n_heads
    g = n_heads // n_kv
    per_kv = s.view(n_kv, g, hd).amax(1)  # [n_kv, hd]
    return per_kv[:, None, :].expand(n_kv, g, hd).reshape(-1).contiguous()


def kv_part(s: torch.Tensor, n_heads: int, n_kv: int) -> torch.Tensor:
    """The v_proj row scales behind shared o_proj input scales."""
    hd = s.numel() // n_heads
    return s.view(n_kv, n_heads // n_kv, hd)[:, 0, :].reshape(-1)


def fold_group(tensors: dict[str, torch.Tensor], layer: int, group: str, s: torch.Tensor,
               n_heads: int, n_kv: int) -> None:
    """Apply smoothing scales `s` of one group to the float tensors in place (exact in float)."""
    p = f"model.layers.{layer}"
    dt = lambda n: tensors[n].dtype  # noqa: E731  keep each tensor's dtype

    def scale_cols(name: str) -> None:
        tensors[name] = (tensors[name].float() * s[None, :]).to(dt(name))

    if group == "qkv":
        n = f"{p}.input_layernorm.weight"
        tensors[n] = (tensors[n].float() / s).to(dt(n))
        for part in ("q_proj", "k_proj", "v_proj"):
            scale_cols(f"{p}.self_attn.{part}.weight")
    elif group == "gate_up":
        n = f"{p}.post_attention_layernorm.weight"
        tensors[n] = (tensors[n].float() / s).to(dt(n))
        for part in ("gate_proj", "up_proj"):
            scale_cols(f"{p}.mlp.{part}.weight")
    elif group == "down":
        n = f"{p}.mlp.up_proj.weight"
        tensors[n] = (tensors[n].float() / s[:, None]).to(dt(n))
        scale_cols(f"{p}.mlp.down_proj.weight")
    elif group == "o":
        n = f"{p}.self_attn.v_proj.weight"
        tensors[n] = (tensors[n].float() / kv_part(s, n_heads, n_kv)[:, None]).to(dt(n))
        scale_cols(f"{p}.self_attn.o_proj.weight")
    else:
        raise ValueError(group)


def fold_head_rotation(tensors: dict[str, torch.Tensor], layer: int, head_dim: int) -> None:
    """Rotate every attention head's value space by the normalized Hadamard matrix H (head_dim, a power
    of two), in place and exactly: v_proj rows of each kv head become H v, o_proj's input columns of each
    query head W_o H. Attention mixes whole v vectors, so every query head sees H-rotated values, and
    H H = I undoes it inside o_proj. o_proj's int8 input is then the rotated one (outliers spread)."""
    from runtime.quant.qmath import hadamard_offline

    p = f"model.layers.{layer}.self_attn"
    v, o = f"{p}.v_proj.weight", f"{p}.o_proj.weight"
    vw = tensors[v]
    # rows of one head: hadamard acts on the last dim, so rotate the transposed head blocks
    vt = vw.float().view(-1, head_dim, vw.shape[1]).transpose(1, 2)  # [kv, hidden, hd]
    tensors[v] = hadamard_offline(vt, head_dim).transpose(1, 2).reshape(vw.shape).to(vw.dtype).contiguous()
    tensors[o] = hadamard_offline(tensors[o].float(), head_dim).to(tensors[o].dtype).contiguous()
