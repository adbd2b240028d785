"""WikiText-2 perplexity: the test text tokenized whole, cut into windows, each scored on its own.

Text recipe (`recipe`): "hf" (the default) is what the field's figures use — Hugging Face's
`wikitext-2-raw-v1` test split, whose dataset builder makes one row per line of wiki.test.raw (the line
with its newline, or "" when it is blank: 4358 rows), joined with "\n\n" as in transformers' perplexity
guide and llm-compressor's evaluations. "raw" tokenizes the file exactly as it is (llama.cpp's
`llama-perplexity -f wiki.test.raw`). The two give different token streams, so their figures differ
(SmolLM2-135M, first 20 windows: 35.88 hf, 35.21 raw); always say which one a figure used.

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
from .kv_prefix import prefix_length
from .presets import shared_dir


def default_text() -> Path:
    return shared_dir() / "data" / "wikitext-2-raw" / "wiki.test.raw"


RECIPES = ("hf", "raw")


def hf_wikitext_rows(text: str) -> list[str]:
    """The rows Hugging Face's `wikitext` builder yields for a raw file: each line as Python's text-mode
    iteration splits it (newline kept), a whitespace-only line as ""."""
    import io

    return [row if row.strip() else "" for row in io.StringIO(text, newline=None)]


def recipe_text(raw: str, recipe: str = "hf") -> str:
    """The string that is tokenized under a text recipe (see the module docstring)."""
    if recipe == "hf":
        return "\n\n".join(hf_wikitext_rows(raw))
    if recipe == "raw":
        return raw
    raise UserError(f"--text-recipe {recipe!r} is not known: use one of {', '.join(RECIPES)}")


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


def load_ids(tokenizer, path: Path | None = None, recipe: str = "hf") -> list[int]:
    """The whole text's token ids under `recipe`."""
    path = Path(path) if path else default_text()
    if not path.exists():
        raise UserError(f"perplexity text {path} not found: pass --data PATH (e.g. wikitext-2-raw/wiki.test.raw)")
    # newline="" keeps the file's own line ends, so "raw" is the bytes as written; "hf" splits them itself
    with open(path, encoding="utf-8", newline="") as f:
        raw = f.read()
    return tokenizer.encode(recipe_text(raw, recipe))


def load_windows(tokenizer, path: Path | None = None, window: int = 512, stride: int = 512,
                 limit: int | None = None, recipe: str = "hf") -> list[tuple[torch.Tensor, int]]:
    return token_windows(load_ids(tokenizer, path, recipe), window, stride, limit)


@torch.inference_mode()
def perplexity(model, windows: list[tuple[torch.Tensor, int]], progress: bool = False,
               desc: str = "perplexity") -> PerplexityResult:
    """`model` is a runtime Llama (or anything an Engine wraps)."""
    from tqdm import tqdm

    from .engine import Engine

    if not windows:
        raise UserError("no perplexity windows: the text is shorter than two tokens")
    engine = Engine(model, max_seq_len=max(w.shape[1] for w, _ in windows) + prefix_length(model))
    nll, n = 0.0, 0
    for ids, first in tqdm(windows, desc=desc, disable=not progress, unit="win"):
        logits = engine.logits(ids)[0, first - 1:-1].float()
        target = ids[0, first:].to(logits.device)
        nll += float(F.cross_entropy(logits, target, reduction="sum"))
        n += target.numel()
    return PerplexityResult(math.exp(nll / n), nll / n, n, len(windows))
