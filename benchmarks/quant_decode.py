"""Decode speed at batch 1: int8 W8A8 (oneDNN) vs bf16, on a random-weight model with LLaMA-2-7B shapes.

    flock /tmp/lc-cpu.lock python benchmarks/quant_decode.py [--layers 8] [--new 32] [--threads 2] [--w8a16]

--w8a16 adds every decoder linear as scheme w8a16 (int8 weights, bf16 activations: what a float-fallback
unit becomes with `compress quantize --fallback-weights int8`). Decoder weight bytes are printed per model.

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
    ap.add_argument("--w8a16", action="store_true", help="also time W8A16 (int8 weights, float activations)")
    ap.add_argument("--hadamard", action="store_true",
                    help="also time int8 with the online Hadamard rotation of down_proj's input (the default stage)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from compress.synthetic import synthetic_quant_tensors
    from runtime.binding import binder_for
    from runtime.loaders.random_weights import RandomSource
    from runtime.model import Llama
    from runtime.presets import find_preset
    from runtime.topology import GROUPS

    cfg = dataclasses.replace(find_preset(a.preset).config, num_hidden_layers=a.layers)
    src = RandomSource(cfg, seed=0, dtype=torch.bfloat16)
    bf = torch.bfloat16
    models = {"bf16": Llama(cfg, binder_for(src, dtype=bf)).eval()}
    qt = synthetic_quant_tensors(RandomSource(cfg, seed=0, dtype=torch.float32), a.act_method, progress=True)
    models[f"int8 W8A8 {a.act_method}"] = Llama(cfg, binder_for(src, tensors=qt, dtype=bf)).eval()
    if a.w8a16:  # the same int8 weights, float activations
        mods = {k.rsplit(".", 1)[0] for k in qt.tensors if k.endswith(".quant_weight")}
        models["W8A16"] = Llama(cfg, binder_for(src, tensors=qt, dtype=bf, schemes={m: "w8a16" for m in mods})).eval()
    del qt
    if a.hadamard:
        from runtime.quant.qmath import hadamard_block
        b = hadamard_block(cfg.intermediate_size)
        qt = synthetic_quant_tensors(RandomSource(cfg, seed=0, dtype=torch.float32), a.act_method, progress=True,
                                     hadamard_down=b)
        models[f"int8 + hadamard {b}"] = Llama(cfg, binder_for(src, tensors=qt, dtype=bf)).eval()
        del qt
    ms, first = time_decode(models, cfg.vocab_size, a.prompt, a.new, a.reps)
    print(f"{a.preset} shapes, {a.layers} layers, batch 1, prompt {a.prompt}, {a.new} new tokens, "
          f"{a.threads} threads, torch {torch.__version__}")
    base = None
    for k in ms:
        step = statistics.median(ms[k])
        tps = 1000 / step
        base = base or tps
        wb = sum(getattr(getattr(layer, g.block), g.attr).weight_bytes() for layer in models[k].layers
                 for g in GROUPS)
        print(f"  {k:22s} decode {step:8.2f} ms/token  {tps:6.2f} tokens/s  ({tps / base:.2f}x bf16)  "
              f"prefill {statistics.median(first[k]):8.1f} ms  decoder linear weights {wb / 2**20:7.1f} MiB")


if __name__ == "__main__":
    main()
