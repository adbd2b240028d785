"""Decode speed at batch 1 on a random-weight model with LLaMA-2-7B shapes: bf16, dense int8 W8A8 (oneDNN) and
packed sparse int8 W8A8 (the tile-by-tile kernel of runtime/sparse), plus the linears alone.

    flock /tmp/lc-cpu.lock python benchmarks/sparse_speed.py [--layers 4] [--new 32] [--threads 2]

All models are built in this one process and timed alternately (same prompt, greedy, EOS ignored);
tokens/s = 1000 / median decode-step ms (prefill excluded). Sparse weights: the dense int8 weights with the
lowest |w| pruned to 50% per row (unstructured) or 2 of every 4 (2:4); speed does not depend on which.
lm_head and embeddings stay bf16 everywhere.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics

import torch
from decode_timing import time_decode  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


class MemPacked:
    """The PackedTensors interface over in-memory packed matrices."""

    def __init__(self, packed: dict):
        self._p = packed

    def has(self, module: str) -> bool:
        return module in self._p

    def packed(self, module: str):
        return self._p[module]


def sparsify(qt, pattern: str):
    """Prune the synthetic int8 weights by |q| (per row or 2:4) and pack them."""
    from compress.memsource import DictTensors
    from compress.sparse.masks import nm_mask, row_mask
    from runtime.sparse.format import pack_int8

    tensors = dict(qt.tensors) if hasattr(qt, "tensors") else dict(qt._t)
    packed = {}
    for name in [n for n in tensors if n.endswith(".quant_weight")]:
        q = tensors[name]
        score = q.abs().float()
        mask = row_mask(score, 0.5) if pattern == "unstructured" else nm_mask(score, 2, 4)
        q = q * mask
        tensors[name] = q
        packed[name[: -len(".quant_weight")]] = pack_int8(q)
    return DictTensors(tensors), MemPacked(packed)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="llama2-7b")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from compress.synthetic import synthetic_quant_tensors
    from runtime.linear import FloatBinder
    from runtime.loaders.random_weights import RandomSource
    from runtime.model import Llama
    from runtime.presets import find_preset
    from runtime.quant.binder import QuantBinder
    from runtime.sparse import kernel
    from runtime.sparse.binder import SparseBinder

    if not kernel.available():
        raise SystemExit(f"packed-sparse kernel unavailable: {kernel.why_unavailable()}")
    cfg = dataclasses.replace(find_preset(a.preset).config, num_hidden_layers=a.layers)
    src = RandomSource(cfg, seed=0, dtype=torch.bfloat16)
    models = {"bf16": Llama(cfg, FloatBinder(src, torch.bfloat16)).eval()}
    qt = synthetic_quant_tensors(RandomSource(cfg, seed=0, dtype=torch.float32), "static")
    models["dense int8 W8A8"] = Llama(cfg, QuantBinder(src, qt, torch.bfloat16)).eval()
    wbytes = {"bf16": sum(m.weight.numel() * 2 for m in models["bf16"].layers.modules() if hasattr(m, "weight")
                          and m.weight.dim() == 2)}
    wbytes["dense int8 W8A8"] = sum(t.numel() for n, t in qt.tensors.items() if n.endswith(".quant_weight")) \
        if hasattr(qt, "tensors") else None
    for pattern in ("unstructured", "2:4"):
        dt, pk = sparsify(qt, pattern)
        key = f"packed sparse int8 {'50%' if pattern == 'unstructured' else '2:4'}"
        models[key] = Llama(cfg, SparseBinder(src, dt, pk, torch.bfloat16, mode="kernel")).eval()
        wbytes[key] = sum(p.nbytes() for p in pk._p.values())
        del dt
    del qt
    ms, first = time_decode(models, cfg.vocab_size, a.prompt, a.new, a.reps)
    print(f"{a.preset} shapes, {a.layers} layers, batch 1, prompt {a.prompt}, {a.new} new tokens, "
          f"{a.threads} threads, torch {torch.__version__}")
    base = None
    for k in ms:
        step = statistics.median(ms[k])
        tps = 1000 / step
        base = base or tps
        wb = wbytes.get(k)
        print(f"  {k:28s} decode {step:8.2f} ms/token  {tps:6.2f} tokens/s  ({tps / base:.2f}x bf16)  "
              f"prefill {statistics.median(first[k]):8.1f} ms"
              + (f"  decoder weights {wb / 2**20:7.0f} MiB" if wb else ""))


if __name__ == "__main__":
    main()
