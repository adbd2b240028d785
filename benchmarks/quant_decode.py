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
from decode_timing import time_decode  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="llama2-7b")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--act-method", default="static")
    ap.add_argument("--hadamard", action="store_true",
                    help="also time int8 with the online Hadamard rotation of down_proj's input (the default stage)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from compress.synthetic import synthetic_quant_tensors
    from runtime.linear import FloatBinder
    from runtime.loaders.random_weights import RandomSource
    from runtime.model import Llama
    from runtime.presets import find_preset
    from runtime.quant.binder import QuantBinder

    cfg = dataclasses.replace(find_preset(a.preset).config, num_hidden_layers=a.layers)
    src = RandomSource(cfg, seed=0, dtype=torch.bfloat16)
    models = {"bf16": Llama(cfg, FloatBinder(src, torch.bfloat16)).eval()}
    qt = synthetic_quant_tensors(RandomSource(cfg, seed=0, dtype=torch.float32), a.act_method, progress=True)
    models[f"int8 W8A8 {a.act_method}"] = Llama(cfg, QuantBinder(src, qt, torch.bfloat16)).eval()
    del qt
    if a.hadamard:
        from runtime.quant.qmath import hadamard_block
        b = hadamard_block(cfg.intermediate_size)
        qt = synthetic_quant_tensors(RandomSource(cfg, seed=0, dtype=torch.float32), a.act_method, progress=True,
                                     hadamard_down=b)
        models[f"int8 + hadamard {b}"] = Llama(cfg, QuantBinder(src, qt, torch.bfloat16)).eval()
        del qt
    ms, first = time_decode(models, cfg.vocab_size, a.prompt, a.new, a.reps)
    print(f"{a.preset} shapes, {a.layers} layers, batch 1, prompt {a.prompt}, {a.new} new tokens, "
          f"{a.threads} threads, torch {torch.__version__}")
    base = None
    for k in ms:
        step = statistics.median(ms[k])
        tps = 1000 / step
        base = base or tps
        print(f"  {k:22s} decode {step:8.2f} ms/token  {tps:6.2f} tokens/s  ({tps / base:.2f}x bf16)  "
              f"prefill {statistics.median(first[k]):8.1f} ms")


if __name__ == "__main__":
    main()
