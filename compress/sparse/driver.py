"""Prune a transformers LlamaForCausalLM layer by layer on calibration token ids.

Sequential, as in Wanda/SparseGPT: the inputs of layer l+1 are the outputs of the already pruned layer l, so
each layer is pruned for the activations it will really see. With reconstruction the dense model's stream is
carried beside it (the targets). Memory: the calibration hidden states of one layer (samples × seq × hidden, twice
with reconstruction) plus one layer's statistics.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm

from runtime.errors import UserError

from .defaults import RECONSTRUCT_EPOCHS, RECONSTRUCT_LR  # re-exported: the sparse stage's defaults
from .masks import nm_mask, parse_pattern, row_mask
from .reconstruct import reconstruct_layer
from .scores import magnitude_score, wanda_score
from .sparsegpt import sparsegpt_prune

LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
METHODS = ("wanda", "magnitude", "sparsegpt")


@dataclass
class PruneConfig:
    sparsity: float = 0.5
    pattern: str = "unstructured"  # or "N:M"
    method: str = "wanda"  # wanda | magnitude | sparsegpt
    dense_layers: tuple[int, ...] = ()  # decoder layers left dense (float-fallback layers, sensitive layers)
    percdamp: float = 0.01  # SparseGPT Hessian damping, fraction of mean diag
    blocksize: int = 128
    # block reconstruction (reconstruct.py): Adam epochs over the calibration samples per pruned layer; 0 = off
    reconstruct_epochs: int = RECONSTRUCT_EPOCHS
    reconstruct_lr: float = RECONSTRUCT_LR

    def check(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown pruning method {self.method!r}: choose one of {', '.join(METHODS)}")
        if self.reconstruct_epochs < 0 or not self.reconstruct_lr > 0:
            raise UserError("--reconstruct-epochs must be >= 0 and --reconstruct-lr > 0")
        if not 0.0 < self.sparsity < 1.0:
            raise UserError(f"--sparsity must be in (0, 1), got {self.sparsity}")
        nm = parse_pattern(self.pattern)
        if nm is not None and abs(self.sparsity - (1 - nm[0] / nm[1])) > 1e-9:
            raise UserError(f"pattern {self.pattern} means sparsity {1 - nm[0] / nm[1]:g}, not {self.sparsity:g}: "
                            f"pass --sparsity {1 - nm[0] / nm[1]:g} or --pattern unstructured")


@dataclass
class LayerStats:
    """Streaming statistics of one linear's input: Σx² per channel (Wanda) and Σxxᵀ (SparseGPT)."""

    sq: torch.Tensor
    hessian: torch.Tensor | None
    tokens: int = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).float()
        self.sq += (x * x).sum(0)
        if self.hessian is not None:
            self.hessian += x.t() @ x
        self.tokens += x.shape[0]


@dataclass
class PruneReport:
    per_module: dict[str, dict] = field(default_factory=dict)  # name -> {"sparsity", "pattern", "method"}
    layer_error: dict[int, float] = field(default_factory=dict)  # measure_only: layer -> ‖Δy‖² / ‖y‖²
    # reconstruction: layer -> (relative output error vs the dense model before tuning, after)
    reconstruction: dict[int, tuple[float, float]] = field(default_factory=dict)


class _Stop(Exception):
    pass


def _layer_out(out):
    return out[0] if isinstance(out, (tuple, list)) else out


@torch.no_grad()
def prune_layer(layer: nn.Module, li: int, inps: list[torch.Tensor], kws: list[dict], cfg: PruneConfig,
                report: PruneReport, dense_inps: list[torch.Tensor] | None = None,
                measure_only: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """Prune (or, measure_only, measure) decoder layer `li` in place: the one per-layer step that both the
    in-memory `prune_model` and the streamed driver (streamed.py) run.

    inps: the layer's inputs (the pruned model's stream; the dense model's with measure_only), one [1, T, hidden]
    tensor per sample, kws the keyword arguments the model passes the layer for each. dense_inps: the dense
    model's stream, given when reconstruction is on (its outputs are the targets). Returns the next layer's
    (inps, dense_inps); the report gains this layer's entries."""
    nm = parse_pattern(cfg.pattern)
    tune = dense_inps is not None
    mods = {n: layer.get_submodule(n) for n in LINEARS}
    prune_this = li not in cfg.dense_layers
    if tune:
        targets = [_layer_out(layer(x, **kw)) for x, kw in zip(dense_inps, kws)]
    if measure_only:
        dense_out = [_layer_out(layer(x, **kw)) for x, kw in zip(inps, kws)]
        saved = {n: m.weight.data.clone() for n, m in mods.items()}
    if prune_this and cfg.method != "magnitude":
        stats = {n: LayerStats(torch.zeros(m.in_features), torch.zeros(m.in_features, m.in_features)
                               if cfg.method == "sparsegpt" else None) for n, m in mods.items()}
        hooks = [m.register_forward_hook(lambda mod, a, o, n=n: stats[n].add(a[0])) for n, m in mods.items()]
        try:
            for x, kw in zip(inps, kws):
                layer(x, **kw)
        finally:
            for hk in hooks:
                hk.remove()
    for n, m in mods.items():
        full = f"model.layers.{li}.{n}"
        if not prune_this:
            report.per_module[full] = {"sparsity": float((m.weight == 0).float().mean()), "pattern": "dense",
                                       "method": "none"}
            continue
        W = m.weight.data
        if cfg.method == "sparsegpt":
            new = sparsegpt_prune(W, stats[n].hessian, cfg.sparsity, nm, cfg.blocksize, cfg.percdamp)
            stats[n].hessian = None  # [in, in] float32: 0.5 GB for down_proj at 7B width
        else:
            score = magnitude_score(W) if cfg.method == "magnitude" else wanda_score(W, stats[n].sq.sqrt())
            mask = row_mask(score, cfg.sparsity) if nm is None else nm_mask(score, *nm)
            new = W.float() * mask
            del score, mask
        m.weight.data = new.to(W.dtype)
        del new, W
        report.per_module[full] = {"sparsity": float((m.weight == 0).float().mean()), "pattern": cfg.pattern,
                                   "method": cfg.method}
    if measure_only:  # error of this layer's pruning alone; the dense outputs feed the next layer
        num = sum(float(((_layer_out(layer(x, **kw)) - y) ** 2).sum()) for x, kw, y in zip(inps, kws, dense_out))
        den = sum(float(((y - x) ** 2).sum()) for x, y in zip(inps, dense_out))  # the layer's own contribution
        report.layer_error[li] = num / max(den, 1e-30)
        for n, m in mods.items():
            m.weight.data = saved[n]
        return dense_out, None
    if tune and prune_this:
        report.reconstruction[li] = reconstruct_layer(layer, mods, inps, kws, targets, cfg.reconstruct_epochs,
                                                      cfg.reconstruct_lr, seed=li)
    # this layer's (pruned) outputs are the next layer's inputs; the dense outputs the next targets' inputs
    return [_layer_out(layer(x, **kw)) for x, kw in zip(inps, kws)], (targets if tune else None)


@torch.no_grad()
def prune_model(model: nn.Module, samples, cfg: PruneConfig, progress: bool = True,
                measure_only: bool = False) -> PruneReport:
    """Prune a whole transformers model held in memory, in place (every decoder linear outside
    cfg.dense_layers). samples: int64 [N, T] token ids (or a list of [1, T]). `compress sparse` runs the
    streamed driver (streamed.py) instead; this one is its reference in the tests (same per-layer step).

    measure_only: leave the model unchanged and record, per decoder layer, the relative output error its pruning
    alone causes on the dense model's activations (report.layer_error): the sensitivity that picks dense layers.
    """
    if isinstance(samples, (list, tuple)):
        samples = torch.cat(list(samples), 0)
    cfg.check()
    layers = model.model.layers
    # 1. the inputs of layer 0, with the keyword arguments (rotary tables, masks) the model passes it
    inps: list[torch.Tensor] = []
    kws: list[dict] = []

    def catch(_mod, args, kwargs):
        hs = args[0] if args else kwargs.pop("hidden_states")
        inps.append(hs)
        kws.append({k: v for k, v in kwargs.items() if k != "hidden_states"})
        raise _Stop

    h = layers[0].register_forward_pre_hook(catch, with_kwargs=True)
    try:
        for i in range(samples.shape[0]):
            try:
                model(samples[i:i + 1], use_cache=False)
            except _Stop:
                pass
    finally:
        h.remove()

    report = PruneReport()
    tune = cfg.reconstruct_epochs > 0 and not measure_only
    dense_inps = list(inps) if tune else None  # the dense model's stream: the targets of reconstruction
    bar = tqdm(range(len(layers)), desc=f"prune {cfg.method} {cfg.pattern} {cfg.sparsity:g}", disable=not progress)
    for li in bar:
        inps, dense_inps = prune_layer(layers[li], li, inps, kws, cfg, report, dense_inps, measure_only)
        if li in report.reconstruction:
            bar.set_postfix(err=f"{report.reconstruction[li][0]:.3g}->{report.reconstruction[li][1]:.3g}")
    return report
