"""Exports of an artifact to serving engines' formats (`compress export --format F ART --out DIR`).

compressed_tensors.py: Hugging Face checkpoint, compressed-tensors "int-quantized" (transformers, vLLM).
msmodelslim.py: msModelSlim's AscendV1 layout (MindIE / ATB, vLLM-Ascend); msmodelslim_reader.py reads it back.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from runtime.errors import UserError

FORMATS = ("compressed-tensors", "msmodelslim")


def _writer(fmt: str) -> Callable[..., dict[str, Any]]:
    if fmt == "compressed-tensors":
        from .compressed_tensors import export_compressed_tensors

        return export_compressed_tensors
    from .msmodelslim import export_msmodelslim

    return export_msmodelslim


def export_artifact(artifact: Path, fmt: str, out: Path, overwrite: bool = False) -> dict[str, Any]:
    """Check `artifact`, then write `out` whole or not at all (runtime/atomic.py); returns a summary."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    from .source import open_for_export

    src = open_for_export(Path(artifact), fmt)
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists: choose another --out or pass --force")
    return _writer(fmt)(src, out, overwrite=overwrite)
