"""`runtime perf` end to end on stories260K: files, cases, and clear errors for bad knobs."""
import csv

import pytest
from typer.testing import CliRunner

from runtime.cli import app

runner = CliRunner()


def test_perf_command_single_case_and_pairs(tmp_path):
    r = runner.invoke(app, ["perf", "--model", "stories260k", "--dtype", "fp32", "--threads", "1", "--batch-sizes", "1,2",
                            "--pairs", "8:4,16:2", "--max-seq-len", "64", "--out", str(tmp_path), "--no-plot"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "multibatch_performance_stories260k-fp32_cpu.csv"
    rows = list(csv.DictReader(out.open()))
    assert [(r["batch"], r["seq_in"], r["seq_out"]) for r in rows] == [("1", "8", "4"), ("1", "16", "2"),
                                                                     ("2", "8", "4"), ("2", "16", "2")]
    assert all(r["status"] == "ok" and float(r["first_token_ms"]) > 0 for r in rows)
    assert "summary (batch 1, mean over 2 cases)" in r.output

    r = runner.invoke(app, ["perf", "--model", "stories260k", "--dtype", "fp32", "--batch", "1", "--seq-in", "8",
                            "--seq-out", "3", "--out", str(tmp_path / "one"), "--no-plot", "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert len(list(csv.DictReader(next((tmp_path / "one").glob("*.csv")).open()))) == 1


@pytest.mark.parametrize("args, words", [
    (["--shape", "llama2-70b"], "not one of"),
    (["--batch", "1"], "needs all of --batch, --seq-in and --seq-out"),
    (["--pairs", "128"], "SEQ_IN:SEQ_OUT"),
    (["--batch-sizes", "1,x"], "comma-separated integers"),
    (["--model", "stories260k", "--layers", "2"], "--layers cuts a random --shape"),
    (["--model", "stories260k", "--scheme", "w8a8"], "give --shape too"),
    (["--shape", "tinyllama-1.1b", "--layers", "1", "--scheme", "int4"], "not one of"),
])
def test_perf_bad_knobs(tmp_path, args, words):
    r = runner.invoke(app, ["perf", "--out", str(tmp_path), *args])
    assert r.exit_code == 2
    assert words in r.output


@pytest.mark.parametrize("scheme, path", [("w8a8", ("int8 vpdpbusd kernel", "oneDNN int8")),
                                          ("w8a8-sparse24", ("packed-sparse",)),
                                          ("bf16", ("bf16 vdpbf16ps kernel", "oneDNN bf16"))])
def test_perf_random_scheme_runs_its_kernels_and_says_which(tmp_path, scheme, path):
    """--scheme fills a random shape with that scheme's modules; the CSV names the decode path and counts
    the scheme's bytes (int8 half of bf16, packed 2:4 about 0.63 of int8) in the roofline."""
    r = runner.invoke(app, ["perf", "--shape", "tinyllama-1.1b", "--layers", "1", "--scheme", scheme, "--threads", "1",
                            "--batch", "1", "--seq-in", "8", "--seq-out", "3", "--out", str(tmp_path), "--no-plot"])
    assert r.exit_code == 0, r.output
    (row,) = list(csv.DictReader(next(tmp_path.glob("*.csv")).open()))
    assert row["status"] == "ok" and any(p in row["decode_path"] for p in path), row["decode_path"]
    assert f"decode path: {row['decode_path']}" in r.output
    layer = 2048 * (2048 + 2 * 256 + 2048) + 3 * 2048 * 5632  # one tinyllama layer's weights
    head = 32000 * 2048 * 2 + 2048 * 2  # bf16 lm_head (+ one embedding row)
    per_weight = {"bf16": 2, "w8a8": 1, "w8a8-sparse24": 0.5 + 1 / 8}[scheme]
    assert abs(float(row["decode_bytes_gb"]) * 1e9 - head - layer * per_weight) < 0.03 * layer
