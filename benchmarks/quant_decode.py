"""Decode speed at batch 1: int8 W8A8 (oneDNN) vs bf16, on a random-weight model with LLaMA-2-7B shapes.

    flock /tmp/lc-cpu.lock python benchmarks/quant_decode.py [--layers 8] [--new 32] [--threads 2]

Both models are built in this one process and timed alternately (same prompt, greedy, EOS ignored);
tokens/s = 1000 / mean decode-step ms (prefill excluded). lm_head and embeddings stay bf16 in both.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="llama2-7b")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--act-method", default="static")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from compress.synthetic import synthetic_quant_tensors
    from runtime.engine import Engine
    from runtime.linear import FloatBinder
    from runtime.loaders.random_weights import RandomSource
    from runtime.model import Llama
    from runtime.presets import find_preset
    from runtime.quant.binder import QuantBinder
    from runtime.sampling import SamplingParams

    cfg = dataclasses.replace(find_preset(a.preset).config, num_hidden_layers=a.layers)
    src = RandomSource(cfg, seed=0, dtype=torch.bfloat16)
    models = {"bf16": Llama(cfg, FloatBinder(src, torch.bfloat16)).eval()}
    qt = synthetic_quant_tensors(RandomSource(cfg, seed=0, dtype=torch.float32), a.act_method, progress=True)
    models[f"int8 W8A8 {a.act_method}"] = Llama(cfg, QuantBinder(src, qt, torch.bfloat16)).eval()
    del qt
    ids = torch.randint(3, cfg.vocab_size, (1, a.prompt), generator=torch.Generator().manual_seed(0))
    engines = {k: Engine(m, max_seq_len=a.prompt + a.new + 1) for k, m in models.items()}
    for e in engines.values():
        e.generate(ids, None, 4, SamplingParams(), ignore_eos=True)  # warm-up
    ms: dict[str, list[float]] = {k: [] for k in engines}
    first: dict[str, list[float]] = {k: [] for k in engines}
    for _ in range(a.reps):
        for k, e in engines.items():
            g = e.generate(ids, None, a.new, SamplingParams(), ignore_eos=True)
            ms[k].append(g.next_token_ms)
            first[k].append(g.first_token_ms)
    print(f"{a.preset} shapes, {a.layers} layers, batch 1, prompt {a.prompt}, {a.new} new tokens, "
          f"{a.threads} threads, torch {torch.__version__}")
    base = None
    for k in engines:
        step = statistics.median(ms[k])
        tps = 1000 / step
        base = base or tps
        print(f"  {k:22s} decode {step:8.2f} ms/token  {tps:6.2f} tokens/s  ({tps / base:.2f}x bf16)  "
              f"prefill {statistics.median(first[k]):8.1f} ms")


if __name__ == "__main__":
    main()
