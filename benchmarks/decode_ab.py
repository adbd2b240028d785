"""Decode latency with the project's kernels (A) against torch/oneDNN (B, LLAMA_COMPRESS_KERNELS=off), interleaved.

    PYTHONPATH=. python benchmarks/decode_ab.py --shape llama2-7b --layers 8 --scheme w8a8 [--batch 1] [--rounds 5]
    PYTHONPATH=. python benchmarks/decode_ab.py --model smollm2-135m --scheme bf16

Both models live in one process; rounds run A, B then B, A (then the read-bandwidth probe), so drift on a
shared machine hits both alike. Prints ms/token (median over rounds, mean over the decode steps of each run),
the floor (bytes per step / measured bandwidth) and the percentage of it each reaches.
"""
from __future__ import annotations

import argparse
import os
import statistics

import torch


def build(args, kernels: bool):
    """A: the defaults; B: LLAMA_COMPRESS_KERNELS=off, or the settings of --b-env (e.g. LLAMA_COMPRESS_AMX=off)."""
    for kv in args.b_env:
        k, v = kv.split("=", 1)
        if kernels:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    if not args.b_env:
        os.environ["LLAMA_COMPRESS_KERNELS"] = "on" if kernels else "off"
    from runtime.engine import Engine
    from runtime.loading import build_model

    dt = torch.bfloat16
    if args.model:
        from runtime.loaders import open_source
        from runtime.loading import imported_dir
        from runtime.presets import resolve_model

        if args.scheme != "bf16":
            raise SystemExit("--model runs bf16 here; use --quant artifacts with runtime perf for int8")
        src = open_source(imported_dir(resolve_model(args.model)))
        model = build_model(src, dt, "cpu")
    else:
        from runtime.perf.random_schemes import RandomSchemeBinder
        from runtime.perf.shapes import random_shape_source

        src = random_shape_source(args.shape, args.layers, dt)
        model = build_model(src, dt, "cpu", RandomSchemeBinder(src, args.scheme, dt, "cpu"))
    return Engine(model, max_seq_len=args.seq_in + args.seq_out + 8)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--shape", default="llama2-7b")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--scheme", default="bf16")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq-in", type=int, default=32)
    ap.add_argument("--seq-out", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--b-env", action="append", default=[],
                    help="VAR=VALUE set for B only (repeatable); default B is LLAMA_COMPRESS_KERNELS=off")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from runtime.kernels.paths import describe_decode_paths
    from runtime.perf.membw import read_bandwidth_bytes
    from runtime.perf.roofline import decode_bytes

    engines = {"kernels": build(a, True), ("B " + ",".join(a.b_env) if a.b_env else "oneDNN"): build(a, False)}
    os.environ["LLAMA_COMPRESS_KERNELS"] = "on"
    for kv in a.b_env:
        os.environ.pop(kv.split("=", 1)[0], None)
    ids = torch.randint(3, 1000, (a.batch, a.seq_in), generator=torch.Generator().manual_seed(0))
    for e in engines.values():
        e.generate(ids[:, :8], None, 3, ignore_eos=True)  # warm-up
    nbytes = decode_bytes(next(iter(engines.values())).model, a.batch, a.seq_in, a.seq_out)
    ms = {k: [] for k in engines}
    first = {k: [] for k in engines}
    bws = []
    for r in range(a.rounds):
        order = list(engines.items())
        for k, e in (order if r % 2 == 0 else order[::-1]):  # A, B then B, A: no order effect
            g = e.generate(ids, None, a.seq_out, ignore_eos=True)
            ms[k].append(g.next_token_ms)
            first[k].append(g.first_token_ms)
        bws.append(read_bandwidth_bytes(threads=a.threads)[0])
    bw = statistics.median(bws)
    floor = nbytes / bw * 1e3
    name = a.model or f"{a.shape}-{a.layers}L"
    print(f"{name} {a.scheme} batch {a.batch}, {a.threads} threads; read bandwidth {bw / 1e9:.1f} GB/s "
          f"(median of {a.rounds}, {min(bws) / 1e9:.1f}-{max(bws) / 1e9:.1f}); {nbytes / 1e6:.0f} MB per step, "
          f"floor {floor:.1f} ms; load {os.getloadavg()[0]:.1f}")
    for k, e in engines.items():
        m = statistics.median(ms[k])
        print(f"  {k:30s} {m:8.1f} ms/token ({min(ms[k]):.1f}-{max(ms[k]):.1f})  {100 * floor / m:5.1f}% of floor  "
              f"{a.batch * 1e3 / m:6.1f} tok/s  prefill {statistics.median(first[k]):.0f} ms  "
              f"[{describe_decode_paths(e.model)}]")


if __name__ == "__main__":
    main()
