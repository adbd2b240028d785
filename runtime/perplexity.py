"""WikiText-2 perplexity: the raw test file tokenized whole, cut into windows, each scored on its own.

Protocol: windows of `window` tokens every `stride` tokens (512/512: non-overlapping); every token of a
window but the first is predicted from the tokens before it in that window. With stride < window only
the last `stride` tokens of each later window are scored (the usual sliding-window variant).
ppl = exp(total NLL / scored tokens).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .errors import UserError
from .presets import shared_dir


def default_text() -> Path:
    return shared_dir() / "data" / "wikitext-2-raw" / "wiki.test.raw"


def token_windows(ids: list[int], window: int = 512, stride: int = 512,
                  limit: int | None = None) -> list[tuple[torch.Tensor, int]]:
    """[(ids [1, T], first scored position)] in order; the last partial window is kept if it scores anything."""
    if window < 2 or stride < 1 or stride > window:
        raise UserError(f"--window {window} / --stride {stride}: need window >= 2 and 1 <= stride <= window")
    out = []
    for start in range(0, max(len(ids) - 1, 1), stride):
        chunk = ids[start:start + window]
        first = 1 if start == 0 else max(1, len(chunk) - stride)
        if len(chunk) < 2 or first >= len(chunk):
            break
        out.append((torch.tensor([chunk], dtype=torch.int64), first))
        if limit is not None and len(out) >= limit:
            break
        if start + window >= len(ids):
            break
    return out


@dataclass
class PerplexityResult:
    ppl: float
    nll: float
    tokens: int
    windows: int


def load_windows(tokenizer, path: Path | None = None, window: int = 512, stride: int = 512,
                 limit: int | None = None) -> list[tuple[torch.Tensor, int]]:
    path = Path(path) if path else default_text()
    if not path.exists():
        raise UserError(f"perplexity text {path} not found: pass --data PATH (e.g. wikitext-2-raw/wiki.test.raw)")
    ids = tokenizer.encode(path.read_text(encoding="utf-8"))
    return token_windows(ids, window, stride, limit)


@torch.inference_mode()
def perplexity(model, windows: list[tuple[torch.Tensor, int]], progress: bool = False,
               desc: str = "perplexity") -> PerplexityResult:
    """`model` is a runtime Llama (or anything an Engine wraps)."""
    from tqdm import tqdm

    from .engine import Engine

    if not windows:
        raise UserError("no perplexity windows: the text is shorter than two tokens")
    engine = Engine(model, max_seq_len=max(w.shape[1] for w, _ in windows))
    nll, n = 0.0, 0
    for ids, first in tqdm(windows, desc=desc, disable=not progress, unit="win"):
        logits = engine.logits(ids)[0, first - 1:-1].float()
        target = ids[0, first:].to(logits.device)
        nll += float(F.cross_entropy(logits, target, reduction="sum"))
        n += target.numel()
    return PerplexityResult(math.exp(nll / n), nll / n, n, len(windows))
