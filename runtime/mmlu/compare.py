"""Per-subject, per-category and overall accuracy deltas between two MMLU runs (e.g. float vs W8A8), and from
their cache.csv the flips and letter-distribution KL of agreement.py."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError
from .agreement import agreement, format_agreement
from .data import CATEGORIES
from .summary import classes_summary


def _load(d: Path) -> dict[str, dict]:
    d = Path(d)
    for p in (d / "test_result" / "summary_subject_acc.json", d / "summary_subject_acc.json"):
        if p.exists():
            return json.loads(p.read_text())
    raise UserError(f"{d} holds no summary_subject_acc.json (nor test_result/): pass the --out directory "
                    "of a finished `runtime eval-mmlu` run")


def compare_runs(dir_a: str | Path, dir_b: str | Path) -> dict:
    """Deltas (B - A) over the subjects both runs scored, with the same question counts."""
    a, b = _load(Path(dir_a)), _load(Path(dir_b))
    common = [s for s in a if s in b]
    if not common:
        raise UserError(f"{dir_a} and {dir_b} share no subject: nothing to compare")
    uneven = [s for s in common if a[s]["total"] != b[s]["total"]]
    if uneven:
        raise UserError(f"the runs scored different numbers of questions for {', '.join(uneven[:5])}: "
                        "compare runs made with the same --limit")
    sa, sb = {s: a[s] for s in common}, {s: b[s] for s in common}
    ca, cb = classes_summary(sa), classes_summary(sb)
    rows = [(s, sa[s]["total"], sa[s]["acc"], sb[s]["acc"]) for s in common]
    cats = [(c, ca[c]["total"], ca[c]["acc"], cb[c]["acc"]) for c in CATEGORIES if c in ca]
    overall = [("micro (questions)", ca["overall"]["total"], ca["overall"]["micro_acc"], cb["overall"]["micro_acc"]),
               ("macro (subjects)", ca["overall"]["subjects"], ca["overall"]["macro_acc"], cb["overall"]["macro_acc"])]
    only = sorted(set(a) ^ set(b))
    ag = agreement(dir_a, dir_b, {s: sa[s].get("category", "Other") for s in common})
    return {"subjects": rows, "categories": cats, "overall": overall, "not_in_both": only, "agreement": ag}


def format_compare(cmp: dict, name_a: str = "A", name_b: str = "B") -> str:
    """A fixed-width table; accuracies and deltas in percentage points."""
    w = max(24, *(len(r[0]) for r in cmp["subjects"]))
    head = f"{'':{w}} {'n':>5} {name_a[:9]:>9} {name_b[:9]:>9} {'delta':>7}"
    lines = [head, "-" * len(head)]

    def fmt(r):
        return f"{r[0]:{w}} {r[1]:>5} {100 * r[2]:>9.2f} {100 * r[3]:>9.2f} {100 * (r[3] - r[2]):>+7.2f}"

    lines += [fmt(r) for r in cmp["subjects"]]
    lines += ["-" * len(head)] + [fmt(r) for r in cmp["categories"]]
    lines += ["-" * len(head)] + [fmt(r) for r in cmp["overall"]]
    if cmp["not_in_both"]:
        lines.append(f"(left out, scored by one run only: {', '.join(cmp['not_in_both'])})")
    if cmp.get("agreement"):
        lines += ["", format_agreement(cmp["agreement"], name_a, name_b)]
    elif "agreement" in cmp:
        lines.append("(flips and letter KL left out: a run has no test_result/cache.csv)")
    return "\n".join(lines)
