"""MMLU scoring speed (questions/s) on a fixed subset: full prompts vs the per-subject prefix KV cache,
batch sizes, fp32 vs bf16. All variants run in one process, one after the other.

    flock /tmp/lc-cpu.lock /work/venv/bin/python benchmarks/mmlu_speed.py [--limit 16] [--threads 2]
"""
from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
import time
from pathlib import Path

import torch

from runtime.engine import Engine
from runtime.loaders import open_source
from runtime.loading import build_model, imported_dir
from runtime.mmlu import run_mmlu
from runtime.presets import resolve_model
from runtime.tokenizer import load_tokenizer

SUBJECTS = ["high_school_geography", "college_physics", "high_school_us_history"]  # short, mid, long prompts
VARIANTS = [("fp32", False, 1), ("fp32", False, 8), ("fp32", True, 1), ("fp32", True, 4), ("fp32", True, 8),
            ("bf16", True, 1), ("bf16", True, 4)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    d = imported_dir(resolve_model("smollm2-135m"), progress=False)
    tok = load_tokenizer(d)
    models = {dt: build_model(open_source(d), {"fp32": torch.float32, "bf16": torch.bfloat16}[dt]) for dt in ("fp32", "bf16")}
    tmp = Path(tempfile.mkdtemp())
    base = None
    print(f"SmolLM2-135M, {len(SUBJECTS)} subjects x {a.limit} questions, 5-shot hendrycks, {a.threads} threads")
    print(f"{'dtype':6} {'prefix':6} {'batch':>5} {'q/s':>7} {'s':>7} {'pred. = fp32 full b1':>21}")
    for dt, prefix, b in VARIANTS:
        out = tmp / f"{dt}-{prefix}-{b}"
        eng = Engine(models[dt], max_seq_len=2048)
        run_mmlu(eng, tok, None, tmp / "warm", subjects=SUBJECTS[:1], limit=1, batch=b, progress=False,
                 prefix_cache=prefix)  # first-call allocations out of the timing
        shutil.rmtree(tmp / "warm")
        t = time.perf_counter()
        r = run_mmlu(eng, tok, None, out, subjects=SUBJECTS, limit=a.limit, batch=b, progress=False, prefix_cache=prefix)
        s = time.perf_counter() - t
        preds = [row[3] for row in csv.reader(open(out / "test_result" / "cache.csv"))][1:]
        base = base or preds
        same = sum(p == q for p, q in zip(preds, base))
        print(f"{dt:6} {str(prefix):6} {b:>5} {r['overall']['total'] / s:>7.2f} {s:>7.1f} {same:>14}/{len(base)}", flush=True)
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
