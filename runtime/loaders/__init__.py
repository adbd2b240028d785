"""Readers of model checkpoints. Each yields a TensorSource: HF-named float tensors, HF layout."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .base import TensorSource, expected_shapes, weight_names

__all__ = ["TensorSource", "open_source", "expected_shapes", "weight_names"]


def open_source(path: str | Path) -> TensorSource:
    """Open an HF directory, a GGUF file or a llama2.c `.bin` checkpoint by what the path holds."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"model path {p} does not exist: pass an HF model directory, a .gguf file or a llama2.c .bin file")
    if p.is_dir():
        from .hf import HFDirSource

        return HFDirSource(p)
    with open(p, "rb") as f:
        magic = f.read(4)
    if magic == b"GGUF":
        from .gguf_file import GGUFSource

        return GGUFSource(p)
    if p.suffix == ".bin":
        from .llama2c import Llama2cSource

        return Llama2cSource(p)
    raise UserError(f"{p} is neither an HF directory, a GGUF file (magic 'GGUF') nor a llama2.c .bin checkpoint")
