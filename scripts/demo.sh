#!/usr/bin/env bash
# End to end on the default model (SmolLM2-135M): quantize with C-Eval calibration, verify the
# artifact, run it, and print the WikiText-2 perplexity change (first 20 windows of 512 tokens).
# Uses the `compress` and `runtime` commands on PATH; about 5 minutes on 2 cores.
set -euo pipefail
OUT=${OUT:-smollm2-135m-w8a8}
WINDOWS=${WINDOWS:-20}
THREADS=${THREADS:-2}

compress quantize --model smollm2-135m --out "$OUT" --force --threads "$THREADS"
compress verify "$OUT"
runtime run --quant "$OUT" --prompt "The capital of France is" --max-new-tokens 24 --threads "$THREADS"
# one pass: the artifact and its float model (anti_weight/) over the same windows
runtime ppl --quant "$OUT" --windows "$WINDOWS" --threads "$THREADS" --kl-divergence --json "$OUT.ppl.json" >/dev/null
python3 - "$OUT.ppl.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"WikiText-2 perplexity ({r['windows']} windows of {r['window']}, {r['text_recipe']} recipe): "
      f"float {r['ppl_float']:.3f} -> W8A8 {r['ppl']:.3f} ({100 * (r['ppl'] / r['ppl_float'] - 1):+.2f}%), "
      f"KL divergence {r['kld_mean']:.4f}, same top token {100 * r['top1_agreement']:.1f}%")
PY
