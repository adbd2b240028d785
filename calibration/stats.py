"""Activation statistics of every linear input, collected with hooks on the transformers model.

Linears that share an input (q/k/v; gate/up) are one group, keyed by the first member's HF module name.
Per group we keep the per-input-channel min and max over all calibration tokens (exact) and a uniform
random sample of whole rows (token activations, seeded) for range and smoothing searches. Memory is
bounded by one batch plus `max_rows` rows per group; Ctrl-C stops between batches with a clear message.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from runtime.topology import GROUPS as TOPOLOGY

# group key suffix -> its parts; the group is hooked on its first part (its input is the group's input)
GROUPS = {g.key: g.parts for g in TOPOLOGY}


@dataclass
class GroupStats:
    ch_min: torch.Tensor  # [in] float32
    ch_max: torch.Tensor  # [in] float32
    rows: torch.Tensor = field(default_factory=lambda: torch.empty(0))  # [R, in] float32 sample
    keys: torch.Tensor = field(default_factory=lambda: torch.empty(0))  # sampling priorities of `rows`
    tokens: int = 0
    xtx: torch.Tensor | None = None  # [in, in] float32 sum of x^T x over all tokens (GPTQ's Hessian / 2)
    peak_rows: torch.Tensor = field(default_factory=lambda: torch.empty(0))  # [P, in] rows of largest absmax
    peak_vals: torch.Tensor = field(default_factory=lambda: torch.empty(0))  # [P] their absmax

    @property
    def absmax(self) -> torch.Tensor:
        return torch.maximum(self.ch_max.abs(), self.ch_min.abs())

    def weighted_rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows [R, in], weights [R]) whose weighted sums estimate sums over ALL calibration tokens.

        Why: a few tokens (the attention sink at position 0) carry "massive activations" hundreds of times
        larger than the rest; a uniform sample of 512 rows out of 32k tokens holds about one of them, so a
        range search on it alone would clip them, and clipping them wrecks the model. The peak rows are
        counted exactly (weight 1), the uniform sample stands for the other tokens."""
        if self.peak_rows.numel() == 0:
            return self.rows, torch.full((self.rows.shape[0],), self.tokens / max(1, self.rows.shape[0]))
        thr = float(self.peak_vals.min())
        rest = self.rows[self.rows.abs().amax(1) < thr]
        n_rest = max(0, self.tokens - self.peak_rows.shape[0])
        w_rest = torch.full((rest.shape[0],), n_rest / max(1, rest.shape[0]))
        return torch.cat([self.peak_rows, rest]), torch.cat([torch.ones(self.peak_rows.shape[0]), w_rest])


class StatsCollector:
    def __init__(self, max_rows: int = 512, seed: int = 0, hessian: bool = False, peak_rows: int | None = None):
        self.max_rows = max_rows
        self.n_peak = max(8, max_rows // 8) if peak_rows is None else peak_rows
        self.hessian = hessian
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
        if self.n_peak > 0:  # the rows of largest absmax, exactly (ties: earliest first, deterministic)
            pr, pv = torch.cat([g.peak_rows.reshape(-1, x.shape[1]), x]), torch.cat([g.peak_vals, x.abs().amax(1)])
            if pv.shape[0] > self.n_peak:
                top = pv.topk(self.n_peak, sorted=False).indices.sort().values
                pr, pv = pr[top], pv[top]
            g.peak_rows, g.peak_vals = pr.clone(), pv.clone()
        if self.hessian:  # exact over every token; in^2 floats per group, so only asked for where it fits
            xtx = x.t() @ x
            g.xtx = xtx if g.xtx is None else g.xtx + xtx


def collect_stats(hf_model, samples: list[torch.Tensor], max_rows: int = 512, seed: int = 0,
                  progress: bool = True, hessian: bool = False, skip_positions: int = 0) -> dict[str, GroupStats]:
    """Run `samples` through a transformers LlamaForCausalLM with pre-hooks on each group's first linear.

    hessian=True also sums x^T x of every group input (for GPTQ). skip_positions=k leaves the first k
    positions of every sample out of the statistics (a fixed prefix whose keys/values are computed in
    float, so no quantized linear ever sees it; benchmarks/sink_prefix_probe.py)."""
    from tqdm import tqdm

    from runtime.errors import UserError

    col = StatsCollector(max_rows, seed, hessian)
    handles = []
    for name, mod in hf_model.named_modules():
        for suffix in GROUPS:
            if name.endswith("." + suffix):
                handles.append(mod.register_forward_pre_hook(
                    lambda m, args, key=name: col.observe(key, args[0][:, skip_positions:])))
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
