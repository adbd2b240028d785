"""Parallel wrappers around any inner linear: row-parallel (all-reduce after) and vocab (all-gather)."""
from __future__ import annotations

import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class CommStats:
    """Time spent in collectives, when `enabled` (benchmarks turn it on; it adds a sync per call)."""

    def __init__(self) -> None:
        self.enabled = False
        self.reset()

    def reset(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def add(self, t0: float) -> None:
        self.seconds += time.perf_counter() - t0
        self.calls += 1


COMM = CommStats()


class RowParallelLinear(nn.Module):
    """y = sum over ranks of inner(x_local): the inner linear holds this rank's input columns.

    A bias must be added once: the slicer gives it to rank 0 only, so the inner linear may add it.
    """

    def __init__(self, inner: nn.Module, group=None):
        super().__init__()
        self.inner = inner
        self.group = group
        self.out_splits = tuple(inner.out_splits)
        if hasattr(inner, "scale_sync"):  # int8 with per-token inputs: scale by the whole row's absmax
            inner.scale_sync = self._row_max

    def _row_max(self, s: torch.Tensor) -> torch.Tensor:
        s = s.contiguous()
        dist.all_reduce(s, op=dist.ReduceOp.MAX, group=self.group)
        return s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        t0 = time.perf_counter() if COMM.enabled else 0.0
        dist.all_reduce(y, group=self.group)
        if COMM.enabled:
            COMM.add(t0)
        return y

    def weight_bytes(self) -> int:
        return self.inner.weight_bytes() if hasattr(self.inner, "weight_bytes") else 0


class VocabParallelLinear(nn.Module):
    """The LM head split on vocabulary rows; every rank gets the full logits through an all-gather.

    Ranks hold ceil(V/N) rows (the last may hold fewer: its output is zero-padded for the gather and
    the padding is cut off after).
    """

    def __init__(self, inner: nn.Module, vocab: int, chunk: int, world: int, group=None):
        super().__init__()
        self.inner = inner
        self.group = group
        self.vocab, self.chunk, self.world = vocab, chunk, world
        self.out_splits = (vocab,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        if y.shape[-1] < self.chunk:
            y = F.pad(y, (0, self.chunk - y.shape[-1]))
        y = y.contiguous()
        t0 = time.perf_counter() if COMM.enabled else 0.0
        parts = [torch.empty_like(y) for _ in range(self.world)]
        dist.all_gather(parts, y, group=self.group)
        if COMM.enabled:
            COMM.add(t0)
        return torch.cat(parts, -1)[..., : self.vocab]

    def weight_bytes(self) -> int:
        return self.inner.weight_bytes() if hasattr(self.inner, "weight_bytes") else 0
