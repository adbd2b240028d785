"""WikiText-2 perplexity of sparse W8A8 on SmolLM2-135M: float, dense anti-outlier W8A8, and sparse W8A8
(Wanda / magnitude / SparseGPT, 50% unstructured and 2:4), each run from its packed artifact.

    flock /tmp/lc-cpu.lock python benchmarks/sparse_quality.py [--windows 60] [--calib wiki|ceval]
        [--configs float,dense,wanda-u,wanda-24,magnitude-u,magnitude-24,sparsegpt-u,sparsegpt-24] [--out DIR]
        [--reconstruct-epochs N --reconstruct-lr LR] [--static-down]

Every artifact goes through the real stages (compress.sparse.stage.run_sparse, compress.pack) and is read back
by the runtime (runtime.quant_loading); results are appended to DIR/results.json as they come, and configs
already there are skipped (resume). Also prints the packed/dense int8 byte ratio of each artifact.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

CONFIGS = {  # name -> (method, pattern, sparsity)
    "wanda-u": ("wanda", "unstructured", 0.5), "wanda-24": ("wanda", "2:4", 0.5),
    "magnitude-u": ("magnitude", "unstructured", 0.5), "magnitude-24": ("magnitude", "2:4", 0.5),
    "sparsegpt-u": ("sparsegpt", "unstructured", 0.5), "sparsegpt-24": ("sparsegpt", "2:4", 0.5),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=60)
    ap.add_argument("--calib", default="wiki", help="wiki (wiki.valid.raw) or ceval")
    ap.add_argument("--calib-samples", type=int, default=32)
    ap.add_argument("--level", default="L2", help="disable level (dense+float layers)")
    ap.add_argument("--dense-layers", default="", help="extra dense int8 layers, e.g. 0,1")
    ap.add_argument("--configs", default="float,dense,wanda-u,wanda-24,magnitude-u,magnitude-24,sparsegpt-u,sparsegpt-24")
    ap.add_argument("--reconstruct-epochs", type=int, default=0, help="block reconstruction epochs (0 = off)")
    ap.add_argument("--reconstruct-lr", type=float, default=1e-4)
    ap.add_argument("--static-down", action="store_true", help="down_proj inputs static too (default: per token)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/sparse_quality"))
    ap.add_argument("--text-recipe", default="hf", choices=["hf", "raw"],
                    help="WikiText text recipe (runtime/perplexity.py); the README's sparse table used raw")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from compress.pack import pack_artifact
    from compress.quantize import QuantizeOptions, parse_level, run_quantize
    from compress.sparse.driver import PruneConfig
    from compress.sparse.stage import run_sparse
    from runtime.loaders import open_source
    from runtime.loading import build_model, imported_dir, tokenizer_for
    from runtime.perplexity import load_windows, perplexity
    from runtime.presets import resolve_model, shared_dir
    from runtime.quant_loading import load_artifact_model

    ref = resolve_model("smollm2-135m")
    hf_dir = imported_dir(ref)
    tok = tokenizer_for(ref, open_source(hf_dir))
    windows = load_windows(tok, shared_dir() / "data/wikitext-2-raw/wiki.test.raw", limit=a.windows,
                           recipe=a.text_recipe)
    calib = shared_dir() / ("data/wikitext-2-raw/wiki.valid.raw" if a.calib == "wiki" else "data/ceval")
    a.out.mkdir(parents=True, exist_ok=True)
    res_path = a.out / "results.json"
    results = json.loads(res_path.read_text()) if res_path.exists() else {}
    dense_extra = tuple(int(x) for x in a.dense_layers.split(",") if x)
    tag = f"{a.calib}-{a.level}-w{a.windows}" + (f"-d{a.dense_layers.replace(',', '_')}" if dense_extra else "") \
        + (f"-r{a.reconstruct_epochs}x{a.reconstruct_lr:g}" if a.reconstruct_epochs else "") \
        + ("-staticdown" if a.static_down else "") + ("-raw" if a.text_recipe == "raw" else "")
    opts = QuantizeOptions(disable_level=parse_level(a.level), calib_samples=a.calib_samples, calib_seq_len=512,
                           dynamic_groups=() if a.static_down else None)
    for name in a.configs.split(","):
        key = f"{name}/{tag}"
        if key in results:
            print(f"{key}: {results[key]} (cached)")
            continue
        t0 = time.time()
        row: dict = {}
        if name == "float":
            model = build_model(open_source(hf_dir), torch.float32)
        else:
            art = a.out / f"{name}-{tag}"
            if not (art / "artifact.json").exists():
                if name == "dense":
                    run_quantize(hf_dir, ref.name, tok, art, calib, dataclasses.replace(opts), overwrite=True,
                                 progress=False, log=lambda s: None)
                else:
                    m, p, s = CONFIGS[name]
                    run_sparse(hf_dir, ref.name, tok, art, calib, dataclasses.replace(opts),
                               PruneConfig(s, p, m, dense_extra, reconstruct_epochs=a.reconstruct_epochs,
                                           reconstruct_lr=a.reconstruct_lr), overwrite=True, progress=False, log=lambda s: None)
            man = json.loads((art / "artifact.json").read_text())
            row["float_layers"] = man["fallback"]["float_units"]
            if name != "dense":
                packed = a.out / f"{name}-{tag}-packed"
                if not packed.exists():
                    pack_artifact(art, packed, overwrite=True, progress=False)
                pk = json.loads((packed / "artifact.json").read_text())["packing"]
                row.update(ratio=pk["ratio"], sparsity=man["sparsity"]["achieved_mean"],
                           dense_layers=man["sparsity"]["dense_layers"])
                art = packed
            model, _, _ = load_artifact_model(art, torch.float32)
        r = perplexity(model, windows)
        row.update(ppl=round(r.ppl, 3), seconds=round(time.time() - t0))
        results[key] = row
        res_path.write_text(json.dumps(results, indent=1))
        print(f"{key}: {row}", flush=True)


if __name__ == "__main__":
    main()
