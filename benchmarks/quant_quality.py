"""WikiText-2 perplexity of SmolLM2-135M under each W8A8 variant: the quality table of the README.

One process: calibration statistics are collected once, then every variant is built in memory
(fake-quant in float, the arithmetic the runtime's int8 kernels are tested against) and scored on the
first N windows of 512 tokens (stride 512) of WikiText-2 test under `--text-recipe` (default hf: Hugging
Face's wikitext-2-raw-v1 rows joined with "\n\n"; raw: wiki.test.raw as it is). Every variant is also
compared with the float model token by token: mean KL divergence and top-1 agreement (float logits are
computed once and cached in a temporary file, float16 log-probs, ~50 MB per window).

    flock /tmp/lc-cpu.lock python benchmarks/quant_quality.py --windows 60 [--levels 0,2] [--json out.json]
"""
from __future__ import annotations

import argparse
import atexit
import copy
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--windows", type=int, default=60)
    ap.add_argument("--levels", default="0,2")
    ap.add_argument("--variants", default="plain-static,anti-static,plain-dynamic,anti-dynamic")
    ap.add_argument("--calib", default=None, help="calibration data (default: the preset's C-Eval)")
    ap.add_argument("--calib-samples", type=int, default=64)
    ap.add_argument("--sens-samples", type=int, default=2)
    ap.add_argument("--rank-by", default="error")
    ap.add_argument("--unit", default="layer")
    ap.add_argument("--gptq", default="off", choices=["auto", "on", "off"], help="GPTQ weight rounding")
    ap.add_argument("--hadamard-block", type=int, default=None,
                    help="anti-outlier variants: online Hadamard block of the down_proj input (0: off; default auto)")
    ap.add_argument("--no-rotate-o", action="store_true", help="anti-outlier variants: no per-head rotation of o_proj")
    ap.add_argument("--no-rotate-residual", action="store_true", help="anti-outlier variants: no residual rotation")
    ap.add_argument("--float-units", default=None,
                    help="also score every variant with these units in float (e.g. the preset's choice)")
    ap.add_argument("--text-recipe", default="hf", choices=["hf", "raw"])
    ap.add_argument("--also-first", type=int, default=None,
                    help="also report every figure over the first K windows (the same pass: windows are in order)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from calibration.data import build_calibration
    from calibration.stats import collect_stats, load_hf_model
    from compress.quantize import (QuantizeOptions, float_modules_of, keep_only, quantize_tensors,
                                   range_scores, reference_model)
    from compress.sensitivity import choose, score_units
    from runtime.loaders import open_source, weight_names
    from runtime.loading import build_model, imported_dir, tokenizer_for
    from runtime.kl_divergence import CachedReference, kl_token_arrays, write_reference
    from runtime.perplexity import load_windows
    from runtime.presets import expand, resolve_model

    ref = resolve_model(a.model)
    hf_dir = imported_dir(ref)
    src = open_source(hf_dir)
    cfg = src.config
    tok = tokenizer_for(ref, src)
    wins = load_windows(tok, None, 512, 512, a.windows, a.text_recipe)
    rows = []
    tmp = tempfile.TemporaryDirectory(prefix="quant-quality-")
    # the cached float logits are ~50 MB a window: remove them on any exit, a kill (SIGTERM) included
    atexit.register(tmp.cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cache = Path(tmp.name) / "float.kld"

    def report(name: str, level: str, arrays, extra: str = "") -> None:
        for w in ([a.also_first] if a.also_first else []) + [None]:
            r = arrays.summary(w)
            d = f"{100 * (r.ppl / r.ppl_float - 1):+.2f}%"
            rows.append({"variant": name, "level": level, "windows": r.windows, "ppl": r.ppl,
                         "ppl_float": r.ppl_float, "delta": d, "kld_mean": r.kld_mean, "kld_median": r.kld_median,
                         "kld_p99": r.kld_p99, "top1_agreement": r.top1_agreement, "note": extra})
            print(f"| {r.windows:3d} win | {name:28s} | {level:3s} | {r.ppl:8.3f} | {d:>7s} | KLD {r.kld_mean:.5f} "
                  f"| top-1 {100 * r.top1_agreement:.2f}% | {extra}", flush=True)

    def score(model):
        return kl_token_arrays(model, CachedReference(cache, wins, cfg.vocab_size), wins)

    t0 = time.time()
    base = write_reference(build_model(src), wins, cache, "float")
    print(f"| float | {base:.3f} over all {len(wins)} windows", flush=True)
    rows.append({"variant": "float", "level": "-", "windows": len(wins), "ppl": base})
    calib_path = a.calib or expand(ref.preset.quantize.get("calib_data", "${SHARED}/data/ceval"))
    calib = build_calibration(calib_path, tok, a.calib_samples, 512, 0)
    from compress.quantize import gptq_fits
    from compress.rotate import rotate_hf_in_place, rotate_residual
    gptq = gptq_fits(cfg) if a.gptq == "auto" else a.gptq == "on"
    floats = {n: src.get(n).clone() for n in weight_names(cfg)}
    prepared: dict[bool, tuple] = {}

    def prepare(rotated: bool) -> tuple:
        """(float tensors, their activation statistics, config): the residual-rotated model or the source."""
        if rotated not in prepared:
            t, c = floats, cfg
            hf = load_hf_model(hf_dir)
            if rotated:
                t, c, _ = rotate_residual(dict(floats), cfg)
                rotate_hf_in_place(hf, cfg)
            prepared[rotated] = (t, collect_stats(hf, calib.samples, 512, 0, progress=False, hessian=gptq), c)
        return prepared[rotated]

    levels = [int(x) for x in a.levels.split(",")]
    for v in a.variants.split(","):
        kind, act = v.split("-")
        opts = QuantizeOptions(act_method=act, fallback_unit=a.unit, gptq=gptq, hadamard_down=a.hadamard_block,
                               rotate_o=not a.no_rotate_o, rotate_residual=not a.no_rotate_residual)
        if kind == "plain":  # no smoothing, no rotation, min-max ranges
            opts.alphas, opts.range_search, opts.hadamard_down, opts.rotate_o = (0.0,), "minmax", 0, False
            opts.rotate_residual = False
        tensors, stats, qcfg = prepare(opts.rotate_residual)
        res = quantize_tensors(copy.deepcopy(tensors), stats, qcfg, opts, progress=False)
        scores = None
        for k in levels:
            if k == 0:
                fmods = set()
                units = []
            else:
                if scores is None:
                    if a.rank_by == "range":
                        scores = range_scores(res, a.unit)
                    else:
                        scores = score_units(reference_model(qcfg, res, a.unit == "linear"),
                                             calib.samples[: a.sens_samples], a.unit, progress=False)
                units = choose(scores, k)
                fmods = float_modules_of(units, a.unit, qcfg)
            sub = copy.copy(res)
            sub.quant_tensors = keep_only(res, fmods)
            report(f"{kind} W8A8 {act}", f"L{k}", score(reference_model(qcfg, sub, False)),
                   f"float {a.unit}s {units}" if units else "")
        if a.float_units:
            units = a.float_units.split(",")
            sub = copy.copy(res)
            sub.quant_tensors = keep_only(res, float_modules_of(units, a.unit, qcfg))
            report(f"{kind} W8A8 {act}", f"L{len(units)}", score(reference_model(qcfg, sub, False)),
                   f"preset's float {a.unit}s {units}")
    print(f"({a.windows} windows, recipe {a.text_recipe}, GPTQ {'on' if gptq else 'off'}, {time.time() - t0:.0f} s)")
    tmp.cleanup()
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"windows": a.windows, "text_recipe": a.text_recipe, "gptq": gptq, "unit": a.unit,
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
