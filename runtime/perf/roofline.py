"""The memory-bandwidth floor: how fast a decode step could be if it only had to read its bytes once.

A batch-1 decode step reads every weight once (plus the KV cache), so its time is bounded below by
bytes / read bandwidth. The bandwidth is measured on this machine at start-up, with the threads the
run uses, by a plain big-tensor reduction: the same kind of streaming read a GEMV does.
"""
from __future__ import annotations


import torch
from torch import nn


def measure_read_bandwidth(nbytes: int = 512 << 20, repeats: int = 7) -> float:
    """Read bandwidth in bytes/s: median over `repeats` reads of an `nbytes` float32 buffer (far beyond L3),
    by the compiled AVX-512 probe (as fast as llama.cpp's membw_read.c) or torch's sum without it."""
    from .membw import read_bandwidth_bytes

    return read_bandwidth_bytes(nbytes, repeats)[0]


def _tensor_bytes(ts) -> int:
    return sum(t.numel() * t.element_size() for t in ts if t is not None)


def module_weight_bytes(module: nn.Module, skip: tuple[torch.Tensor, ...] = ()) -> int:
    """Bytes of weights inside `module`, each counted once.

    A linear that knows its own footprint (int8 + scales, packed sparse) reports it through
    `weight_bytes()`; anything else is counted by its parameters and buffers.
    """
    total = 0
    skip_ids = {id(t) for t in skip}

    def walk(m: nn.Module) -> None:
        nonlocal total
        if callable(getattr(m, "weight_bytes", None)):
            total += int(m.weight_bytes())
            return
        own = list(m.parameters(recurse=False)) + list(m.buffers(recurse=False))
        total += _tensor_bytes(t for t in own if id(t) not in skip_ids)
        for c in m.children():
            walk(c)

    walk(module)
    return total


def weight_bytes_per_token(model: nn.Module, batch: int = 1) -> int:
    """Bytes of weights a decode step reads: every linear and norm once, `batch` rows of the embedding."""
    embed = getattr(model, "embed_tokens", None)
    rows = batch * embed.shape[1] * embed.element_size() if isinstance(embed, torch.Tensor) else 0
    return rows + module_weight_bytes(model, skip=(embed,) if isinstance(embed, torch.Tensor) else ())


def kv_bytes_per_token(model: nn.Module, batch: int, context: float) -> float:
    """Bytes of K and V a decode step reads at a context of `context` cached positions."""
    cfg = model.config
    n_layers = len(model.layers)
    elt = torch.empty((), dtype=model.dtype).element_size()
    return 2.0 * n_layers * batch * model.n_kv_local * context * cfg.head_dim * elt


def decode_bytes(model: nn.Module, batch: int, seq_in: int, seq_out: int) -> float:
    """Mean bytes read per decode step over a case's decode steps (context seq_in+1 .. seq_in+seq_out-1)."""
    mean_context = seq_in + seq_out / 2.0
    return weight_bytes_per_token(model, batch) + kv_bytes_per_token(model, batch, mean_context)
