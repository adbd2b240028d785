"""The one LLaMA of the runtime: RMSNorm, RoPE, GQA attention over a preallocated KV cache, SwiGLU.

Every weight matmul is a module handed out by a Binder (see linear.py), so quantized, sparse and
tensor-parallel weights need no change here. Head counts are read off the linears' output sizes,
which is how a tensor-parallel rank ends up with its share of heads without the model knowing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .kernels import decode
from .linear import Binder, LinearSpec
from .rope import rope_for_layers
from .topology import DOWN, GATE_UP, LM_HEAD, O, QKV


# Decode rows (at most this many tokens per call) run the fused bf16 ops of runtime/kernels/decode_ops_src.py
# where they are built: one call each for RMSNorm, SiLU·mul and RoPE + cache write + attention, instead of
# ~60 eager ops per layer (benchmarks/decode_profile.py). Prefill stays on torch's parallel ops.
FUSED_MAX_ROWS = 8


def fused_decode_ops(dtype: torch.dtype, device: torch.device | str) -> bool:
    """Whether a model in this dtype/device runs the fused decode ops (bf16 on a CPU that has them)."""
    return dtype == torch.bfloat16 and torch.device(device).type == "cpu" and decode.ops_reason() is None


class RMSNorm(nn.Module):
    def __init__(self, weight: torch.Tensor, eps: float, fused: bool = False):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.eps = eps
        self.fused = fused and weight.dtype == torch.bfloat16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused and x.dtype == torch.bfloat16 and x.numel() <= FUSED_MAX_ROWS * x.shape[-1] and x.is_contiguous():
            return decode.rms_norm_bf16(x, self.weight, self.eps)
        # one fused call instead of six Python-level ops (decode is dominated by per-op overhead on
        # small models); it normalizes in float32 and rounds like HF's LlamaRMSNorm
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


class KVCache:
    """Keys and values for every layer, [B, H_kv, max_len, head_dim], allocated once per batch shape."""

    def __init__(self, n_layers: int, batch: int, n_kv: int, max_len: int, head_dim: int, dtype, device):
        shape = (batch, n_kv, max_len, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.max_len = max_len

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, i: int, b: Binder):
        super().__init__()
        hd, d = cfg.head_dim, cfg.hidden_size
        p = f"model.layers.{i}.{QKV.block}"
        self.qkv = b.linear(LinearSpec(p, QKV.parts, d,
                                       (cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd,
                                        cfg.num_key_value_heads * hd), QKV.parallel, i, hd))
        self.o_proj = b.linear(LinearSpec(p, O.parts, cfg.num_attention_heads * hd, (d,), O.parallel, i, hd))
        self.head_dim = hd
        self.n_heads = self.qkv.out_splits[0] // hd
        self.n_kv = self.qkv.out_splits[1] // hd
        self.layer = i
        self.fused = fused_decode_ops(b.dtype, b.device)

    def forward(self, x, cos, sin, cache: KVCache | None, start: int, mask: torch.Tensor | None):
        """cos/sin: [B, T, 1, head_dim] and sin with the rotate-half sign folded in (see Llama.forward)."""
        B, T, _ = x.shape
        H, Hkv, hd = self.n_heads, self.n_kv, self.head_dim
        qkv = self.qkv(x).view(B, T, H + 2 * Hkv, hd)
        if T == 1 and self.fused and cache is not None and qkv.dtype == torch.bfloat16 and qkv.is_contiguous():
            # RoPE, the cache write and attention in one call (decode_ops_src.py)
            m = None if mask is None else mask.reshape(mask.shape[0], -1).expand(B, -1)
            o = decode.attn_decode_bf16(qkv, cos, sin, cache.k[self.layer], cache.v[self.layer], H, start, m)
            return self.o_proj(o)
        # RoPE on q and k in one go, in [B, T, heads, hd] layout: rotate_half(x) == roll(x, hd/2) * sign,
        # and the sign lives in `sin`, so this is 3 ops instead of 7 per tensor
        qk = qkv[:, :, : H + Hkv]
        qk = torch.addcmul(qk * cos, qk.roll(hd // 2, -1), sin)
        q = qk[:, :, :H].transpose(1, 2)
        k = qk[:, :, H:].transpose(1, 2)
        v = qkv[:, :, H + Hkv:].transpose(1, 2)
        if cache is not None:
            cache.k[self.layer][:, :, start:start + T] = k
            cache.v[self.layer][:, :, start:start + T] = v
            k = cache.k[self.layer][:, :, :start + T]
            v = cache.v[self.layer][:, :, :start + T]
        if T == 1 and DECODE_ATTENTION == "matmul":
            o = _decode_attention(q, k, v, mask)
        else:
            causal = mask is None and T > 1
            if mask is None and T > 1 and start > 0:  # chunk after a cached prefix: causal within, full to the past
                mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(start)
                causal = False
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=H != Hkv)
        return self.o_proj(o.transpose(1, 2).reshape(B, T, H * hd))


# Attention for one new token: "matmul" (two batched matmuls, GQA by grouping the query heads of a kv head,
# no repeated K/V) or "sdpa". Chosen by measurement, see benchmarks/decode_speed.py.
DECODE_ATTENTION = "matmul"


def _decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """q [B, H, 1, hd], k/v [B, Hkv, L, hd] (views of the cache), mask bool broadcastable to [B, 1, 1, L] or
    None -> [B, H, 1, hd]. Scores as (k @ q^T)^T on 3-D batches: the form that streams a strided cache view
    at full speed (KERNELS.md: q @ k^T on the view is 2-9x slower, SDPA ~2.5x slower at decode)."""
    B, H, _, hd = q.shape
    Hkv, L = k.shape[1], k.shape[2]
    G = H // Hkv  # query heads sharing one kv head become columns: no repeated K/V
    qg = q.reshape(B * Hkv, G, hd)
    s = torch.bmm(k.flatten(0, 1), qg.transpose(1, 2)).transpose(1, 2)  # [B*Hkv, G, L]
    s = s.float().mul_(hd ** -0.5)
    if mask is not None:
        s = s.view(B, Hkv, G, L).masked_fill_(~mask.reshape(mask.shape[0], 1, 1, L), float("-inf")).view(B * Hkv, G, L)
    p = torch.softmax(s, -1).to(v.dtype)
    return torch.bmm(p, v.flatten(0, 1)).view(B, H, 1, hd)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, i: int, b: Binder):
        super().__init__()
        p, d, f = f"model.layers.{i}.{GATE_UP.block}", cfg.hidden_size, cfg.intermediate_size
        self.gate_up = b.linear(LinearSpec(p, GATE_UP.parts, d, (f, f), GATE_UP.parallel, i))
        self.down_proj = b.linear(LinearSpec(p, DOWN.parts, f, (d,), DOWN.parallel, i))
        fs = self.gate_up.out_splits
        self.fused = fused_decode_ops(b.dtype, b.device) and len(fs) == 2 and fs[0] == fs[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gu = self.gate_up(x)
        if self.fused and gu.dtype == torch.bfloat16 and gu.numel() <= FUSED_MAX_ROWS * gu.shape[-1] and gu.is_contiguous():
            return self.down_proj(decode.silu_mul_bf16(gu, gu.shape[-1] // 2))
        g, u = gu.split(self.gate_up.out_splits, -1)
        return self.down_proj(F.silu(g) * u)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, i: int, b: Binder):
        super().__init__()
        p = f"model.layers.{i}"
        fused = fused_decode_ops(b.dtype, b.device)
        self.input_layernorm = RMSNorm(b.tensor(f"{p}.input_layernorm.weight"), cfg.rms_norm_eps, fused)
        self.self_attn = Attention(cfg, i, b)
        self.post_attention_layernorm = RMSNorm(b.tensor(f"{p}.post_attention_layernorm.weight"), cfg.rms_norm_eps, fused)
        self.mlp = MLP(cfg, i, b)

    def forward(self, x, cos, sin, cache, start, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, start, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    def __init__(self, cfg: ModelConfig, binder: Binder):
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Parameter(binder.tensor("model.embed_tokens.weight"), requires_grad=False)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i, binder) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(binder.tensor("model.norm.weight"), cfg.rms_norm_eps,
                            fused_decode_ops(binder.dtype, binder.device))
        self.lm_head = binder.linear(LinearSpec("", (LM_HEAD,), cfg.hidden_size, (cfg.vocab_size,), "vocab"))
        self.dtype = binder.dtype
        self.device = binder.device
        attn = self.layers[0].self_attn if len(self.layers) else None
        self.n_kv_local = attn.n_kv if attn else cfg.num_key_value_heads
        # fixed keys/values at cache positions 0..P-1 of every sequence (runtime/kv_prefix.py; the Engine
        # fills them and offsets positions and masks; this module needs nothing else)
        self.kv_prefix = None

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        return KVCache(len(self.layers), batch, self.n_kv_local, max_len, self.config.head_dim, self.dtype, self.device)

    def forward(self, input_ids: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None = None,
                start: int = 0, mask: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """Logits [B, T, V] (or [B, 1, V] with last_only) in float32.

        cos/sin: [B, 1, T, head_dim] for each token's position; mask: bool [B, 1, T, start+T] or None for
        plain causal attention.
        """
        x = F.embedding(input_ids, self.embed_tokens)
        cos, sin = rope_for_layers(cos, sin)  # once per call, not once per layer
        for layer in self.layers:
            x = layer(x, cos, sin, cache, start, mask)
        if last_only:
            x = x[:, -1:]
        return self.lm_head(self.norm(x)).float()
