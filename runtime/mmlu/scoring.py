"""From questions to letter logits through the Engine.

Two paths that give the same predictions (tested):
- `plain`: every prompt in full through `Engine.logits`, batches left-padded by the engine;
- `prefix` (default): a subject's header and shots are the same for all its questions, so their
  keys/values are computed once per subject (`Engine.prefill_prefix`) and only each question's own
  tokens are run (`Engine.logits_after_prefix`). On SmolLM2 that is ~112 of ~723 tokens per question.
The shared part is the longest run of token ids common to the prefix and every full prompt, so the
ids the model sees are exactly those of the full prompt, whatever the tokenizer merges at the seam.
Batches hold questions of similar length (sorted), which keeps the padding small.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from ..engine import Engine, PrefixCache
from ..errors import UserError
from .data import Question
from .prompt import few_shot_prefix, full_prompt


@dataclass
class Item:
    q: Question
    shots: int  # shots that fit (fewer than asked when the prompt is too long)
    ids: list[int]  # the full prompt's token ids


def encode_items(tokenizer, questions: list[Question], dev: list[Question], shots: int, fmt: str,
                 max_len: int) -> list[Item]:
    """Tokenize each full prompt; drop one shot at a time until it fits in max_len (the protocol)."""
    items = []
    for q in questions:
        k = min(shots, len(dev))
        while True:
            ids = tokenizer.encode(full_prompt(q, dev, k, fmt))
            if len(ids) <= max_len:
                break
            if k == 0:
                raise UserError(f"{q.subject} question {q.index} needs {len(ids)} tokens even with no shots, "
                                f"more than --max-seq-len {max_len}: raise --max-seq-len")
            k -= 1
        items.append(Item(q, k, ids))
    return items


def _common(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def batches(items: list[Item], batch: int, key) -> Iterator[list[Item]]:
    """Fixed batches of similar-length items: the same items always form the same batches, so a
    resumed run computes every batch exactly as an uninterrupted one would."""
    order = sorted(items, key=lambda it: (key(it), it.q.index))
    for i in range(0, len(order), batch):
        yield order[i:i + batch]


class PlainScorer:
    """Each full prompt through Engine.logits."""

    def __init__(self, engine: Engine, letter_ids: list[int]):
        self.engine, self.letter_ids = engine, letter_ids

    def groups(self, items: list[Item], batch: int) -> Iterator[tuple[None, list[list[Item]]]]:
        yield None, list(batches(items, batch, lambda it: len(it.ids)))

    def score(self, ctx, items: list[Item]) -> torch.Tensor:
        S = max(len(it.ids) for it in items)
        ids = torch.zeros(len(items), S, dtype=torch.int64)
        mask = torch.zeros(len(items), S, dtype=torch.int64)
        for i, it in enumerate(items):
            ids[i, S - len(it.ids):] = torch.tensor(it.ids)
            mask[i, S - len(it.ids):] = 1
        out = self.engine.logits(ids, mask, last_only=True)[:, -1]
        return out[:, self.letter_ids].float().cpu()


class PrefixScorer:
    """The shots once per (subject, shots) group, then only each question's own tokens."""

    def __init__(self, engine: Engine, letter_ids: list[int], tokenizer, dev: dict[str, list[Question]], fmt: str):
        self.engine, self.letter_ids, self.tok, self.dev, self.fmt = engine, letter_ids, tokenizer, dev, fmt

    def groups(self, items: list[Item], batch: int) -> Iterator[tuple[dict, list[list[Item]]]]:
        by: dict[tuple[str, int], list[Item]] = {}
        for it in items:
            by.setdefault((it.q.subject, it.shots), []).append(it)
        for (subject, k), group in by.items():
            prefix = self.tok.encode(few_shot_prefix(subject, self.dev[subject], k, self.fmt))
            # at least one token of each prompt stays outside the prefix: its logits are the answer
            L = min(min(_common(prefix, it.ids), len(it.ids) - 1) for it in group)
            ctx = {"prefix": prefix[:L], "cache": None, "group": group, "batch": min(batch, len(group))}
            yield ctx, list(batches(group, batch, lambda it: len(it.ids)))

    def score(self, ctx, items: list[Item]) -> torch.Tensor:
        L = len(ctx["prefix"])
        if L == 0:  # nothing shared (no shots and no BOS): plain scoring
            return PlainScorer(self.engine, self.letter_ids).score(None, items)
        if ctx["cache"] is None:  # built lazily: a resumed run skips groups already done
            room = max(len(it.ids) for it in ctx["group"]) - L
            ctx["cache"] = self.engine.prefill_prefix(ctx["prefix"], ctx["batch"], room)
        pc: PrefixCache = ctx["cache"]
        out = self.engine.logits_after_prefix(pc, [it.ids[L:] for it in items])
        return out[:, self.letter_ids].float().cpu()
