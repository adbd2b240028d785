"""How a packed artifact's weights run: $LLAMA_COMPRESS_SPARSE, and the packed binder (via binder_for)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import UserError

MODES = ("auto", "kernel", "unpack")


def sparse_mode() -> str:
    """$LLAMA_COMPRESS_SPARSE: auto (kernel where it builds, else unpack), kernel, or unpack."""
    m = os.environ.get("LLAMA_COMPRESS_SPARSE", "auto")
    if m not in MODES:
        raise UserError(f"LLAMA_COMPRESS_SPARSE={m!r}: use one of {', '.join(MODES)}")
    return m


def packed_binder(root: Path, float_source, art, dtype: torch.dtype, device, reference: bool = False):
    """A binder for a packed artifact, or None when `art` is not packed (runtime.binding.binder_for decides)."""
    from ..binding import binder_for
    from .artifact import packing_of

    if packing_of(art.manifest) is None:
        return None
    return binder_for(art, reference=reference, dtype=dtype, device=device, float_source=float_source)
