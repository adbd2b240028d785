"""What an artifact's KV prefix (format 1.3) does by itself: its float model (anti_weight/) run WITH the
stored prefix keys/values against the same float model without them (the user's model), and the int8
artifact against the float model with the prefix (the quantization error alone), on the same windows.

`runtime ppl --quant ART --kl-divergence` compares the artifact with its float model WITHOUT the prefix:
the sum of both effects, which is what a user of the artifact gets.

    python benchmarks/kv_prefix_float.py ART --windows 60 --report 20,60 [--text-recipe hf] [--threads 1] [--json out.json]

(one pass over the first --windows windows; --report gives the figures over the first N of them too)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--windows", type=int, default=20)
    ap.add_argument("--report", default=None, help="comma-separated window counts to report (default: --windows)")
    ap.add_argument("--text-recipe", default="hf", choices=["hf", "raw"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from runtime.kl_divergence import LiveReference, kl_token_arrays
    from runtime.kv_prefix import attach, load_kv_prefix
    from runtime.loaders import open_source
    from runtime.loading import build_model
    from runtime.perplexity import load_windows
    from runtime.quant.artifact import ANTI_DIR, open_artifact
    from runtime.quant_loading import load_artifact_model
    from runtime.tokenizer import load_tokenizer

    art = open_artifact(a.artifact)
    src = open_source(a.artifact / ANTI_DIR)
    prefix = load_kv_prefix(art.manifest, art, src.config.num_hidden_layers)
    if prefix is None:
        raise SystemExit(f"{a.artifact} has no kv_prefix")
    wins = load_windows(load_tokenizer(a.artifact / ANTI_DIR), None, 512, 512, a.windows, a.text_recipe)
    plain = build_model(src)
    with_prefix = build_model(src)
    attach(with_prefix, prefix)
    int8, _, _ = load_artifact_model(a.artifact)
    report = [int(w) for w in a.report.split(",")] if a.report else [a.windows]
    rows: dict[str, dict] = {}
    # (int8 against the float model without the prefix is `runtime ppl --quant ART --kl-divergence`)
    for name, model, ref in [("float_with_prefix_vs_float", with_prefix, plain),
                             ("int8_with_prefix_vs_float_with_prefix", int8, with_prefix)]:
        arrays = kl_token_arrays(model, LiveReference(ref, wins), wins)
        for w in report:
            s = arrays.summary(w)
            rows[f"{name}@{w}"] = {**s.as_dict(), "delta_pct": 100 * (s.ppl / s.ppl_float - 1)}
            print(f"{name:40s} {w:3d} windows: ppl {s.ppl:.3f} vs {s.ppl_float:.3f} "
                  f"({rows[f'{name}@{w}']['delta_pct']:+.2f}%) KLD {s.kld_mean:.5f} top-1 {100 * s.top1_agreement:.2f}%",
                  flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"artifact": str(a.artifact), "text_recipe": a.text_recipe,
                                            "prefix": prefix.token_ids, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
