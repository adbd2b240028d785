"""Which units to leave in float: measured quantization sensitivity.

Score of a unit (a decoder layer, or one linear) = mean KL(p_float || p_quant) of the next-token
distributions over the scoring tokens, with ONLY that unit quantized (fake-quant in float, the same
arithmetic as the runtime). The k highest scores fall back to float at disable level Lk.
`rank_by="range"` is the msModelSlim-style alternative kept for comparison: the unit's largest input
activation range.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from runtime import topology
from runtime.quant.linear import FakeQuantLinear


def unit_of(module_name: str, unit: str) -> str:
    """'model.layers.3.mlp.down_proj' -> '3' (layer units) or the name itself (linear units)."""
    return topology.unit_of(module_name, unit)


def fake_modules(model, unit: str) -> dict[str, list[FakeQuantLinear]]:
    """Unit -> the FakeQuantLinear modules of a reference model (built with split_parts for linear units)."""
    from runtime.quant.linear import GroupLinear

    out: dict[str, list[FakeQuantLinear]] = {}
    for i, layer in enumerate(model.layers):
        specs = [(getattr(getattr(layer, g.block), g.attr), g.block, g.parts) for g in topology.GROUPS]
        for mod, blk, parts in specs:
            subs = list(mod.parts) if isinstance(mod, GroupLinear) else [mod]
            if len(subs) == 1 and len(parts) > 1:
                subs, parts = subs, (parts[0],)  # fused module: attribute it to its first part
            for m, part in zip(subs, parts):
                if hasattr(m, "enabled"):  # a scheme's float reference (FakeQuantLinear, W8A16Reference)
                    out.setdefault(unit_of(f"model.layers.{i}.{blk}.{part}", unit), []).append(m)
    return out


@torch.inference_mode()
def score_units(model, samples: list[torch.Tensor], unit: str, progress: bool = True) -> dict[str, float]:
    from tqdm import tqdm

    from runtime.engine import Engine

    units = fake_modules(model, unit)
    engine = Engine(model, max_seq_len=max(s.shape[1] for s in samples))
    for ms in units.values():
        for m in ms:
            m.enabled = False
    ref = [F.log_softmax(engine.logits(s)[0].float(), -1) for s in samples]
    scores: dict[str, float] = {}
    for u, ms in tqdm(units.items(), desc="sensitivity", unit="unit", disable=not progress):
        for m in ms:
            m.enabled = True
        kl = 0.0
        for s, lp in zip(samples, ref):
            lq = F.log_softmax(engine.logits(s)[0].float(), -1)
            kl += float((lp.exp() * (lp - lq)).sum(-1).mean())
        scores[u] = kl / len(samples)
        for m in ms:
            m.enabled = False
    for ms in units.values():
        for m in ms:
            m.enabled = True
    return scores


def choose(scores: dict[str, float], k: int) -> list[str]:
    """The k units with the highest scores (ties broken by name, so the choice is deterministic)."""
    return sorted(sorted(scores, key=lambda u: (-scores[u], u))[:k], key=_natural)


def _natural(u: str):
    return [int(t) if t.isdigit() else t for t in u.replace(".", " ").split()]
