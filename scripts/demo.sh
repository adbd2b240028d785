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
runtime ppl --model smollm2-135m --windows "$WINDOWS" --threads "$THREADS" --json "$OUT.float-ppl.json" >/dev/null
runtime ppl --quant "$OUT" --windows "$WINDOWS" --threads "$THREADS" --json "$OUT.w8a8-ppl.json" >/dev/null
python3 - "$OUT.float-ppl.json" "$OUT.w8a8-ppl.json" <<'PY'
import json, sys
f, q = (json.load(open(p)) for p in sys.argv[1:3])
print(f"WikiText-2 perplexity ({f['windows']} windows of {f['window']}): float {f['ppl']:.3f} -> "
      f"W8A8 {q['ppl']:.3f} ({100 * (q['ppl'] / f['ppl'] - 1):+.2f}%)")
PY
