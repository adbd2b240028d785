"""Shared by the decode benchmarks: time several models on the same prompt, interleaved, batch 1."""
from __future__ import annotations

import torch

from runtime.engine import Engine
from runtime.sampling import SamplingParams


def time_decode(models: dict, vocab: int, prompt: int, new: int, reps: int
                ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per model: next-token ms and first-token ms of each repetition (models alternate within a rep,
    so a change in machine load hits all of them alike)."""
    ids = torch.randint(3, vocab, (1, prompt), generator=torch.Generator().manual_seed(0))
    engines = {k: Engine(m, max_seq_len=prompt + new + 1) for k, m in models.items()}
    for e in engines.values():
        e.generate(ids, None, 4, SamplingParams(), ignore_eos=True)  # warm-up
    ms: dict[str, list[float]] = {k: [] for k in engines}
    first: dict[str, list[float]] = {k: [] for k in engines}
    for _ in range(reps):
        for k, e in engines.items():
            g = e.generate(ids, None, new, SamplingParams(), ignore_eos=True)
            ms[k].append(g.next_token_ms)
            first[k].append(g.first_token_ms)
    return ms, first
