"""Decode and prefill speed next to the memory-bandwidth floor (issue 2's figures).

For each model: batch 1, a prompt of --prompt tokens, --new tokens generated with EOS ignored.
Prints first-token ms, prefill tokens/s, decode tokens/s, and the floor: the read bandwidth measured
here divided by the bytes of weights a decode step reads (KV cache added). llama.cpp's figures for the
same machine kind (2 threads, batch 1, 128-token prompt) are quoted for scale.

    flock /tmp/lc-cpu.lock python benchmarks/decode_speed.py [--models smollm2-fp32,smollm2-bf16,tinyllama-bf16,7b8-bf16]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

LLAMA_CPP = {  # issue 2: llama.cpp F16 on this machine kind, 2 threads, batch 1, 128-token prompt
    "tinyllama-bf16": {"decode": 15.3, "prefill": 89.0},
    "7b8-bf16": {"decode": 11.9, "prefill": 55.0},
}
MODELS = {  # name -> (source kind, argument, dtype)
    "smollm2-fp32": ("preset", "smollm2-135m", torch.float32),
    "smollm2-bf16": ("preset", "smollm2-135m", torch.bfloat16),
    "tinyllama-bf16": ("shape", ("tinyllama-1.1b", None), torch.bfloat16),
    "7b8-bf16": ("shape", ("llama2-7b", 8), torch.bfloat16),
}


def build(name: str, max_seq_len: int):
    from runtime.engine import Engine
    from runtime.loading import build_model

    kind, arg, dtype = MODELS[name]
    if kind == "preset":
        from runtime.loaders import open_source
        from runtime.loading import imported_dir
        from runtime.presets import resolve_model

        src = open_source(imported_dir(resolve_model(arg), progress=False))
    else:
        from runtime.perf.shapes import random_shape_source

        src = random_shape_source(arg[0], arg[1], dtype)
    return Engine(build_model(src, dtype), max_seq_len=max_seq_len)


def measure(engine, prompt: int, new: int, repeats: int) -> dict:
    ids = torch.randint(3, engine.cfg.vocab_size, (1, prompt), generator=torch.Generator().manual_seed(0))
    engine.generate(ids[:, :16], None, 4, ignore_eos=True)  # warm-up
    firsts, nexts = [], []
    for _ in range(repeats):
        g = engine.generate(ids, None, new, ignore_eos=True)
        firsts.append(g.first_token_ms)
        nexts.append(g.next_token_ms)
    return {"first_token_ms": statistics.median(firsts), "next_token_ms": statistics.median(nexts)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--decode-attention", choices=["sdpa", "matmul"], default=None,
                    help="override runtime.model.DECODE_ATTENTION (to compare the two in one run)")
    ap.add_argument("--no-pack", action="store_true", help="bf16 linears on F.linear instead of oneDNN-packed weights")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import runtime.linear
    import runtime.model

    if a.no_pack:
        runtime.linear.PACK_BF16 = False

    if a.decode_attention and hasattr(runtime.model, "DECODE_ATTENTION"):
        runtime.model.DECODE_ATTENTION = a.decode_attention
    print(f"runtime from {runtime.model.__file__}, decode attention "
          f"{getattr(runtime.model, 'DECODE_ATTENTION', 'sdpa (original)')}, bf16 packed linears "
          f"{getattr(runtime.linear, 'PACK_BF16', False)}")
    from runtime.perf.roofline import decode_bytes, measure_read_bandwidth, weight_bytes_per_token

    bw = measure_read_bandwidth()
    print(f"read bandwidth {bw / 1e9:.1f} GB/s with {a.threads} threads; batch 1, prompt {a.prompt}, {a.new} new tokens")
    hdr = f"{'model':16} {'first ms':>9} {'prefill t/s':>11} {'decode t/s':>10} {'floor t/s':>9} {'% floor':>7}  llama.cpp dec/pre"
    print(hdr)
    results = {}
    for name in a.models.split(","):
        t = time.perf_counter()
        eng = build(name, a.prompt + a.new + 8)
        built = time.perf_counter() - t
        m = measure(eng, a.prompt, a.new, a.repeats)
        nbytes = decode_bytes(eng.model, 1, a.prompt, a.new)
        floor_tps = bw / nbytes
        dec = 1e3 / m["next_token_ms"]
        pre = a.prompt * 1e3 / m["first_token_ms"]
        ref = LLAMA_CPP.get(name)
        refs = f"{ref['decode']:.1f} / {ref['prefill']:.0f}" if ref else "-"
        print(f"{name:16} {m['first_token_ms']:9.1f} {pre:11.1f} {dec:10.2f} {floor_tps:9.2f} {100 * dec / floor_tps:6.1f}%  {refs}"
              f"   (built in {built:.1f}s, {weight_bytes_per_token(eng.model) / 1e9:.2f} GB weights/step)")
        results[name] = {**m, "prefill_tps": pre, "decode_tps": dec, "floor_tps": floor_tps,
                         "pct_floor": 100 * dec / floor_tps, "bytes_per_step": nbytes, "llama_cpp": ref}
        del eng
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"bandwidth_gbs": bw / 1e9, "threads": a.threads, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
