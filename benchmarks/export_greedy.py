"""Real-model check of `compress export --format compressed-tensors`: greedy tokens and logits of the export loaded
by transformers (`AutoModelForCausalLM.from_pretrained(DIR)`, nothing else) against our runtime on the artifact.

    PYTHONPATH=. python benchmarks/export_greedy.py ART [--new-tokens 32] [--prompt TEXT ...]

Both in float32. Prints, per prompt, whether the greedy tokens agree, and the largest logit difference over
the prompt relative to the largest logit.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

PROMPTS = ["The capital of France is", "Once upon a time", "def fibonacci(n):", "The three primary colors are"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--prompt", action="append")
    a = ap.parse_args()
    from transformers import AutoModelForCausalLM

    from compress.export import export_artifact
    from runtime.engine import Engine
    from runtime.quant_loading import load_artifact_model

    model, tok, desc = load_artifact_model(a.artifact, torch.float32, "cpu")
    eos = tok.eos_id
    engine = Engine(model, 512, 0, [eos] if eos is not None else [])
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "ct"
        export_artifact(a.artifact, "compressed-tensors", out)
        hf = AutoModelForCausalLM.from_pretrained(str(out)).eval()
        print(f"artifact: {desc}\nexport loaded by transformers as {type(hf).__name__}, dtype {hf.dtype}")
        agree = 0
        prompts = a.prompt or PROMPTS
        for p in prompts:
            ids = torch.tensor([tok.encode(p)])
            with torch.no_grad():
                ours = engine.generate(ids, None, a.new_tokens, ignore_eos=True).output_ids[0].tolist()
                theirs = hf.generate(ids, max_new_tokens=a.new_tokens, do_sample=False, eos_token_id=None,
                                     pad_token_id=0)[0, ids.shape[1]:].tolist()
                full = torch.tensor([tok.encode(p) + ours])
                lo = engine.logits(full, None, False)[0].float()
                lh = hf(full).logits[0].float()
            rel = float((lo - lh).abs().max() / lo.abs().max())
            same = ours == theirs
            agree += same
            first = next((i for i, (x, y) in enumerate(zip(ours, theirs)) if x != y), None)
            print(f"{p!r}: greedy {'equal' if same else f'differ from token {first}'} ({a.new_tokens} tokens); "
                  f"max |logit diff| / max|logit| over prompt+output = {rel:.2e}; text: {tok.decode(ours)!r}")
        print(f"{agree}/{len(prompts)} prompts with identical greedy tokens")


if __name__ == "__main__":
    main()
