"""Peak resident memory of `compress sparse`'s streamed pruning half (streamed.py), from the model config.

The stage runs two halves in one process, one after the other: the pruning half estimated here, then the
layer-streamed quantize half on the pruned directory (compress.preflight.quantize_peak_bytes). The peak is the
larger of the two. README "Real scale" compares the estimate with measured peaks.
"""
from __future__ import annotations

from runtime.config import ModelConfig
from runtime.memory import fmt_bytes


def prune_half_bytes(cfg: ModelConfig, src_bytes: int, samples: int, seq_len: int, *, reconstruct: bool,
                     sparsegpt: bool) -> tuple[int, str]:
    """Work bytes of the pruning half (without the process base and margin), and how they were reckoned.

    Held at once: one decoder layer in the pruning dtype (plus its source-dtype copy while it is built, when the
    dtypes differ); the calibration streams (samples x seq x hidden in the pruning dtype: the pruned stream and
    its outputs, twice that with reconstruction, whose dense stream and targets ride along); then the larger of
      - scoring one linear: about 20 bytes per weight of the widest linear (its float32 copy, score, the
        sort's values and int64 indices, the mask) and, for SparseGPT, every linear's Hessian (float32 in x in);
      - reconstruction: the layer in float32, the pre-tuning copy, gradients and Adam's two moments (float32
        each) and the masks (bool): 21 bytes per linear weight, plus one sequence's autograd activations.
    """
    from .streamed import prune_dtype

    h, i = cfg.hidden_size, cfg.intermediate_size
    q, kv = cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * i
    pb = prune_dtype(cfg).itemsize
    layer = per_layer * (pb + (src_bytes if src_bytes != pb else 0))
    stream = samples * seq_len * h * pb
    streams = (4 if reconstruct else 2) * stream
    widest = max(q, i) * h  # q_proj or gate/up (down_proj is the same size)
    score = 20 * widest + ((5 * h * h + q * q + i * i) * 4 if sparsegpt else 0)
    tune = 0
    if reconstruct:  # one calibration sequence per Adam step: its float32 autograd tape (attention probs incl.)
        t = seq_len
        tape = (t * (10 * h + 5 * i) + 3 * cfg.num_attention_heads * t * t) * 4
        tune = 21 * per_layer + tape
    work = layer + streams + max(score, tune)
    how = (f"pruning half: one layer {fmt_bytes(layer)}, calibration streams {fmt_bytes(streams)}, "
           + (f"reconstruction {fmt_bytes(tune)}" if reconstruct else f"scoring {fmt_bytes(score)}"))
    return work, how
