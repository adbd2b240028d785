"""The hook runtime/quant_loading.py calls for packed artifacts: choose how to run the packed weights."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from ..errors import UserError
from ..quant.binder import QuantBinder
from . import kernel
from .artifact import PackedTensors, UnpackingAccessor, packing_of
from .binder import SparseBinder

MODES = ("auto", "kernel", "unpack")


def sparse_mode() -> str:
    """$LLAMA_COMPRESS_SPARSE: auto (kernel where it builds, else unpack), kernel, or unpack."""
    m = os.environ.get("LLAMA_COMPRESS_SPARSE", "auto")
    if m not in MODES:
        raise UserError(f"LLAMA_COMPRESS_SPARSE={m!r}: use one of {', '.join(MODES)}")
    return m


def packed_binder(root: Path, float_source, art, dtype: torch.dtype, device, reference: bool = False):
    """A binder for a packed artifact, or None when `art` is not packed."""
    packing = packing_of(art.manifest)
    if packing is None:
        return None
    packed = PackedTensors(Path(root), packing)
    if reference:
        return QuantBinder(float_source, UnpackingAccessor(art, packed), dtype, device, reference=True)
    mode = sparse_mode()
    if mode == "auto":
        mode = "kernel" if kernel.available() and torch.device(device).type == "cpu" else "unpack"
        if mode == "unpack":
            print(f"note: packed-sparse kernel unavailable ({kernel.why_unavailable() or 'not a CPU device'}): "
                  "decompressing the packed weights at load (same results, no speed-up)", file=sys.stderr)
    elif mode == "kernel" and not kernel.available():
        raise UserError(f"LLAMA_COMPRESS_SPARSE=kernel but {kernel.why_unavailable()}: unset it to decompress at load")
    return SparseBinder(float_source, art, packed, dtype, device, mode=mode)
