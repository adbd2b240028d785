"""`runtime eval-mmlu --compare`: flips and the letter-distribution KL from the two runs' cache.csv."""
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from runtime.mmlu import compare_runs
from runtime.mmlu.agreement import letter_kl
from runtime.mmlu.cache import Row, write_final
from runtime.mmlu.summary import subject_summary

CATS = {"anatomy": "Other", "astronomy": "STEM", "world_religions": "Humanities"}


def _run(d, rows):
    write_final(d / "test_result" / "cache.csv", rows)
    (d / "test_result" / "summary_subject_acc.json").write_text(json.dumps(subject_summary(rows, CATS)))


def _rows(seed, n=12):
    rng = np.random.default_rng(seed)
    out = []
    for s in CATS:
        for i in range(n):
            p = rng.dirichlet([1.0] * 4)
            out.append((s, i, "ABCD"[(i * 7) % 4], p))
    return out


def _as_rows(base, perturb):
    rows = []
    for s, i, exp, p in base:
        q = perturb(p, i)
        q = q / q.sum()
        rows.append(Row(s, i, exp, "ABCD"[int(np.argmax(q))], tuple(float(f"{x:.6f}") for x in q), 5))
    return rows


def test_flips_and_kl_against_independent_count(tmp_path):
    base = _rows(0)
    a = _as_rows(base, lambda p, i: p)
    rng = np.random.default_rng(1)
    b = _as_rows(base, lambda p, i: p * rng.uniform(0.3, 1.7, 4) if i % 3 == 0 else p)
    _run(tmp_path / "a", a)
    _run(tmp_path / "b", b)
    ag = compare_runs(tmp_path / "a", tmp_path / "b")["agreement"]
    o = ag["overall"]
    c2w = sum(x.correct and not y.correct for x, y in zip(a, b))
    w2c = sum(y.correct and not x.correct for x, y in zip(a, b))
    same = sum(x.predicted == y.predicted for x, y in zip(a, b))
    assert (o["correct_to_wrong"], o["wrong_to_correct"], o["flips"]) == (c2w, w2c, c2w + w2c)
    assert o["questions"] == len(a) and o["same_prediction"] == pytest.approx(same / len(a))
    assert c2w + w2c > 0 and same < len(a)  # the perturbation changed answers, so the counts are tested
    pa = np.array([x.scores for x in a])
    pb = np.array([y.scores for y in b])
    pa, pb = pa / pa.sum(1, keepdims=True), pb / pb.sum(1, keepdims=True)
    kl = (pa * np.log(pa / pb)).sum(1)  # no zero probabilities in these rows, so no floor is needed
    assert o["letter_kl_mean"] == pytest.approx(kl.mean(), rel=1e-6)
    assert ag["STEM"]["questions"] == 12 and "Social Sciences" not in ag
    assert sum(o["pred_b"].values()) == len(a)
    assert compare_runs(tmp_path / "a", tmp_path / "a")["agreement"]["overall"]["letter_kl_mean"] == 0.0

    from runtime.cli import app

    res = CliRunner().invoke(app, ["eval-mmlu", "--compare", str(tmp_path / "a"), str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert "flips" in res.output and "KL(A||B)" in res.output and "predicted letters" in res.output


def test_letter_kl_floor_and_missing_cache(tmp_path):
    assert letter_kl((1.0, 0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0)) == 0.0
    # a zero printed in cache.csv is floored, so KL stays finite and large
    k = letter_kl((1.0, 0.0, 0.0, 0.0), (0.0, 1.0, 0.0, 0.0))
    assert math.isfinite(k) and k > 10
    base = _rows(2, n=3)
    _run(tmp_path / "a", _as_rows(base, lambda p, i: p))
    _run(tmp_path / "b", _as_rows(base, lambda p, i: p))
    (tmp_path / "b" / "test_result" / "cache.csv").unlink()
    c = compare_runs(tmp_path / "a", tmp_path / "b")
    assert c["agreement"] is None
    from runtime.mmlu import format_compare

    assert "left out" in format_compare(c)
