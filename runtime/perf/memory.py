"""Peak memory per case, and whether a case fits before it is run."""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import nn


def _proc_kb(path: str, key: str) -> int | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak(device: torch.device) -> None:
    """Start a new peak-memory window (CPU: the process's VmHWM, via clear_refs; CUDA: the allocator's peak)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the resident-set high-water mark


def peak_bytes(device: torch.device) -> int | None:
    """Peak memory since reset_peak: resident set (weights included) on CPU, allocated memory on CUDA."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    kb = _proc_kb("/proc/self/status", "VmHWM")
    if kb is None:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb * 1024


def available_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    kb = _proc_kb("/proc/meminfo", "MemAvailable")
    return None if kb is None else kb * 1024


def case_bytes(model: nn.Module, batch: int, seq_in: int, seq_out: int) -> int:
    """Memory a case needs beyond the weights: its KV cache plus the prefill's largest activations.

    Prefill holds the residual stream, fused q/k/v, the fused gate/up output and its SwiGLU product,
    and at worst one layer's attention scores (masked attention falls back to a materialized path).
    """
    cfg = model.config
    elt = torch.empty((), dtype=model.dtype).element_size()
    attn = model.layers[0].self_attn if len(model.layers) else None
    n_heads = attn.n_heads if attn else cfg.num_attention_heads
    n_kv = model.n_kv_local
    total = seq_in + seq_out
    kv = 2 * len(model.layers) * batch * n_kv * total * cfg.head_dim * elt
    tokens = batch * seq_in
    acts = tokens * elt * (3 * cfg.hidden_size + (n_heads + 2 * n_kv) * cfg.head_dim + 3 * cfg.intermediate_size)
    scores = batch * n_heads * seq_in * seq_in * 4
    logits = batch * cfg.vocab_size * 4 * 2
    return int(kv + acts + scores + logits)
