"""Karpathy's llama2.c legacy (version 0) float32 checkpoints."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import ModelConfig
from ..errors import UserError
from .base import TensorSource, interleaved_to_half


class Llama2cSource(TensorSource):
    def __init__(self, path: Path):
        self.path = Path(path)
        hdr = np.fromfile(self.path, dtype=np.int32, count=7)
        if hdr.size < 7:
            raise UserError(f"{self.path} is too short to be a llama2.c checkpoint")
        dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = (int(x) for x in hdr)
        shared = vocab > 0
        vocab = abs(vocab)
        if min(dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len) <= 0 or dim % n_heads:
            raise UserError(f"{self.path}: header {tuple(hdr)} is not a valid llama2.c header")
        self.config = ModelConfig(hidden_size=dim, intermediate_size=hidden, num_hidden_layers=n_layers,
                                  num_attention_heads=n_heads, num_key_value_heads=n_kv, vocab_size=vocab,
                                  max_position_embeddings=seq_len, rms_norm_eps=1e-5, rope_theta=10000.0,
                                  tie_word_embeddings=shared, bos_token_id=1, eos_token_id=2)
        hd = dim // n_heads
        kv = n_kv * hd
        L = n_layers
        layout = [("tok", (vocab, dim)), ("rms_att", (L, dim)), ("wq", (L, dim, dim)), ("wk", (L, kv, dim)),
                  ("wv", (L, kv, dim)), ("wo", (L, dim, dim)), ("rms_ffn", (L, dim)), ("w1", (L, hidden, dim)),
                  ("w2", (L, dim, hidden)), ("w3", (L, hidden, dim)), ("rms_final", (dim,)),
                  ("fcr", (seq_len, hd // 2)), ("fci", (seq_len, hd // 2))]
        if not shared:
            layout.append(("wcls", (vocab, dim)))
        need = 28 + 4 * sum(int(np.prod(s)) for _, s in layout)
        size = self.path.stat().st_size
        if size != need:
            raise UserError(f"{self.path}: file is {size} bytes but its header {tuple(hdr)} implies {need}; "
                            "the checkpoint is truncated or not llama2.c version 0")
        mm = np.memmap(self.path, dtype=np.float32, mode="r", offset=28)
        self._arr: dict[str, np.ndarray] = {}
        off = 0
        for k, s in layout:
            n = int(np.prod(s))
            self._arr[k] = mm[off:off + n].reshape(s)
            off += n
        m = {"model.embed_tokens.weight": ("tok", None), "model.norm.weight": ("rms_final", None)}
        if not shared:
            m["lm_head.weight"] = ("wcls", None)
        per = {"input_layernorm": "rms_att", "post_attention_layernorm": "rms_ffn", "self_attn.q_proj": "wq",
               "self_attn.k_proj": "wk", "self_attn.v_proj": "wv", "self_attn.o_proj": "wo",
               "mlp.gate_proj": "w1", "mlp.down_proj": "w2", "mlp.up_proj": "w3"}
        for i in range(L):
            for hf, k in per.items():
                m[f"model.layers.{i}.{hf}.weight"] = (k, i)
        self._map = m

    def names(self) -> list[str]:
        return list(self._map)

    def _load(self, name: str) -> torch.Tensor:
        k, i = self._map[name]
        a = self._arr[k] if i is None else self._arr[k][i]
        t = torch.from_numpy(np.array(a))
        if k == "wq":  # llama2.c rotates adjacent pairs; HF rotates halves
            t = interleaved_to_half(t, self.config.num_attention_heads)
        elif k == "wk":
            t = interleaved_to_half(t, self.config.num_key_value_heads)
        return t
