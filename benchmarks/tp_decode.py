"""Tensor-parallel decode on this CPU: latency TP=1 vs TP=N, the share of it spent in collectives,
and each rank's resident memory. Random weights with real shapes (speed does not depend on values).

    flock /tmp/lc-cpu.lock python benchmarks/tp_decode.py [--shape tinyllama|7b] [--layers 4] [--tp 1,2]

Each case is its own torchrun launch (gloo, --bind-cpu semantics: rank r pinned to its own cores,
one thread per core). TP=1 is also run with 1 thread so that "one core" and "two cores" compare.
Collective time is measured on rank 0 around each blocking all-reduce / all-gather, so it includes
waiting for the slower rank.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SHAPES = {  # (hidden, ffn, heads, kv heads, vocab)
    "tinyllama": (2048, 5632, 32, 4, 32000),
    "7b": (4096, 11008, 32, 32, 32000),
}


def rss_anon_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(a: argparse.Namespace) -> None:
    import torch
    import torch.distributed as dist

    from runtime.config import ModelConfig
    from runtime.device import parse_dtype
    from runtime.engine import Engine
    from runtime.loaders.random_weights import RandomSource
    from runtime.parallel.dist import init_from_env, pin_cpu
    from runtime.parallel.layers import COMM
    from runtime.parallel.load import build_tp_model

    cores = pin_cpu() if a.bind_cpu else None
    if a.threads:
        torch.set_num_threads(a.threads)
    h, f, nh, nkv, v = SHAPES[a.shape]
    cfg = ModelConfig(hidden_size=h, intermediate_size=f, num_hidden_layers=a.layers, num_attention_heads=nh,
                      num_key_value_heads=nkv, vocab_size=v, max_position_embeddings=4096)
    dt = parse_dtype(a.dtype)
    ctx = init_from_env(torch.device("cpu"))
    base = rss_anon_mib()
    model = build_tp_model(RandomSource(cfg, seed=0, dtype=dt), ctx, dt)
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand back the transient full tensors before measuring
    leaves = [m for m in model.modules() if hasattr(m, "weight_bytes")
              and not any(hasattr(c, "weight_bytes") for c in m.children())]  # not the TP wrappers
    linear_mib = sum(m.weight_bytes() for m in leaves) / 2**20
    rss = rss_anon_mib() - base
    eng = Engine(model, max_seq_len=a.prompt + a.new + 8, eos_ids=[])
    ids = torch.randint(3, v, (1, a.prompt), generator=torch.Generator().manual_seed(0))
    eng.generate(ids, None, 4)  # warm-up
    COMM.enabled = True
    COMM.reset()
    eng.generate(ids, None, 1)
    prefill_comm = COMM.seconds
    rows = []
    for _ in range(a.repeats):
        COMM.reset()
        g = eng.generate(ids, None, a.new)
        rows.append((g.next_token_ms, (COMM.seconds - prefill_comm) * 1e3 / (a.new - 1), COMM.calls))
    best = min(rows)
    info = {"rank": ctx.rank, "cores": cores, "threads": torch.get_num_threads(), "rss_anon_mib": round(rss, 1),
            "linear_weights_mib": round(linear_mib, 1), "next_token_ms": round(best[0], 2),
            "comm_ms_per_token": round(best[1], 3), "comm_share": round(best[1] / best[0], 3)}
    gathered = [None] * ctx.world
    if ctx.world > 1:
        dist.all_gather_object(gathered, info)
    else:
        gathered = [info]
    if ctx.rank == 0:
        Path(a.out).write_text(json.dumps(gathered))


def launch(a: argparse.Namespace, tp: int, threads: int | None, bind: bool) -> list[dict]:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "r.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(tp), __file__,
               "--worker", "--out", str(out), "--shape", a.shape, "--layers", str(a.layers), "--dtype", a.dtype,
               "--prompt", str(a.prompt), "--new", str(a.new), "--repeats", str(a.repeats)]
        cmd += ["--bind-cpu"] if bind else []
        cmd += ["--threads", str(threads)] if threads else []
        env = dict(os.environ, OMP_NUM_THREADS=str(threads or 1), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="tinyllama", choices=sorted(SHAPES))
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--tp", default="1,2")
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--new", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worker", action="store_true")
    p.add_argument("--bind-cpu", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if a.worker:
        return worker(a)
    ncores = len(os.sched_getaffinity(0))
    cases = []
    for tp in [int(x) for x in a.tp.split(",")]:
        if tp == 1:
            cases += [("TP=1, 1 thread", 1, 1, False), (f"TP=1, {ncores} threads", 1, ncores, False)]
        else:
            cases.append((f"TP={tp}, --bind-cpu", tp, None, True))
    print(f"{a.shape} shapes, {a.layers} layers, {a.dtype}, batch 1, prompt {a.prompt}, {a.new} new tokens; "
          f"{ncores} cores\n")
    print("| case | next token ms | collectives ms/token (share) | RssAnon MiB per rank | linear weights MiB per rank |")
    print("|---|---|---|---|---|")
    for name, tp, threads, bind in cases:
        r = launch(a, tp, threads, bind)
        r0 = r[0]
        print(f"| {name} | {r0['next_token_ms']:.1f} | {r0['comm_ms_per_token']:.2f} ({100 * r0['comm_share']:.0f}%) | "
              f"{' / '.join(str(x['rss_anon_mib']) for x in r)} | {' / '.join(str(x['linear_weights_mib']) for x in r)} |",
              flush=True)


if __name__ == "__main__":
    main()
