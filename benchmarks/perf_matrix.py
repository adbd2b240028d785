"""Issue 6's report: the LLaMA-2-7B-shaped latency matrix (8 layers) in bf16 and W8A8, with the roofline.

    flock /tmp/lc-cpu.lock python benchmarks/perf_matrix.py [--layers 8] [--batch-sizes 1,8] [--pairs 128:128,512:512]

Random weights with the true shapes (speed does not depend on values). W8A8 uses compress.synthetic's
int8 weights and fixed static activation scales through runtime.binding's binder_for (oneDNN int8).
Full depth (32 layers) is extrapolated per case: decode is memory-bound, so a step's time scales with the
bytes it reads (weights + KV cache, both measured at 8 layers and counted at 32, roofline % held fixed);
prefill is compute-bound and scales with the layers (the LM head runs on one row per sequence only).
Writes each matrix's CSV/PNG under --out and prints a markdown table.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
from pathlib import Path

import torch


def engines(layers: int, kinds: list[str], max_seq_len: int):
    from runtime.engine import Engine
    from runtime.loading import build_model
    from runtime.perf.shapes import FastRandomSource, shape_config

    cfg = shape_config("llama2-7b", layers)
    for kind in kinds:
        if kind == "bf16":
            model = build_model(FastRandomSource(cfg, 0, torch.bfloat16), torch.bfloat16)
        else:
            from compress.synthetic import synthetic_quant_tensors
            from runtime.model import Llama
            from runtime.binding import binder_for

            act = kind.split("-")[1] if "-" in kind else "static"
            src = FastRandomSource(cfg, 0, torch.bfloat16)
            qt = synthetic_quant_tensors(FastRandomSource(cfg, 0, torch.float32), act)
            model = Llama(cfg, binder_for(src, tensors=qt, dtype=torch.bfloat16)).eval()
            del qt
        yield kind, cfg, Engine(model, max_seq_len=max_seq_len)


def extrapolate(row, model, cfg, full_layers: int) -> tuple[float, float]:
    """(first_token_ms, next_token_ms) at full depth from a row measured at len(model.layers) layers."""
    from runtime.perf.roofline import kv_bytes_per_token, module_weight_bytes, weight_bytes_per_token

    L = len(model.layers)
    w = weight_bytes_per_token(model, row.batch)
    per_layer_w = sum(module_weight_bytes(m) for m in model.layers) / L
    kv = kv_bytes_per_token(model, row.batch, row.seq_in + row.seq_out / 2)
    full = w + per_layer_w * (full_layers - L) + kv * full_layers / L
    return row.first_token_ms * full_layers / L, row.next_token_ms * full / (w + kv)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--kinds", default="bf16,w8a8", help="bf16, w8a8 (static scales), w8a8-dynamic")
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--pairs", default="128:128,512:512")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="perf_out/7b")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from runtime.perf import build_cases, measure_read_bandwidth, parse_int_list, parse_pairs, run_performance

    cases = build_cases(parse_int_list(a.batch_sizes, "--batch-sizes"), parse_pairs(a.pairs))
    bw = measure_read_bandwidth()
    print(f"read bandwidth {bw / 1e9:.1f} GB/s, {a.threads} threads, torch {torch.__version__}")
    lines = ["| weights | batch | in:out | first token ms | next token ms | decode tok/s | floor ms | roofline % "
             "| 32-layer first ms | 32-layer next ms |", "|" + "---|" * 10]
    per_kind = {}
    for kind, cfg, eng in engines(a.layers, a.kinds.split(","), max(i + o for _, i, o in
                                                                    [(c.batch, c.seq_in, c.seq_out) for c in cases])):
        res = run_performance(eng, cases, Path(a.out), f"llama2-7b-{a.layers}L-{kind}", bandwidth=bw, resume=False)
        per_kind[kind] = {r.key: r for r in res.rows}
        for r in res.rows:
            if not r.ok:
                lines.append(f"| {kind} | {r.batch} | {r.seq_in}:{r.seq_out} | {r.status} |")
                continue
            f32, n32 = extrapolate(r, eng.model, cfg, 32)
            lines.append(f"| {kind} | {r.batch} | {r.seq_in}:{r.seq_out} | {r.first_token_ms:.0f} | {r.next_token_ms:.1f} "
                         f"| {r.decode_tokens_per_s:.1f} | {r.floor_ms:.1f} | {r.roofline_pct:.0f}% | {f32:.0f} | {n32:.1f} |")
        del eng, res
        gc.collect()
    print("\n".join(lines))
    for kind, rows in per_kind.items():
        for (b, i, o), r in rows.items():
            one = rows.get((1, i, o))
            if b > 1 and one is not None and r.ok and one.ok:
                print(f"{kind} {i}:{o}: batch {b} decode throughput {r.decode_tokens_per_s / one.decode_tokens_per_s:.1f}x batch 1")


if __name__ == "__main__":
    main()
