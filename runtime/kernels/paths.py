"""Which kernel each linear of a model runs at decode time, for the run banner and the perf CSV."""
from __future__ import annotations

from collections import Counter

from torch import nn


def decode_path_counts(model: nn.Module) -> Counter:
    """Counter of decode paths over the model's linears (anything with `out_splits`); group parts counted singly."""
    c: Counter = Counter()
    for m in model.modules():
        if not hasattr(m, "out_splits") or hasattr(m, "parts"):
            continue
        path = getattr(m, "decode_path", None)
        if path is None:
            w = getattr(m, "weight", None)
            path = f"torch {str(w.dtype).replace('torch.', '')}" if w is not None else type(m).__name__
        c[path] += 1
    return c


def describe_decode_paths(model: nn.Module) -> str:
    """e.g. "int8 vpdpbusd kernel x28, bf16 vdpbf16ps kernel x1; fused decode ops" (most used first); the tail says
    whether the layers' norms/attention/MLP run the fused bf16 ops (runtime/kernels/decode_ops_src.py)."""
    s = ", ".join(f"{p} x{n}" for p, n in decode_path_counts(model).most_common()) or "none"
    layers = getattr(model, "layers", None)
    if layers is not None and len(layers) and getattr(layers[0].self_attn, "fused", False):
        s += "; fused decode ops"
    return s
