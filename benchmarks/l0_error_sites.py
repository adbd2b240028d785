"""Where a W8A8 artifact's error lives: the same artifact re-scored with one error source switched off at a time.

The artifact is loaded as its float reference (FakeQuantLinear: dequantized int8 weights, fake-quantized
inputs in float32, the arithmetic the int8 kernels are tested against), then each variant changes what
some linears do, without re-calibrating anything:

    all-int8          every linear as the artifact says (the baseline, ~ `runtime ppl --quant`)
    weights-only      int8 weights, float activations, every linear
    acts-only         int8 activations (the artifact's static ranges), float weights, every linear
    G-float           group kind G (qkv, o, gate_up, down) entirely float, the rest as the artifact
    G-dynamic         group kind G's inputs per token (symmetric, dynamic), the rest as the artifact
    G-wfloat          group kind G with float weights (its activations still quantized)
    pos0-float        the first position of every sequence unquantized in every linear (static ranges unchanged)
    pos0-dynamic      the first position quantized per token in every linear, the others static

Each is scored against the artifact's float model (anti_weight/) on the same windows: perplexity, mean KL
and top-1 agreement (the float logits computed once, cached in a temporary file).

    python benchmarks/l0_error_sites.py ART --windows 20 [--variants all-int8,down-float] [--threads 1] [--json o.json]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

GROUP_ATTR = {"qkv": "self_attn.qkv", "o": "self_attn.o_proj", "gate_up": "mlp.gate_up", "down": "mlp.down_proj"}
ALL = ["all-int8", "weights-only", "acts-only"] + [f"{g}-{m}" for m in ("float", "dynamic", "wfloat")
                                                     for g in GROUP_ATTR] + ["pos0-float", "pos0-dynamic"]


class Switch(torch.nn.Module):
    """A FakeQuantLinear whose activation mode ("static" | "dynamic" | "float") and weights ("int8" | "float")
    can be changed; pos0 ("same" | "float" | "dynamic") overrides the first position of each sequence."""

    def __init__(self, fq):
        super().__init__()
        from runtime.quant import qmath

        self.fq = fq
        self.out_splits = fq.out_splits
        fw = fq.float_weight.float()
        # float weights in the domain of the (rotated) input: H symmetric, so x W^T = (x H)(W H)^T
        self.w_float = qmath.hadamard_offline(fw, fq.hadamard) if fq.hadamard else fw
        self.reset()

    def reset(self) -> None:
        self.act, self.weight, self.pos0 = ("static" if self.fq.static else "dynamic"), "int8", "same"

    def _act(self, x: torch.Tensor, mode: str) -> torch.Tensor:
        from runtime.quant import qmath

        if mode == "float":
            return x
        if mode == "dynamic":
            return qmath.fake_act_dynamic(x)
        return qmath.fake_act_static(x, self.fq.scale, self.fq.offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from runtime.quant import qmath

        xf = x.float()
        if self.fq.hadamard:
            xf = qmath.hadamard(xf, self.fq.hadamard)
        xq = self._act(xf, self.act)
        if self.pos0 != "same" and xq.dim() == 3 and xq.shape[1] > 1:
            xq = torch.cat([self._act(xf[:, :1], self.pos0), xq[:, 1:]], 1)
        w = self.fq.w_dq if self.weight == "int8" else self.w_float
        return F.linear(xq, w, self.fq.bias).to(self.fq.dtype)


def install(model) -> dict[str, list[Switch]]:
    """Replace every FakeQuantLinear of the decoder by a Switch; returns them by group kind."""
    from runtime.quant.linear import FakeQuantLinear

    by_group: dict[str, list[Switch]] = {g: [] for g in GROUP_ATTR}
    for name, mod in list(model.named_modules()):
        for g, attr in GROUP_ATTR.items():
            block, leaf = attr.split(".")
            sub = getattr(getattr(mod, block, None), leaf, None) if hasattr(mod, block) else None
            if isinstance(sub, FakeQuantLinear):
                sw = Switch(sub)
                setattr(getattr(mod, block), leaf, sw)
                by_group[g].append(sw)
    return by_group


def configure(by_group: dict[str, list[Switch]], variant: str) -> None:
    every = [s for ss in by_group.values() for s in ss]
    for s in every:
        s.reset()
    if variant == "all-int8":
        return
    if variant == "weights-only":
        for s in every:
            s.act = "float"
        return
    if variant == "acts-only":
        for s in every:
            s.weight = "float"
        return
    if variant.startswith("pos0-"):
        for s in every:
            s.pos0 = variant.split("-", 1)[1]
        return
    g, mode = variant.rsplit("-", 1)
    if g not in by_group or mode not in ("float", "dynamic", "wfloat"):
        raise SystemExit(f"unknown variant {variant!r}: choose from {', '.join(ALL)}")
    for s in by_group[g]:
        if mode == "float":
            s.act, s.weight = "float", "float"
        elif mode == "dynamic":
            s.act = "dynamic"
        else:
            s.weight = "float"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--windows", type=int, default=20)
    ap.add_argument("--variants", default=",".join(ALL))
    ap.add_argument("--text-recipe", default="hf", choices=["hf", "raw"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from runtime.kl_divergence import CachedReference, kl_token_arrays, write_reference
    from runtime.loaders import open_source
    from runtime.loading import build_model
    from runtime.perplexity import load_windows
    from runtime.quant.artifact import ANTI_DIR
    from runtime.quant_loading import load_artifact_model
    from runtime.tokenizer import load_tokenizer

    wins = load_windows(load_tokenizer(a.artifact / ANTI_DIR), None, 512, 512, a.windows, a.text_recipe)
    model, _, desc = load_artifact_model(a.artifact, reference=True)
    by_group = install(model)
    n = sum(len(v) for v in by_group.values())
    print(f"{desc}\n{n} switchable linears", flush=True)
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(dir=a.artifact.parent) as td:
        cache = Path(td) / "float.kld"
        ppl_float = write_reference(build_model(open_source(a.artifact / ANTI_DIR)), wins, cache)
        print(f"float reference ({a.artifact / ANTI_DIR}): ppl {ppl_float:.4f}", flush=True)
        for v in a.variants.split(","):
            t0 = time.time()
            configure(by_group, v)
            s = kl_token_arrays(model, CachedReference(cache, wins, model.config.vocab_size), wins).summary()
            rows[v] = {**s.as_dict(), "delta_pct": 100 * (s.ppl / s.ppl_float - 1)}
            print(f"{v:16s} ppl {s.ppl:.4f} ({rows[v]['delta_pct']:+.2f}%) KLD {s.kld_mean:.5f} "
                  f"top-1 {100 * s.top1_agreement:.2f}%  [{time.time() - t0:.0f} s]", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"artifact": str(a.artifact), "windows": a.windows,
                                            "text_recipe": a.text_recipe, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
