"""binder_for: the one place that decides how a model's linears are built.

    binder_for(source)                          float weights (a TensorSource)
    binder_for(source, tensors=t)               artifact tensors held elsewhere (in memory, synthetic)
    binder_for(artifact_dir_or_reader)          an artifact: each linear by its manifest scheme; a packed
                                                artifact runs its packed linears from the packed form
    ...(..., tp=ctx)                            this tensor-parallel rank's share, collectives added
    ...(..., reference=True)                    every scheme's float reference (what the kernels match)

Command code, the TP loader, the compressor's sensitivity model and the benchmarks all come here.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from .linear import Binder, FloatBinder


def _is_artifact(obj: Any) -> bool:
    return hasattr(obj, "manifest") and hasattr(obj, "has") and hasattr(obj, "root")


def _packed_mode(device: torch.device) -> str:
    from .errors import UserError
    from .sparse import kernel
    from .sparse.loading import sparse_mode

    mode = sparse_mode()
    if mode == "auto":
        mode = "kernel" if kernel.available() and device.type == "cpu" else "unpack"
        if mode == "unpack":
            print(f"note: packed-sparse kernel unavailable ({kernel.why_unavailable() or 'not a CPU device'}): "
                  "decompressing the packed weights at load (same results, no speed-up)", file=sys.stderr)
    elif mode == "kernel" and not kernel.available():
        raise UserError(f"LLAMA_COMPRESS_SPARSE=kernel but {kernel.why_unavailable()}: unset it to decompress at load")
    return mode


def binder_for(artifact_or_source: Any, tp=None, reference: bool = False, *, dtype: torch.dtype = torch.float32,
               device: str | torch.device = "cpu", tensors=None, float_source=None, presliced: bool = False,
               split_parts: bool = False, schemes: dict[str, str] | None = None) -> Binder:
    """A Binder for a float TensorSource, an artifact (directory or opened reader) or a source + `tensors`.

    tp: a TPContext (rank, world, group, device): the rank's slices (or, with `presliced`, a `compress cut`
    unit that holds them already) wrapped in the TP binder. float_source: the float tensors of an artifact
    when not its own anti_weight/ (a cut unit's CutUnitSource). schemes: module -> scheme name for `tensors`
    that carry no manifest (in-memory or synthetic tensors; default: inferred from the tensors).
    """
    from .quant.binder import QuantBinder

    obj = artifact_or_source
    if isinstance(obj, (str, Path)):
        from .quant.artifact import open_artifact

        obj = open_artifact(Path(obj))
    art = obj if _is_artifact(obj) else None
    if art is not None:
        if float_source is None:
            from .loaders import open_source
            from .quant.artifact import ANTI_DIR

            float_source = open_source(Path(art.root) / ANTI_DIR)
        source = float_source
    else:
        source = obj
    dev = torch.device(tp.device if tp is not None else device)
    plan = None
    if tp is not None:
        from .parallel.plan import TPPlan

        plan = TPPlan.make(source.config, tp.world)
    slice_here = plan is not None and not presliced
    if art is not None:  # int8 weights held once, or with oneDNN's prefill copy too, by what fits
        from .quant.weight_copies import plan_for

        qw = Path(art.root) / "quant_weight.safetensors"
        plan_for((qw.stat().st_size if qw.exists() else 0) // (tp.world if slice_here else 1))

    if art is None and tensors is None:
        inner: Binder = FloatBinder(_sliced_source(source, plan, tp) if slice_here else source, dtype, dev)
    else:
        acc = tensors if art is None else art
        packing = None
        if art is not None:
            from .sparse.artifact import packing_of

            packing = packing_of(art.manifest)
        if packing is not None:
            from .sparse.artifact import PackedTensors, UnpackingAccessor
            from .sparse.binder import SparseBinder

            packed = PackedTensors(Path(art.root), packing)
            if slice_here:  # packed rows cannot be cut by columns: unpack to dense int8, then slice
                from .parallel.sources import SlicedTensors

                inner = QuantBinder(_sliced_source(source, plan, tp), SlicedTensors(UnpackingAccessor(art, packed),
                                    plan, tp.rank), dtype, dev, reference=reference, split_parts=split_parts)
            else:
                mode = "unpack" if reference else _packed_mode(dev)
                inner = SparseBinder(source, art, packed, dtype, dev, mode=mode, reference=reference)
        elif slice_here:
            from .parallel.sources import SlicedTensors

            inner = QuantBinder(_sliced_source(source, plan, tp), SlicedTensors(acc, plan, tp.rank), dtype, dev,
                                reference=reference, split_parts=split_parts, schemes=schemes)
        else:
            inner = QuantBinder(source, acc, dtype, dev, reference=reference, split_parts=split_parts,
                                schemes=schemes)
    if tp is None:
        return inner
    from .parallel.binder import TPBinder

    return TPBinder(inner, plan, tp.rank, tp.group)


def _sliced_source(source, plan, tp):
    from .parallel.sources import SlicedSource

    return SlicedSource(source, plan, tp.rank)
