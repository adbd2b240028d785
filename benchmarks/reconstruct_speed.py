"""Block reconstruction's cost per Adam step at a given width (compress/sparse/reconstruct.py, float32), and the
same call under bf16 autocast (the variant tried for 7B width: measured slower on the Xeon, so not used).

One random-weight transformers LlamaDecoderLayer with the shape's dimensions, 50% magnitude-pruned, fed random
activations; `reconstruct_layer` runs `--epochs` epochs over `--samples` sequences of `--seq` tokens, as it is
and inside `torch.autocast("cpu", dtype=torch.bfloat16)`, alternating for `--rounds` rounds in one process. The default `compress sparse`
reconstruction is 3 epochs x 64 sequences x 512 tokens plus two error passes per layer, so one layer's time is
about (3 x 64) steps + (2 x 64) forwards; the script prints that product next to the measured step time.

    python benchmarks/reconstruct_speed.py --shape llama2-7b --samples 2 --rounds 2 --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from runtime.perf.shapes import SHAPE_NAMES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="llama2-7b", choices=list(SHAPE_NAMES))
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="append the result as one JSON line to this file")
    ap.add_argument("--heap", default="stage", choices=["stage", "glibc"],
                    help="stage: the allocator policy `compress sparse` runs under (runtime/memory.py "
                         "heap_for_layer_loops); glibc: its defaults (process-wide, so one per run: A/B in two runs)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.heap == "stage":
        from runtime.memory import heap_for_layer_loops

        heap_for_layer_loops()
    from transformers import LlamaConfig

    from compress.sparse.reconstruct import reconstruct_layer
    from compress.sparse.streamed import build_layer, layer_kwargs
    from runtime.perf.shapes import shape_config  # the same shape table as `runtime perf --shape`

    cfg = shape_config(a.shape)
    hf = LlamaConfig(**{k: v for k, v in cfg.to_hf().items() if k != "architectures"})
    hf._attn_implementation = "sdpa"
    g = torch.Generator().manual_seed(0)
    names = {"self_attn.q_proj": (cfg.num_attention_heads * cfg.head_dim, cfg.hidden_size),
             "self_attn.k_proj": (cfg.num_key_value_heads * cfg.head_dim, cfg.hidden_size),
             "self_attn.v_proj": (cfg.num_key_value_heads * cfg.head_dim, cfg.hidden_size),
             "self_attn.o_proj": (cfg.hidden_size, cfg.num_attention_heads * cfg.head_dim),
             "mlp.gate_proj": (cfg.intermediate_size, cfg.hidden_size),
             "mlp.up_proj": (cfg.intermediate_size, cfg.hidden_size),
             "mlp.down_proj": (cfg.hidden_size, cfg.intermediate_size)}
    t = {}
    for n, shape in names.items():
        w = torch.randn(shape, generator=g) * shape[1] ** -0.5
        w[w.abs() < w.abs().median()] = 0  # 50% magnitude pruning: the mask reconstruction keeps
        t[f"model.layers.0.{n}.weight"] = w.to(torch.bfloat16)
    for n in ("input_layernorm", "post_attention_layernorm"):
        t[f"model.layers.0.{n}.weight"] = torch.ones(cfg.hidden_size, dtype=torch.bfloat16)
    xs = [torch.randn(1, a.seq, cfg.hidden_size, generator=g) for _ in range(a.samples)]
    res = {"shape": a.shape, "heap": a.heap, "samples": a.samples, "seq": a.seq, "epochs": a.epochs, "threads": a.threads,
           "cpu": next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
                       platform.processor()), "cores": os.cpu_count(), "step_s": {"float32": [], "bf16 autocast": []}}
    for r in range(a.rounds):
        for dtype in ((torch.float32, torch.bfloat16) if r % 2 == 0 else (torch.bfloat16, torch.float32)):
            # the layer and its streams in bf16 as at 7B width; the tuning itself is float32 either way
            layer = build_layer(hf, 0, t, torch.bfloat16)
            kw = layer_kwargs(hf, a.seq, torch.bfloat16)
            inps = [x.to(torch.bfloat16) for x in xs]
            with torch.no_grad():
                targets = [(x + 0.01 * torch.randn(x.shape, generator=g)).to(torch.bfloat16) for x in xs]
            linears = {n: layer.get_submodule(n) for n in names}
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                before, after = reconstruct_layer(layer, linears, inps, [kw] * a.samples, targets, a.epochs, 1e-3)
            dt = time.perf_counter() - t0
            # one call = epochs x samples steps + 2 x samples error forwards (a forward ~1/3 of a step)
            steps = a.epochs * a.samples + 2 * a.samples / 3
            key = "float32" if dtype == torch.float32 else "bf16 autocast"
            res["step_s"][key].append(dt / steps)
            print(f"round {r} {key}: {dt:.1f} s for {a.epochs} epoch(s) x {a.samples} x {a.seq}; "
                  f"{dt / steps:.2f} s per step; error {before:.4g} -> {after:.4g}", flush=True)
            del layer, inps, targets, linears
    default_steps = 3 * 64 + 2 * 64 / 3
    for k, v in res["step_s"].items():
        best = min(v)
        print(f"{k}: best {best:.2f} s per step; x {default_steps:.0f} step-equivalents of the default "
              f"(3 epochs x 64 x 512) = {best * default_steps / 60:.1f} min per layer")
    print(f"bf16 autocast / float32 speed-up: {min(res['step_s']['float32']) / min(res['step_s']['bf16 autocast']):.2f}x")
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
