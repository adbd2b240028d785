"""Whether a static int8 linear keeps oneDNN's prepacked copy of its weight beside the plain one.

The decode kernel (runtime/kernels) reads the plain [out, in] int8 weight; oneDNN's prepacked copy makes
prefill faster (measured on the Xeon, LLaMA-2-7B shapes, 128 rows: 31 ms oneDNN vs 44 ms torch._int_mm on
the plain layout) but doubles the resident int8 bytes — a 13B W8A8 artifact (13 GB of int8) would no
longer fit in 24 GiB. So the copy is kept only when the whole model's int8 weights fit twice in memory.

`LLAMA_COMPRESS_INT8_PREFILL=onednn|plain|auto` forces a choice; auto (the default) follows the budget
the artifact loader sets with `plan_for(int8_bytes)` before it builds the model.
"""
from __future__ import annotations

import os

from .. import memory
from ..errors import UserError

_keep_copy: bool = True  # a model built without a plan (tests, tiny models) keeps today's fast prefill


def plan_for(int8_bytes: int, other_bytes: int = 0) -> bool:
    """Decide for the model about to be built; returns whether the prepacked copies are kept."""
    global _keep_copy
    mode = os.environ.get("LLAMA_COMPRESS_INT8_PREFILL", "auto").strip().lower()
    if mode not in ("auto", "onednn", "plain"):
        raise UserError(f"LLAMA_COMPRESS_INT8_PREFILL={mode!r}: use auto, onednn or plain")
    if mode != "auto":
        _keep_copy = mode == "onednn"
    else:
        avail = memory.mem_available()
        # keep the copy when 2x the int8 bytes plus the rest leave a quarter of free memory untouched
        _keep_copy = avail is None or 2 * int8_bytes + other_bytes <= 0.75 * avail
    return _keep_copy


def keep_prepacked_copy() -> bool:
    return _keep_copy
