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
from .linear import Binder, LinearSpec
from .rope import apply_rope


class RMSNorm(nn.Module):
    def __init__(self, weight: torch.Tensor, eps: float):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


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
        p = f"model.layers.{i}.self_attn"
        self.qkv = b.linear(LinearSpec(p, ("q_proj", "k_proj", "v_proj"), d,
                                       (cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd,
                                        cfg.num_key_value_heads * hd), "column", i, hd))
        self.o_proj = b.linear(LinearSpec(p, ("o_proj",), cfg.num_attention_heads * hd, (d,), "row", i, hd))
        self.head_dim = hd
        self.n_heads = self.qkv.out_splits[0] // hd
        self.n_kv = self.qkv.out_splits[1] // hd
        self.layer = i

    def forward(self, x, cos, sin, cache: KVCache | None, start: int, mask: torch.Tensor | None):
        B, T, _ = x.shape
        q, k, v = self.qkv(x).split(self.qkv.out_splits, -1)
        q = q.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            cache.k[self.layer][:, :, start:start + T] = k
            cache.v[self.layer][:, :, start:start + T] = v
            k = cache.k[self.layer][:, :, :start + T]
            v = cache.v[self.layer][:, :, :start + T]
        causal = mask is None and T > 1
        if mask is None and T > 1 and start > 0:  # chunk after a cached prefix: causal within, full to the past
            mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(start)
            causal = False
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           enable_gqa=self.n_heads != self.n_kv)
        return self.o_proj(o.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, i: int, b: Binder):
        super().__init__()
        p, d, f = f"model.layers.{i}.mlp", cfg.hidden_size, cfg.intermediate_size
        self.gate_up = b.linear(LinearSpec(p, ("gate_proj", "up_proj"), d, (f, f), "column", i))
        self.down_proj = b.linear(LinearSpec(p, ("down_proj",), f, (d,), "row", i))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, u = self.gate_up(x).split(self.gate_up.out_splits, -1)
        return self.down_proj(F.silu(g) * u)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, i: int, b: Binder):
        super().__init__()
        p = f"model.layers.{i}"
        self.input_layernorm = RMSNorm(b.tensor(f"{p}.input_layernorm.weight"), cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, i, b)
        self.post_attention_layernorm = RMSNorm(b.tensor(f"{p}.post_attention_layernorm.weight"), cfg.rms_norm_eps)
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
        self.norm = RMSNorm(binder.tensor("model.norm.weight"), cfg.rms_norm_eps)
        self.lm_head = binder.linear(LinearSpec("", ("lm_head",), cfg.hidden_size, (cfg.vocab_size,), "vocab"))
        self.dtype = binder.dtype
        self.device = binder.device
        attn = self.layers[0].self_attn if len(self.layers) else None
        self.n_kv_local = attn.n_kv if attn else cfg.num_key_value_heads

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        return KVCache(len(self.layers), batch, self.n_kv_local, max_len, self.config.head_dim, self.dtype, self.device)

    def forward(self, input_ids: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None = None,
                start: int = 0, mask: torch.Tensor | None = None, last_only: bool = False) -> torch.Tensor:
        """Logits [B, T, V] (or [B, 1, V] with last_only) in float32.

        cos/sin: [B, 1, T, head_dim] for each token's position; mask: bool [B, 1, T, start+T] or None for
        plain causal attention.
        """
        x = F.embedding(input_ids, self.embed_tokens)
        for layer in self.layers:
            x = layer(x, cos, sin, cache, start, mask)
        if last_only:
            x = x[:, -1:]
        return self.lm_head(self.norm(x)).float()
