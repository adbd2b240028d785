"""TPBinder: wraps any inner binder, asks it for this rank's local linear, adds the collectives.

The inner binder (FloatBinder, QuantBinder, ...) must read its tensors through the sliced views of
sources.py (or from a cut unit, which holds the slices already): the TP binder only changes the
spec's sizes to the local ones and wraps row-parallel / vocab linears. Column-parallel linears are
returned as they are: their `out_splits` are the local sizes, which is how the model ends up with
its share of heads (runtime/model.py reads head counts off them).
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ..linear import Binder, LinearSpec
from .layers import RowParallelLinear, VocabParallelLinear
from .plan import TPPlan


class TPBinder:
    def __init__(self, inner: Binder, plan: TPPlan, rank: int, group=None):
        self.inner = inner
        self.plan = plan
        self.rank = rank
        self.group = group
        self.dtype: torch.dtype = inner.dtype
        self.device: torch.device = inner.device

    def tensor(self, name: str) -> torch.Tensor:
        return self.inner.tensor(name)  # norms and embeddings: replicated

    def linear(self, spec: LinearSpec) -> nn.Module:
        p, r = self.plan, self.rank
        if p.world == 1:
            return self.inner.linear(spec)
        if spec.parallel == "column":
            local = replace(spec, out_features=tuple(p.local_out(part, r) for part in spec.parts))
            m = self.inner.linear(local)
        elif spec.parallel == "row":
            (part,) = spec.parts
            m = RowParallelLinear(self.inner.linear(replace(spec, in_features=p.local_in(part))), self.group)
        elif spec.parallel == "vocab":
            local = replace(spec, out_features=(p.local_out("lm_head", r),))
            m = VocabParallelLinear(self.inner.linear(local), p.vocab, p.vocab_chunk, p.world, self.group)
        else:
            raise ValueError(f"unknown parallel kind {spec.parallel!r} for {spec.prefix}")
        return m
