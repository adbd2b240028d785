"""Activation statistics of every linear input, collected with hooks on the transformers model.

Linears that share an input (q/k/v; gate/up) are one group, keyed by the first member's HF module name.
Per group we keep the per-input-channel min and max over all calibration tokens (exact) and a uniform
random sample of whole rows (token activations, seeded) for range and smoothing searches. Memory is
bounded by one batch plus `max_rows` rows per group; Ctrl-C stops between batches with a clear message.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

# group key suffix -> the member it is hooked on (its input is the group's input)
GROUPS = {"self_attn.q_proj": ("q_proj", "k_proj", "v_proj"), "self_attn.o_proj": ("o_proj",),
          "mlp.gate_proj": ("gate_proj", "up_proj"), "mlp.down_proj": ("down_proj",)}


@dataclass
class GroupStats:
    ch_min: torch.Tensor  # [in] float32
    ch_max: torch.Tensor  # [in] float32
    rows: torch.Tensor = field(default_factory=lambda: torch.empty(0))  # [R, in] float32 sample
    keys: torch.Tensor = field(default_factory=lambda: torch.empty(0))  # sampling priorities of `rows`
    tokens: int = 0

    @property
    def absmax(self) -> torch.Tensor:
        return torch.maximum(self.ch_max.abs(), self.ch_min.abs())


class StatsCollector:
    def __init__(self, max_rows: int = 512, seed: int = 0):
        self.max_rows = max_rows
        self.gen = torch.Generator().manual_seed(seed)
        self.stats: dict[str, GroupStats] = {}

    def observe(self, key: str, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).float()
        mn, mx = x.amin(0), x.amax(0)
        g = self.stats.get(key)
        # uniform sample without replacement: keep the rows with the largest random keys (priority sampling)
        k = torch.rand(x.shape[0], generator=self.gen)
        if g is None:
            g = self.stats[key] = GroupStats(mn, mx, x[:0].clone(), k[:0])
        else:
            g.ch_min, g.ch_max = torch.minimum(g.ch_min, mn), torch.maximum(g.ch_max, mx)
        rows, keys = torch.cat([g.rows, x]), torch.cat([g.keys, k])
        if rows.shape[0] > self.max_rows:
            top = keys.topk(self.max_rows).indices.sort().values
            rows, keys = rows[top], keys[top]
        g.rows, g.keys = rows.clone(), keys
        g.tokens += x.shape[0]


def collect_stats(hf_model, samples: list[torch.Tensor], max_rows: int = 512, seed: int = 0,
                  progress: bool = True) -> dict[str, GroupStats]:
    """Run `samples` through a transformers LlamaForCausalLM with pre-hooks on each group's first linear."""
    from tqdm import tqdm

    from runtime.errors import UserError

    col = StatsCollector(max_rows, seed)
    handles = []
    for name, mod in hf_model.named_modules():
        for suffix in GROUPS:
            if name.endswith("." + suffix):
                handles.append(mod.register_forward_pre_hook(
                    lambda m, args, key=name: col.observe(key, args[0])))
    if not handles:
        raise UserError("the model has no q_proj/o_proj/gate_proj/down_proj linears: not a Llama-family model")
    try:
        with torch.inference_mode():
            for s in tqdm(samples, desc="calibrate", unit="sample", disable=not progress):
                hf_model(input_ids=s, use_cache=False)
    except KeyboardInterrupt:
        raise UserError("calibration interrupted: nothing was written; run the command again") from None
    finally:
        for h in handles:
            h.remove()
    return col.stats


def load_hf_model(hf_dir, dtype: torch.dtype = torch.float32):
    import transformers
    from transformers import LlamaForCausalLM

    transformers.logging.set_verbosity_error()
    return LlamaForCausalLM.from_pretrained(str(hf_dir), dtype=dtype).eval()
