"""Probe for issue 16 item 3: does a fixed float KV prefix (PrefixQuant / CushionCache) let one static
per-tensor range serve every token of SmolLM2-135M at L0 (no float layer)?

Two all-static anti-outlier W8A8 builds (fake-quant, the arithmetic of the int8 kernels), same calibration:
  standard: statistics over every calibration position; scored on the windows as they are;
  prefix:   every calibration sample and every window is preceded by the prefix tokens, whose keys/values
            are computed by the float model (so no quantized linear sees them) and which are left out
            of the statistics; the int8 model continues from that cache.
Each build is compared with the float model fed the same input (KL, top-1 agreement, perplexity), and
the float model with the prefix is compared with the standard float model (what the prefix itself changes).

    python benchmarks/sink_prefix_probe.py --windows 20 [--prefix-ids 0] [--threads 1] [--json out.json]
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--windows", type=int, default=20)
    ap.add_argument("--prefix-ids", default="0", help="comma-separated token ids (SmolLM2: 0 = <|endoftext|>)")
    ap.add_argument("--calib-samples", type=int, default=64)
    ap.add_argument("--text-recipe", default="hf", choices=["hf", "raw"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from calibration.data import build_calibration
    from calibration.stats import collect_stats, load_hf_model
    from compress.memsource import DictSource
    from compress.quantize import QuantizeOptions, quantize_tensors, reference_model
    from compress.rotate import rotate_hf_in_place, rotate_residual
    from runtime.engine import Engine
    from runtime.kl_divergence import reference_of, summarize, token_stats
    from runtime.loaders import open_source, weight_names
    from runtime.loading import build_model, imported_dir, tokenizer_for
    from runtime.perplexity import load_windows
    from runtime.presets import expand, resolve_model

    ref = resolve_model(a.model)
    hf_dir = imported_dir(ref)
    src = open_source(hf_dir)
    cfg = src.config
    tok = tokenizer_for(ref, src)
    wins = load_windows(tok, None, 512, 512, a.windows, a.text_recipe)
    prefix = [int(x) for x in a.prefix_ids.split(",") if x]
    P = len(prefix)
    t0 = time.time()
    calib = build_calibration(expand(ref.preset.quantize.get("calib_data", "${SHARED}/data/ceval")), tok,
                              a.calib_samples, 512, 0)
    floats = {n: src.get(n).clone() for n in weight_names(cfg)}
    tensors, qcfg, _ = rotate_residual(dict(floats), cfg)
    hf = load_hf_model(hf_dir)
    rotate_hf_in_place(hf, cfg)
    pre = torch.tensor([prefix], dtype=torch.int64)
    stats = {"standard": collect_stats(hf, calib.samples, 512, 0, progress=False),
             "prefix": collect_stats(hf, [torch.cat([pre, s], 1) for s in calib.samples], 512, 0,
                                     progress=False, skip_positions=P)}
    del hf

    @torch.inference_mode()
    def logits_of(model_q, model_f, ids: torch.Tensor, with_prefix: bool) -> torch.Tensor:
        """Logits of `ids` [1, T] by model_q, after the prefix's float keys/values when asked."""
        T = ids.shape[1]
        if not with_prefix:
            return Engine(model_q, T).logits(ids)[0]
        ef = Engine(model_f, P + T)
        cache = model_f.new_cache(1, P + T)
        cos, sin = ef._rope(torch.arange(P)[None])
        model_f(pre, cos, sin, cache, 0, None, last_only=True)
        cos, sin = ef._rope(torch.arange(P, P + T)[None])
        return model_q(ids, cos, sin, cache, P, None)[0]

    def compare(model_q, model_f, with_prefix: bool, ref_f=None, ref_prefix: bool | None = None) -> dict:
        ref_f = model_f if ref_f is None else ref_f
        ref_prefix = with_prefix if ref_prefix is None else ref_prefix
        kls, sames, nlls, nrefs = [], [], [], []
        for ids, first in wins:
            tgt = ids[0, first:]
            r = reference_of(logits_of(ref_f, ref_f, ids, ref_prefix)[first - 1:-1], tgt)
            kl, same, nll = token_stats(r, logits_of(model_q, model_f, ids, with_prefix)[first - 1:-1], tgt)
            kls.append(kl), sames.append(same), nlls.append(nll), nrefs.append(r.nll)
        s = summarize(torch.cat(kls), torch.cat(sames), torch.cat(nlls), torch.cat(nrefs), len(wins))
        return {**s.as_dict(), "delta_pct": 100 * (s.ppl / s.ppl_float - 1)}

    rows = {}
    for name, st in stats.items():
        opts = QuantizeOptions(act_method="static")
        res = quantize_tensors(copy.deepcopy(tensors), st, qcfg, opts, progress=False)
        q = reference_model(qcfg, res, False)
        f = build_model(DictSource(qcfg, res.float_tensors))
        with_prefix = name == "prefix"
        rows[name] = compare(q, f, with_prefix)
        rng = max(abs(c["range"][0]) + abs(c["range"][1]) for k, c in res.choices.items() if k.endswith("down_proj"))
        rows[name]["widest_down_proj_range"] = rng
        if with_prefix:  # what the prefix alone does to the float model
            rows["float_with_prefix_vs_float"] = compare(f, f, True, ref_f=f, ref_prefix=False)
            rows["prefix_int8_vs_float_without_prefix"] = compare(q, f, True, ref_f=f, ref_prefix=False)
        print(name, json.dumps(rows[name]), flush=True)
    for k, v in rows.items():
        print(f"{k:40s} ppl {v['ppl']:.3f} vs {v['ppl_float']:.3f} ({v['delta_pct']:+.2f}%) "
              f"KLD {v['kld_mean']:.5f} top-1 {100 * v['top1_agreement']:.2f}%")
    print(f"({a.windows} windows, recipe {a.text_recipe}, prefix {prefix}, {time.time() - t0:.0f} s)")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"windows": a.windows, "text_recipe": a.text_recipe, "prefix": prefix, "rows": rows}, fh,
                      indent=1)
    assert all(math.isfinite(v["ppl"]) for v in rows.values())


if __name__ == "__main__":
    main()
