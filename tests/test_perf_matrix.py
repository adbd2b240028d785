"""The latency matrix on a tiny model: cases, columns, finite latencies, the summary, skips and resume."""
import csv
import json
import math

import pytest
import torch

from runtime.config import ModelConfig
from runtime.engine import Engine
from runtime.errors import UserError
from runtime.loaders.random_weights import RandomSource
from runtime.loading import build_model
from runtime.perf import build_cases, grid_pairs, parse_pairs, parse_range, read_csv, run_performance
from runtime.perf.report import COLUMNS

TINY = ModelConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=256, max_position_embeddings=512)


@pytest.fixture(scope="module")
def engine():
    return Engine(build_model(RandomSource(TINY, seed=0), torch.float32), max_seq_len=64)


@pytest.fixture(scope="module")
def matrix(engine, tmp_path_factory):
    out = tmp_path_factory.mktemp("perf")
    cases = build_cases([1, 2], grid_pairs((2, 4), (1, 3)) + [(60, 8)])  # 4+4 .. and one too long
    res = run_performance(engine, cases, out, "tiny", bandwidth=20e9, progress=False, echo=lambda s: None)
    return cases, res, out


def test_csv_has_every_case_and_column(matrix):
    cases, res, out = matrix
    assert res.csv_path.name == "multibatch_performance_tiny_cpu.csv"
    with open(res.csv_path, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        got = [(int(r["batch"]), int(r["seq_in"]), int(r["seq_out"])) for r in reader]
    assert got == [(c.batch, c.seq_in, c.seq_out) for c in cases]
    assert len(cases) == 2 * (2 * 2 + 1)


def test_latencies_positive_and_finite(matrix):
    _, res, _ = matrix
    rows = read_csv(res.csv_path)
    ok = [r for r in rows if r.ok]
    assert len(ok) == 8
    for r in ok:
        for v in (r.first_token_ms, r.total_s, r.tokens_per_s, r.peak_memory_gb, r.floor_ms):
            assert math.isfinite(v) and v > 0, r
        if r.seq_out > 1:
            assert math.isfinite(r.next_token_ms) and r.next_token_ms > 0
            assert 0 < r.roofline_pct == pytest.approx(100 * r.floor_ms / r.next_token_ms, rel=1e-3)
        else:  # one token made: there is no decode step to average
            assert math.isnan(r.next_token_ms)
        # total = prefill + every decode step, and throughput follows from it
        assert r.total_s * 1e3 >= r.first_token_ms
        assert r.tokens_per_s == pytest.approx(r.batch * r.seq_out / r.total_s, rel=1e-3)
        assert r.weight_dtype == "fp32"


def test_too_long_case_is_skipped_with_reason(matrix):
    _, res, _ = matrix
    skipped = [r for r in res.rows if not r.ok]
    assert [(r.batch, r.seq_in, r.seq_out) for r in skipped] == [(1, 60, 8), (2, 60, 8)]
    assert all("max_seq_len 64" in r.status for r in skipped)


def test_summary_is_mean_of_batch1_rows(matrix):
    _, res, out = matrix
    rows = [r for r in read_csv(res.csv_path) if r.ok and r.batch == 1]
    s = json.loads((out / "multibatch_performance_tiny_cpu_summary.json").read_text())
    assert s["cases"] == len(rows) == 4
    assert s["first_token_ms"] == pytest.approx(sum(r.first_token_ms for r in rows) / len(rows), rel=1e-3)
    decode = [r.next_token_ms for r in rows if not math.isnan(r.next_token_ms)]
    assert s["next_token_ms"] == pytest.approx(sum(decode) / len(decode), rel=1e-3)
    assert "batch 1" in s["line"]


def test_plot_written(matrix):
    _, res, _ = matrix
    assert res.png_path is not None and res.png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_keeps_finished_rows(engine, tmp_path):
    cases = build_cases([1], [(4, 2), (8, 2)])
    first = run_performance(engine, cases[:1], tmp_path, "tiny", bandwidth=20e9, progress=False, plot=False,
                            echo=lambda s: None)
    # an interrupted run leaves its finished rows in the side file; a rerun must reuse them, not re-measure
    side = tmp_path / ".multibatch_performance_tiny_cpu.partial.jsonl"
    from dataclasses import asdict

    from runtime.perf.runner import run_settings

    marked = {**asdict(first.rows[0]), "first_token_ms": 12345.0}
    settings = run_settings(engine, "tiny", "cpu", first.rows[0].weight_dtype, 0, True, None)
    side.write_text(json.dumps({"_settings": settings}) + "\n" + json.dumps(marked) + "\n")
    again = run_performance(engine, cases, tmp_path, "tiny", bandwidth=20e9, progress=False, plot=False,
                            echo=lambda s: None)
    assert again.rows[0].first_token_ms == 12345.0
    assert again.rows[1].first_token_ms != 12345.0 and again.rows[1].ok
    assert not side.exists()


def test_case_parsing():
    assert grid_pairs(parse_range("5,11", "r"), parse_range("5,11", "r"))[0] == (32, 32)
    assert len(grid_pairs((5, 11), (5, 11))) == 36
    assert parse_pairs("256:64, 512:512") == [(256, 64), (512, 512)]
    for bad in ("256", "a:b", "0:4", ""):
        with pytest.raises(UserError):
            parse_pairs(bad)
    with pytest.raises(UserError):
        parse_range("11,5", "--seq-in-range")
