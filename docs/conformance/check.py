"""The conformance check of docs/ARTIFACT.md, usable by any reader: depends on numpy and safetensors only.

    python docs/conformance/check.py docs/conformance/static  MY_LOGITS.safetensors   # tensor "logits"
    python docs/conformance/check.py --codes MY_CODES.safetensors                       # quantizer vectors

A reader runs the kit's artifact on `input_ids` (expected.safetensors; no padding, no attention mask, causal)
in float32 and passes when its logits [B, T, V] satisfy, with M = max |expected logits|:

  * every position is within LOOSE * M of the expected logits (max over the vocabulary);
  * all but MAX_LOOSE_FRACTION of the positions are within TIGHT * M.

(So a position whose expected top-1/top-2 margin exceeds twice its deviation keeps its argmax.)

Why two levels: readers that follow the arithmetic exactly still differ in float32 summation order
(measured: at most 4.5e-7 * M between our int8 kernels and the float reference), and such a difference
can move an activation across a rounding boundary, flipping one int8 code, which shifts the logits of the
positions after it by up to ~3e-3 * M (measured on the dynamic-hadamard artifact: 1 position of 64).
The codes themselves are pinned exactly by the quantizer vectors (quant_vectors.safetensors), which hold
rounding ties and values where x / s and x * (1 / s) round apart: a reader must reproduce every code.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

TIGHT = 1e-4
LOOSE = 1e-2
MAX_LOOSE_FRACTION = 0.1
KIT = Path(__file__).resolve().parent


def check_logits(expected: np.ndarray, got: np.ndarray) -> list[str]:
    """Problems of `got` against `expected` (both [B, T, V]); empty when it conforms."""
    expected = np.asarray(expected, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if got.shape != expected.shape:
        return [f"logits shape {got.shape}, expected {expected.shape}"]
    if not np.isfinite(got).all():
        return ["logits contain NaN or inf"]
    m = float(np.abs(expected).max())
    diff = np.abs(got - expected).max(-1) / m  # [B, T], relative to the largest logit
    problems = []
    if diff.max() > LOOSE:
        b, t = np.unravel_index(int(diff.argmax()), diff.shape)
        problems.append(f"position ({b}, {t}) is {diff.max():.3g} x max|logit| off (limit {LOOSE})")
    loose = float((diff > TIGHT).mean())
    if loose > MAX_LOOSE_FRACTION:
        problems.append(f"{loose:.0%} of positions are more than {TIGHT} x max|logit| off "
                        f"(limit {MAX_LOOSE_FRACTION:.0%})")
    return problems


def check_codes(got: dict[str, np.ndarray], vectors: dict[str, np.ndarray] | None = None) -> list[str]:
    """`got` maps "static_a.codes", "static_b.codes", "dynamic.codes" to a reader's int8 codes of the
    vectors' inputs ("static_*.x" with "static_*.input_scale/offset"; "dynamic.x" row by row)."""
    vectors = vectors if vectors is not None else load_file(str(KIT / "quant_vectors.safetensors"))
    problems = []
    for k in sorted(v for v in vectors if v.endswith(".codes")):
        if k not in got:
            problems.append(f"{k} missing")
            continue
        g = np.asarray(got[k]).astype(np.int64)
        e = vectors[k].astype(np.int64)
        if g.shape != e.shape:
            problems.append(f"{k}: shape {g.shape}, expected {e.shape}")
        elif (g != e).any():
            problems.append(f"{k}: {int((g != e).sum())} of {e.size} codes differ")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kit", nargs="?", type=Path, help="a kit directory holding expected.safetensors")
    ap.add_argument("logits", nargs="?", type=Path, help="safetensors file with tensor 'logits' [B, T, V]")
    ap.add_argument("--codes", type=Path, help="safetensors file with the reader's codes of the quantizer vectors")
    a = ap.parse_args()
    problems = []
    if a.kit and a.logits:
        exp = load_file(str(a.kit / "expected.safetensors"))["logits"]
        problems += check_logits(exp, load_file(str(a.logits))["logits"])
    if a.codes:
        problems += check_codes(load_file(str(a.codes)))
    for p in problems:
        print(f"FAIL: {p}")
    print("conforms" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
