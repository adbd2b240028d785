"""Block reconstruction after pruning: tune the kept weights of one decoder layer, mask frozen, so that the
pruned layer fed the pruned model's activations reproduces the dense layer fed the dense model's.

Why: Wanda and SparseGPT fit each linear to its own inputs, one at a time; the errors of seven linears add up
inside a layer and pile up from layer to layer. Fitting the whole layer's output to the dense model's
(EBFT-style block-wise fine-tuning) corrects both: the layer learns to undo what the layers before it lost.
Only weights that survived pruning move (gradients and Adam updates are masked), so the sparsity and any N:M
pattern are exactly those of the mask.
"""
from __future__ import annotations

import torch
from torch import nn


def _out(o):
    return o[0] if isinstance(o, (tuple, list)) else o


def reconstruct_layer(layer: nn.Module, linears: dict[str, nn.Linear], inps: list[torch.Tensor], kws: list[dict],
                      targets: list[torch.Tensor], epochs: int, lr: float, seed: int = 0) -> tuple[float, float]:
    """Adam on the non-zero weights of `linears` (in place), minimizing ‖layer(inps) - targets‖² / ‖targets -
    inps‖² (the error relative to the layer's own contribution to the residual stream). One sample per step.
    Returns (relative error before, after), measured on the same samples."""
    masks = {n: (m.weight != 0) for n, m in linears.items()}
    dtype = next(layer.parameters()).dtype
    layer.float()  # tuned in float32 even when the model is bf16 (7B): small updates would round away
    saved = {n: m.weight.detach().clone() for n, m in linears.items()}
    params = [m.weight for m in linears.values()]
    rg = {id(p): p.requires_grad for p in layer.parameters()}
    for p in layer.parameters():
        p.requires_grad_(any(p is q for q in params))
    den = sum(float(((t.float() - x.float()) ** 2).sum()) for x, t in zip(inps, targets))

    def rel_err() -> float:
        with torch.no_grad():
            return sum(float(((_out(layer(x.float(), **kw)) - t.float()) ** 2).sum())
                       for x, kw, t in zip(inps, kws, targets)) / max(den, 1e-30)

    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(seed)
    before = rel_err()
    try:
        with torch.enable_grad():
            for _ in range(epochs):
                for i in torch.randperm(len(inps), generator=g).tolist():
                    y = _out(layer(inps[i].float(), **kws[i]))
                    loss = ((y - targets[i].float()) ** 2).sum() * (len(inps) / max(den, 1e-30))
                    opt.zero_grad(set_to_none=False)
                    loss.backward()
                    for n, m in linears.items():
                        m.weight.grad.mul_(masks[n])
                    opt.step()
                    with torch.no_grad():  # Adam's epsilon already keeps pruned entries at 0.0; make it certain
                        for n, m in linears.items():
                            m.weight.mul_(masks[n])
        after = rel_err()
        if after > before:  # the rate was too high for this layer: keep the pruned weights as they were
            with torch.no_grad():
                for n, m in linears.items():
                    m.weight.copy_(saved[n])
            after = before
    finally:
        for p in layer.parameters():
            p.requires_grad_(rg[id(p)])
            p.grad = None
        layer.to(dtype)
    return before, after
