"""Beyond accuracy: how far run B's answers moved from run A's, question by question.

"Accuracy is not all you need" (Dutta et al., 2024): a compressed model can keep its accuracy while
many answers change, and at chance level accuracy deltas are noise. From the two runs' cache.csv
(per question the softmax over the A-D logits): flips (correct -> wrong, wrong -> correct), the
share of identical predictions, and the mean KL divergence KL(P_A || P_B) of the four-letter
distributions; per category and overall, over the questions both runs scored.
"""
from __future__ import annotations

import math
from pathlib import Path

from ..errors import UserError
from .cache import Row, read_cache
from .data import CATEGORIES, LETTERS

# cache.csv keeps 6 decimals: a letter printed as 0.000000 is given this floor before renormalising
PROB_FLOOR = 1e-6


def _cache_rows(d: Path) -> dict[tuple[str, int], Row] | None:
    for p in (Path(d) / "test_result" / "cache.csv", Path(d) / "cache.csv"):
        if p.exists():
            return read_cache(p)
    return None


def letter_kl(p: tuple[float, ...], q: tuple[float, ...]) -> float:
    """KL(P || Q) in nats between two four-letter distributions as stored (floored and renormalised)."""
    p = [max(x, PROB_FLOOR) for x in p]
    q = [max(x, PROB_FLOOR) for x in q]
    sp, sq = sum(p), sum(q)
    return max(0.0, sum((a / sp) * math.log((a / sp) / (b / sq)) for a, b in zip(p, q)))


def _tally() -> dict:
    return {"questions": 0, "same": 0, "correct_to_wrong": 0, "wrong_to_correct": 0, "kl_sum": 0.0,
            "pred_a": dict.fromkeys(LETTERS, 0), "pred_b": dict.fromkeys(LETTERS, 0)}


def agreement(dir_a: str | Path, dir_b: str | Path, category_of: dict[str, str]) -> dict | None:
    """Per category and overall tallies over the questions in both cache.csv files; None if a run has none."""
    a, b = _cache_rows(Path(dir_a)), _cache_rows(Path(dir_b))
    if a is None or b is None:
        return None
    keys = sorted(k for k in a if k in b and k[0] in category_of)
    if not keys:
        raise UserError(f"{dir_a} and {dir_b} share no scored question in cache.csv: compare runs of the same subjects")
    bad = [k for k in keys if a[k].expected != b[k].expected]
    if bad:
        raise UserError(f"the runs disagree on the expected answer of {bad[0][0]} question {bad[0][1]}: "
                        "they were made on different MMLU data; compare runs of the same --data")
    out = {c: _tally() for c in CATEGORIES}
    out["overall"] = _tally()
    for k in keys:
        ra, rb = a[k], b[k]
        for t in (out[category_of[k[0]]], out["overall"]):
            t["questions"] += 1
            t["same"] += ra.predicted == rb.predicted
            t["correct_to_wrong"] += ra.correct and not rb.correct
            t["wrong_to_correct"] += rb.correct and not ra.correct
            t["kl_sum"] += letter_kl(ra.scores, rb.scores)
            t["pred_a"][ra.predicted] += 1
            t["pred_b"][rb.predicted] += 1
    res = {}
    for c, t in out.items():
        if t["questions"]:
            n = t.pop("questions")
            res[c] = {"questions": n, "same_prediction": t["same"] / n,
                      "flips": t["correct_to_wrong"] + t["wrong_to_correct"],
                      "correct_to_wrong": t["correct_to_wrong"], "wrong_to_correct": t["wrong_to_correct"],
                      "letter_kl_mean": t["kl_sum"] / n, "pred_a": t["pred_a"], "pred_b": t["pred_b"]}
    return res


def format_agreement(ag: dict, name_a: str = "A", name_b: str = "B") -> str:
    head = (f"{'':24} {'n':>6} {'same':>7} {'flips':>6} {'c->w':>6} {'w->c':>6} {'KL(A||B)':>9}")
    lines = [f"answers of {name_b} against {name_a} (c->w: right in {name_a}, wrong in {name_b}; "
             f"KL over the A-D distributions, nats):", head, "-" * len(head)]
    for c, r in ag.items():
        lines.append(f"{c:24} {r['questions']:>6} {100 * r['same_prediction']:>6.2f}% {r['flips']:>6} "
                     f"{r['correct_to_wrong']:>6} {r['wrong_to_correct']:>6} {r['letter_kl_mean']:>9.5f}")
    o = ag["overall"]
    hist = lambda h: " ".join(f"{k} {v}" for k, v in h.items())  # noqa: E731
    lines.append(f"predicted letters: {name_a}: {hist(o['pred_a'])}; {name_b}: {hist(o['pred_b'])}")
    return "\n".join(lines)
