"""The small manifest `compress import` leaves in its output so that `--force` knows the directory is ours.

An HF directory has no manifest of its own; without this one a later `compress import --out DIR --force`
could not tell a directory it wrote from a user's model directory, and refuses to replace it.
"""
from __future__ import annotations

import json
from pathlib import Path

from .atomic import IMPORT_MARKER, OWNED_MANIFESTS, atomic_write_text


def write_import_marker(out: Path, source: str) -> None:
    """List every file export_hf_dir wrote in `out` (so a user's file added later is never deleted)."""
    files = {p.relative_to(out).as_posix(): {"bytes": p.stat().st_size}
             for p in sorted(Path(out).rglob("*")) if p.is_file() and p.name != IMPORT_MARKER}
    m = {"format": {"name": OWNED_MANIFESTS[IMPORT_MARKER], "version": "1.0.0"}, "source": source, "files": files}
    atomic_write_text(Path(out) / IMPORT_MARKER, json.dumps(m, indent=1, sort_keys=True) + "\n")
