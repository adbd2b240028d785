"""Helpers of the KV-prefix tests: the prefix keys/values as transformers computes them (the independent
reference), and an artifact given such a prefix by hand (runtime/kv_prefix.py, format 1.3)."""
from __future__ import annotations

import json
from pathlib import Path

import torch


def hf_prefix_kv(hf_dir: Path, ids: list[int]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer [n_kv, P, head_dim] keys (after RoPE) and values of `ids` at positions 0..P-1, from
    transformers' LlamaForCausalLM's own cache."""
    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM.from_pretrained(str(hf_dir), torch_dtype=torch.float32).eval()
    with torch.no_grad():
        pkv = hf(torch.tensor([ids]), use_cache=True).past_key_values
    return [l.keys[0].float().clone() for l in pkv.layers], [l.values[0].float().clone() for l in pkv.layers]


def hf_logits(hf_dir: Path, ids: list[int]) -> torch.Tensor:
    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM.from_pretrained(str(hf_dir), torch_dtype=torch.float32).eval()
    with torch.no_grad():
        return hf(torch.tensor([ids])).logits[0].float()


def add_prefix(art: Path, ids: list[int]) -> Path:
    """Give the artifact `art` the float prefix of `ids` (keys/values of its anti_weight/ model, computed by
    transformers), the manifest's kv_prefix and format 1.3.0, then re-hash its files."""
    from runtime.format import save_tensors
    from runtime.kv_prefix import manifest_entry, tensor_name
    from runtime.quant.artifact import ANTI_DIR, write_manifest

    k, v = hf_prefix_kv(art / ANTI_DIR, ids)
    save_tensors(art / "k_prefix.safetensors", {tensor_name(i, "k_prefix"): t.contiguous() for i, t in enumerate(k)})
    save_tensors(art / "v_prefix.safetensors", {tensor_name(i, "v_prefix"): t.contiguous() for i, t in enumerate(v)})
    m = json.loads((art / "artifact.json").read_text())
    m.pop("files", None)
    m["kv_prefix"] = manifest_entry(ids, len(k))
    m["format"]["version"] = "1.3.0"
    cfg = json.loads((art / ANTI_DIR / "config.json").read_text())
    m.setdefault("source", {}).setdefault("config", cfg)
    write_manifest(art, m)
    return art
