"""Check what an artifact's manifest claims against the tensors it holds.

A reader trusts the manifest for what each linear is (its scheme), so a manifest that disagrees with
the files would run the wrong function: a float unit that holds int8 tensors (or the reverse), a
scheme whose tensors are missing, an `input_hadamard` rotation the method names with no tensor (or
a tensor the method says is off). Each is reported as one line naming the module.
"""
from __future__ import annotations

from typing import Any, Callable

from ..errors import UserError


class _Has:
    def __init__(self, has: Callable[[str], bool]):
        self.has = has


def _unit(module: str, unit: str) -> str:
    from ..topology import unit_of

    return unit_of(module, unit)


def claim_problems(manifest: dict[str, Any], has: Callable[[str], bool],
                   tensor: Callable[[str], Any] | None = None) -> list[str]:
    """Problems (empty when consistent) between `manifest` and the tensors `has(name)` reports; with
    `tensor(name)`, also each static linear's deq_scale against input_scale * weight_scale (the guide's
    redundant tensor: our kernels read the two factors, outside readers may read deq_scale)."""
    from .. import schemes as S

    acc = _Has(has)
    modules = manifest.get("modules") or {}
    named = manifest.get("schemes") or {}
    problems: list[str] = []
    scheme: dict[str, S.Scheme] = {}
    for mod in sorted(set(modules) | set(named)):
        try:
            s = S.get(named[mod]) if mod in named else S.infer(acc, mod)
        except UserError as e:
            problems.append(f"{mod}: {e}")
            continue
        scheme[mod] = s
        missing, foreign = s.missing(acc, mod), s.foreign(acc, mod)
        if missing:
            problems.append(f"{mod} is named {s.name} but has no {', '.join(missing)} tensor")
        if foreign:
            problems.append(f"{mod} is named {s.name} but holds {', '.join(foreign)} tensors")
        label = modules.get(mod)
        if label == "float" and not s.float_activations:
            problems.append(f"{mod} is listed as float in 'modules' but its scheme {s.name} quantizes its inputs")
        if label == "int8" and s.float_activations:
            problems.append(f"{mod} is listed as int8 in 'modules' but its scheme {s.name} is a float-input one")
    fb = manifest.get("fallback") or {}
    unit = fb.get("unit", "layer")
    for u in fb.get("float_units") or []:
        for mod, s in scheme.items():
            if _unit(mod, unit) == str(u) and not s.float_activations:
                problems.append(f"float unit {u} (fallback.float_units) holds {mod}, which is {s.name}, not float")
    method = manifest.get("method") or {}
    claimed: dict[str, int] = {}
    for key, g in (method.get("groups") or {}).items():
        if not isinstance(g, dict) or "hadamard" not in g:
            continue
        layer_prefix = ".".join(key.split(".")[:3])  # "model.layers.3"
        for part in g.get("group", []):
            claimed[f"{layer_prefix}.{part}"] = int(g["hadamard"] or 0)
    off = method.get("hadamard_down") == "off"
    for mod, s in scheme.items():
        rotated = has(f"{mod}.input_hadamard")
        if s.float_activations:
            continue  # reported above as a foreign tensor if it holds one
        if mod in claimed and claimed[mod] and not rotated:
            problems.append(f"method.groups names an input_hadamard block {claimed[mod]} for {mod} but the artifact "
                            "has no input_hadamard tensor for it")
        elif rotated and ((mod in claimed and not claimed[mod]) or off):
            problems.append(f"{mod} has an input_hadamard tensor but the method says its input is not rotated")
        if tensor is not None and has(f"{mod}.deq_scale") and has(f"{mod}.input_scale"):
            import torch

            want = tensor(f"{mod}.weight_scale").float() * float(tensor(f"{mod}.input_scale").reshape(-1)[0])
            got = tensor(f"{mod}.deq_scale").float()
            if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-6, atol=0):
                problems.append(f"{mod}.deq_scale is not input_scale * weight_scale")
    return problems + _prefix_problems(manifest, has, tensor)


def _prefix_problems(manifest: dict[str, Any], has: Callable[[str], bool], tensor) -> list[str]:
    """The KV prefix (format 1.3): manifest and tensors agree; shapes from the source config."""
    from ..kv_prefix import MANIFEST_KEY, prefix_problems

    cfg = (manifest.get("source") or {}).get("config") or {}
    if manifest.get(MANIFEST_KEY) is None and not has("model.layers.0.self_attn.k_prefix"):
        return []
    try:
        n_layers, n_heads = int(cfg["num_hidden_layers"]), int(cfg["num_attention_heads"])
        n_kv = int(cfg.get("num_key_value_heads") or n_heads)
        hd = int(cfg.get("head_dim") or int(cfg["hidden_size"]) // n_heads)
    except (KeyError, TypeError, ValueError):
        return [f"'{MANIFEST_KEY}' is set but source.config lacks the layer/head counts to check it against"]
    # a cut rank stores the prefix whole too (runtime/kv_prefix.py): the same shapes
    return prefix_problems(manifest, has, tensor, n_layers, n_kv, hd)
