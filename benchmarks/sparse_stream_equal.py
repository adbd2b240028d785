"""The streamed pruning half of `compress sparse` against the whole-model path on a real model (README
"Sparse W8A8"): the same dense-layer choice and the same pruned weights?

    python benchmarks/sparse_stream_equal.py --model smollm2-135m --calib-samples 16 --calib-seq-len 256 \\
        --calib-data ../shared/data/wikitext-2-raw/wiki.valid.raw --disable-level 2 --reconstruct-epochs 1

Runs `prune_model` on the transformers model held whole (the former stage's path) and `prune_streamed`
(the stage's path, one layer in memory) on the same calibration tokens and options, and prints one JSON
line: the two dense-layer choices, the largest relative difference of the per-layer pruning errors, the
number of linears whose pruned weights are bit-identical, the largest absolute difference otherwise, and
the seconds of each path. The tests check the same on tiny random models (tests/test_sparse_streamed.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--calib-data", type=Path, required=True)
    ap.add_argument("--calib-samples", type=int, default=16)
    ap.add_argument("--calib-seq-len", type=int, default=256)
    ap.add_argument("--method", default="wanda")
    ap.add_argument("--pattern", default="unstructured")
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--disable-level", type=int, default=2)
    ap.add_argument("--reconstruct-epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()

    import torch

    from calibration.data import build_calibration
    from calibration.stats import load_hf_model
    from compress.sparse.driver import LINEARS, PruneConfig, prune_model
    from compress.sparse.stage import choose_dense_layers
    from compress.sparse.streamed import prune_dtype, prune_streamed
    from runtime.loaders import open_source
    from runtime.loading import imported_dir, tokenizer_for
    from runtime.presets import resolve_model

    torch.set_num_threads(a.threads)
    ref = resolve_model(a.model)
    hf_dir = imported_dir(ref, progress=False)
    src = open_source(hf_dir)
    tok = tokenizer_for(ref, src)
    calib = build_calibration(a.calib_data, tok, a.calib_samples, a.calib_seq_len, 0)
    cfg = PruneConfig(a.sparsity, a.pattern, a.method, reconstruct_epochs=a.reconstruct_epochs)
    dtype = prune_dtype(src.config)

    t0 = time.time()
    model = load_hf_model(hf_dir, dtype)
    mcfg = dataclasses.replace(cfg, method="magnitude" if cfg.method == "magnitude" else "wanda")
    err_mem = prune_model(model, calib.samples, mcfg, progress=False, measure_only=True).layer_error
    dense_mem = sorted(sorted(err_mem, key=lambda i: -err_mem[i])[: a.disable_level])
    rep_mem = prune_model(model, calib.samples, dataclasses.replace(cfg, dense_layers=tuple(dense_mem)),
                          progress=False)
    t_mem = time.time() - t0

    t0 = time.time()
    dense_st, err_st = choose_dense_layers(src, hf_dir, calib.samples, cfg, a.disable_level, progress=False)
    with tempfile.TemporaryDirectory() as td:
        rep_st = prune_streamed(src, hf_dir, calib.samples, dataclasses.replace(cfg, dense_layers=tuple(dense_st)),
                                out_dir=Path(td) / "pruned", progress=False)
        t_st = time.time() - t0
        pruned = open_source(Path(td) / "pruned")
        same, worst, n = 0, 0.0, 0
        for li, layer in enumerate(model.model.layers):
            for name in LINEARS:
                w_mem = layer.get_submodule(name).weight.detach()
                w_st = pruned.get(f"model.layers.{li}.{name}.weight").to(w_mem.dtype)
                n += 1
                if torch.equal(w_mem, w_st):
                    same += 1
                else:
                    worst = max(worst, float((w_mem.float() - w_st.float()).abs().max()))
    rel = max(abs(err_mem[i] - err_st[i]) / max(abs(err_mem[i]), 1e-30) for i in err_mem) if err_mem else 0.0
    print(json.dumps({
        "model": ref.name, "calib": f"{a.calib_samples}x{a.calib_seq_len}", "method": a.method, "pattern": a.pattern,
        "reconstruct_epochs": a.reconstruct_epochs, "dtype": str(dtype).removeprefix("torch."),
        "dense_whole_model": dense_mem, "dense_streamed": dense_st, "layer_error_max_rel_diff": rel,
        "linears_bit_identical": f"{same}/{n}", "max_abs_diff_otherwise": worst,
        "reconstruction_equal": rep_mem.reconstruction == rep_st.reconstruction,
        "seconds_whole_model": round(t_mem, 1), "seconds_streamed": round(t_st, 1)}))


if __name__ == "__main__":
    main()
