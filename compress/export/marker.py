"""The small manifest `compress export` leaves in its output so that a later `--force` knows the directory
is ours (runtime/atomic.py check_out replaces only directories one of our manifests lists completely).

Neither compressed-tensors nor msModelSlim has a manifest of its own; their readers ignore this extra file.
It names no paths of this machine, so exporting the same artifact twice gives the same bytes.
"""
from __future__ import annotations

import json
from pathlib import Path

from runtime.atomic import EXPORT_MARKER, OWNED_MANIFESTS
from runtime.quant.artifact import MANIFEST, sha256_file


def write_export_marker(out: Path, fmt: str, artifact: Path) -> None:
    """List every file the writer put in `out` (a user's file added later is never deleted by --force)."""
    out = Path(out)
    files = {p.relative_to(out).as_posix(): {"bytes": p.stat().st_size}
             for p in sorted(out.rglob("*")) if p.is_file() and p.name != EXPORT_MARKER}
    m = {"format": {"name": OWNED_MANIFESTS[EXPORT_MARKER], "version": "1.0.0"}, "export_format": fmt,
         "source_manifest_sha256": sha256_file(Path(artifact) / MANIFEST), "files": files}
    (out / EXPORT_MARKER).write_text(json.dumps(m, indent=1, sort_keys=True) + "\n")
