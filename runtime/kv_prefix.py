"""A fixed attention-sink prefix in the KV cache (artifact format 1.3, `kv_prefix`).

PrefixQuant / CushionCache: the first token(s) of a sequence draw the attention sinks and carry the
massive activations no static per-tensor int8 range can serve together with ordinary tokens. An artifact
with a `kv_prefix` stores, per decoder layer, the keys and values the FLOAT model computes for a few fixed
token ids at positions 0..P-1 (post-RoPE, every KV head). The runtime puts them in the cache before every
sequence and runs the user's tokens at positions P.., so no quantized linear ever sees the prefix tokens
(and the compressor's static ranges were calibrated without them).

Tensors: `model.layers.{i}.self_attn.k_prefix` / `.v_prefix`, float32 [num_key_value_heads, P, head_dim]
in files `k_prefix.safetensors` / `v_prefix.safetensors`. Under tensor parallelism every rank reads the
whole tensors (they are tiny) and keeps the KV heads the TP plan gives it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .errors import UserError
from .schemes import Layout, register_kind

KINDS = ("k_prefix", "v_prefix")
for _k in KINDS:
    register_kind(_k, Layout.KV_HEADS)
MANIFEST_KEY = "kv_prefix"


def tensor_name(layer: int, kind: str) -> str:
    return f"model.layers.{layer}.self_attn.{kind}"


@dataclass
class KVPrefix:
    """Per layer [n_kv, P, head_dim] keys (post-RoPE) and values of the prefix tokens at positions 0..P-1."""

    token_ids: list[int]
    k: list[torch.Tensor]
    v: list[torch.Tensor]

    @property
    def length(self) -> int:
        return len(self.token_ids)

    def to(self, dtype: torch.dtype, device: torch.device | str) -> "KVPrefix":
        return KVPrefix(list(self.token_ids), [t.to(device=device, dtype=dtype) for t in self.k],
                        [t.to(device=device, dtype=dtype) for t in self.v])

    def heads(self, idx: list[int]) -> "KVPrefix":
        """The KV heads `idx` (a tensor-parallel rank's, runtime/parallel/plan.py kv_heads)."""
        ix = torch.tensor(idx, dtype=torch.long)
        return KVPrefix(list(self.token_ids), [t.index_select(0, ix.to(t.device)).contiguous() for t in self.k],
                        [t.index_select(0, ix.to(t.device)).contiguous() for t in self.v])

    def fill(self, cache) -> None:
        """Write the prefix into positions 0..P-1 of every row of `cache` (runtime/model.py KVCache)."""
        P = self.length
        for dst, src in zip(cache.k + cache.v, self.k + self.v):
            dst[:, :, :P] = src


def manifest_entry(token_ids: list[int], n_layers: int) -> dict[str, Any]:
    """The artifact.json `kv_prefix` section (docs/ARTIFACT.md)."""
    return {"token_ids": [int(t) for t in token_ids], "length": len(token_ids), "positions": [0, len(token_ids)],
            "layers": n_layers, "tensors": "model.layers.{i}.self_attn.k_prefix / v_prefix: float32 "
            "[num_key_value_heads, length, head_dim], keys after RoPE, computed by the float model",
            "runtime": "every sequence starts with these keys/values in the KV cache at positions 0..length-1; "
            "the input tokens follow at positions length.. and attend to them; no linear runs on the prefix"}


def prefix_problems(manifest: dict[str, Any], has, tensor, n_layers: int, n_kv: int, head_dim: int) -> list[str]:
    """What `compress verify` reports about the prefix: manifest and tensors agree, shapes, finite values."""
    entry = manifest.get(MANIFEST_KEY)
    present = [tensor_name(i, k) for i in range(n_layers) for k in KINDS if has(tensor_name(i, k))]
    if entry is None:
        return [f"{present[0]} (and {len(present) - 1} more) present but the manifest has no '{MANIFEST_KEY}'"] \
            if present else []
    problems = []
    ids = entry.get("token_ids") if isinstance(entry, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(t, int) for t in ids):
        return [f"'{MANIFEST_KEY}.token_ids' is {ids!r}, not a non-empty list of token ids"]
    P = len(ids)
    if entry.get("length") != P:
        problems.append(f"'{MANIFEST_KEY}.length' {entry.get('length')!r} is not len(token_ids) = {P}")
    for i in range(n_layers):
        for k in KINDS:
            n = tensor_name(i, k)
            if not has(n):
                problems.append(f"'{MANIFEST_KEY}' is set but {n} is missing")
                continue
            if tensor is None:
                continue
            t = tensor(n)
            if tuple(t.shape) != (n_kv, P, head_dim) or t.dtype != torch.float32:
                problems.append(f"{n} is {t.dtype} {tuple(t.shape)}, expected float32 {(n_kv, P, head_dim)}")
            elif not bool(torch.isfinite(t).all()):
                problems.append(f"{n} holds non-finite values")
    return problems


def load_kv_prefix(manifest: dict[str, Any], tensors, n_layers: int) -> KVPrefix | None:
    """The artifact's prefix (float32, every KV head), or None when it has none."""
    entry = manifest.get(MANIFEST_KEY)
    if entry is None:
        return None
    try:
        ids = [int(t) for t in entry["token_ids"]]
    except (KeyError, TypeError, ValueError):
        raise UserError(f"artifact.json '{MANIFEST_KEY}' has no valid token_ids: the manifest is damaged; "
                        "re-run compress quantize") from None
    k = [tensors.tensor(tensor_name(i, "k_prefix")).float() for i in range(n_layers)]
    v = [tensors.tensor(tensor_name(i, "v_prefix")).float() for i in range(n_layers)]
    return KVPrefix(ids, k, v)


def attach(model, prefix: KVPrefix | None, kv_heads: list[int] | None = None) -> None:
    """Give a runtime Llama its prefix (this rank's KV heads under TP), in the model's dtype and device."""
    if prefix is None:
        model.kv_prefix = None
        return
    if kv_heads is not None:
        prefix = prefix.heads(kv_heads)
    if prefix.k and prefix.k[0].shape[0] != model.n_kv_local:
        raise UserError(f"the artifact's kv_prefix has {prefix.k[0].shape[0]} KV heads but this model holds "
                        f"{model.n_kv_local}: the artifact does not match its config; re-run compress quantize")
    model.kv_prefix = prefix.to(model.dtype, model.device)


def prefix_length(model) -> int:
    """P: the positions the model's fixed prefix takes in every sequence (0 without one)."""
    p = getattr(model, "kv_prefix", None)
    return 0 if p is None else p.length


def describe(model) -> str:
    """What the `runtime run` banner says about the prefix ("" without one)."""
    p = getattr(model, "kv_prefix", None)
    if p is None:
        return ""
    return (f"KV prefix of {p.length} token(s) {p.token_ids} at positions 0..{p.length - 1}: inputs start at "
            f"position {p.length} and --max-seq-len counts the prefix")
