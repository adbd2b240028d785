"""Decode GEMV kernels (AMX and AVX-512 paths, forced) against torch/oneDNN at LLaMA-2-7B shapes: GB/s of weights read per call, A/B interleaved.

    PYTHONPATH=. python benchmarks/decode_kernels.py [--m 1,8] [--rounds 5]

Each round times every op once (median of `--reps` calls over a weight set larger than the LLC, cycled so
no call finds its weights in cache), so drift of a shared machine hits A and B alike; the table prints the
median over rounds. The bandwidth column beside it is runtime.perf.membw's read probe in the same sitting.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from runtime.kernels import decode
from runtime.perf.membw import read_bandwidth


def _time(fn, reps: int) -> float:
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", default="1,8")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    N, K, copies = 11008, 4096, 4  # gate/up-sized matrices; 4 copies > LLC
    wb = [torch.randn(N, K).bfloat16() for _ in range(copies)]
    wpk = [torch.ops.mkldnn._reorder_linear_weight(w, None) for w in wb]
    wq = [torch.randint(-127, 128, (N, K), dtype=torch.int8) for _ in range(copies)]
    wqp = [torch.ops.onednn.qlinear_prepack(w, None) for w in wq]
    rs = [w.sum(1, dtype=torch.int32) for w in wq]
    ws = torch.rand(N) * 0.01
    zp = torch.zeros(N, dtype=torch.long)
    for M in [int(v) for v in a.m.split(",")]:
        xb = torch.randn(M, K).bfloat16()
        xu = torch.randint(0, 256, (M, K), dtype=torch.uint8)
        i = [0]

        def nxt():
            i[0] = (i[0] + 1) % copies
            return i[0]

        amx_ok = decode.amx_reason() is None
        ops = {
            "bf16 kernel, AMX": (lambda: decode.bf16_gemv(xb, wb[nxt()], None, True, amx=True), N * K * 2),
            "bf16 kernel, AVX-512": (lambda: decode.bf16_gemv(xb, wb[nxt()], None, True, amx=False), N * K * 2),
            "bf16 oneDNN packed": (lambda: torch.ops.mkldnn._linear_pointwise(xb, wpk[nxt()], None, "none", [], ""), N * K * 2),
            "bf16 F.linear plain": (lambda: torch.nn.functional.linear(xb, wb[nxt()]), N * K * 2),
            "int8 kernel, AMX": (lambda: decode.int8_linear(xb, wq[nxt()], rs[i[0]], ws, None, 0.05, -3.0, None, True, amx=True), N * K),
            "int8 kernel, AVX-512": (lambda: decode.int8_linear(xb, wq[nxt()], rs[i[0]], ws, None, 0.05, -3.0, None, True, amx=False), N * K),
            "int8 oneDNN u8s8": (lambda: torch.ops.onednn.qlinear_pointwise(xu, 0.05, 125, wqp[nxt()], ws, zp, None, 1.0, 0,
                                                                               torch.bfloat16, "none", [], ""), N * K),
        }
        if not amx_ok:
            ops = {k: v for k, v in ops.items() if "AMX" not in k}
        if M > 8:
            ops = {k: v for k, v in ops.items() if "AVX-512" not in k}
        res = {k: [] for k in ops}
        bw = []
        for _ in range(a.rounds):
            bw.append(read_bandwidth(threads=a.threads))
            for k, (fn, nbytes) in ops.items():
                fn()
                res[k].append(nbytes / _time(fn, a.reps) / 1e9)
        print(f"M={M}  read-bandwidth probe {statistics.median(bw):.1f} GB/s (median of {a.rounds})")
        for k, v in res.items():
            print(f"  {k:30s} {statistics.median(v):6.1f} GB/s   ({min(v):.1f}-{max(v):.1f})")


if __name__ == "__main__":
    main()
