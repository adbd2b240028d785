"""Accuracy summaries: by subject, by category (over questions), micro and macro overall."""
from __future__ import annotations

from .cache import Row
from .data import CATEGORIES


def _acc(correct: int, total: int) -> float:
    return round(correct / total, 6) if total else float("nan")


def subject_summary(rows: list[Row], mapping: dict[str, str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in rows:
        s = out.setdefault(r.subject, {"category": mapping.get(r.subject, "Other"), "correct": 0, "total": 0})
        s["correct"] += int(r.correct)
        s["total"] += 1
    for s in out.values():
        s["acc"] = _acc(s["correct"], s["total"])
    return out


def classes_summary(subjects: dict[str, dict]) -> dict[str, dict]:
    """Each category averaged over its questions, plus the overall micro (questions) and macro (subjects)."""
    out: dict[str, dict] = {}
    for cat in CATEGORIES:
        mine = [s for s in subjects.values() if s["category"] == cat]
        if mine:
            c, t = sum(s["correct"] for s in mine), sum(s["total"] for s in mine)
            out[cat] = {"acc": _acc(c, t), "correct": c, "total": t, "subjects": len(mine)}
    c, t = sum(s["correct"] for s in subjects.values()), sum(s["total"] for s in subjects.values())
    macro = sum(s["correct"] / s["total"] for s in subjects.values()) / len(subjects) if subjects else float("nan")
    out["overall"] = {"micro_acc": _acc(c, t), "macro_acc": round(macro, 6), "correct": c, "total": t,
                      "subjects": len(subjects)}
    return out
