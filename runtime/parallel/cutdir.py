"""The `compress cut` output format: one loadable unit per rank plus a manifest (`cut.json`).

    cut.json        format name/version, world_size, kind ("float" | "artifact"), the source and its
                    sha256, the slicing plan (KV-head rule applied), and the sha256 of every file
    rank_0/ ...     rank 0's unit: a float unit (config.json of the full model, this rank's slices in
                    model-*.safetensors, tokenizer files, unit.json) or, for an artifact, a complete
                    artifact directory whose artifact.json carries "tensor_parallel": {rank, world_size}
    rank_1/ ...

Units keep the checkpoint's tensor names; only their shapes are the rank's slice.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..errors import UserError

FORMAT_NAME = "llama-compress-tp-cut"
FORMAT_VERSION = "1.0.0"
MANIFEST = "cut.json"
UNIT_INFO = "unit.json"


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def unit_dir(root: Path, rank: int) -> Path:
    return Path(root) / f"rank_{rank}"


def is_cut_dir(path: str | Path | None) -> bool:
    return path is not None and (Path(path) / MANIFEST).is_file()


def read_cut_manifest(root: Path) -> dict[str, Any]:
    mf = Path(root) / MANIFEST
    if not mf.is_file():
        raise UserError(f"{root} has no {MANIFEST}: it is not a `compress cut` directory")
    try:
        m = json.loads(mf.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{mf} is not valid JSON ({e}): the cut directory is damaged; re-run compress cut") from None
    fmt = m.get("format", {})
    if fmt.get("name") != FORMAT_NAME:
        raise UserError(f"{mf} describes format {fmt.get('name')!r}, not {FORMAT_NAME!r}")
    if str(fmt.get("version", "?")).split(".")[0] != FORMAT_VERSION.split(".")[0]:
        raise UserError(f"{root} uses cut format {fmt.get('version')}, this runtime reads {FORMAT_VERSION}: "
                        "re-cut the model with this version's compress cut")
    return m


def verify_unit(root: Path, manifest: dict[str, Any], rank: int) -> None:
    """Check the sha256 of every file of rank `rank`'s unit against the manifest."""
    prefix = f"{unit_dir(Path('.'), rank).name}/"
    listed = {k: v for k, v in manifest["files"].items() if k.startswith(prefix)}
    if not listed:
        raise UserError(f"{root}/{MANIFEST} lists no files for rank {rank}: re-run compress cut")
    bad = []
    for rel, info in sorted(listed.items()):
        p = Path(root) / rel
        if not p.is_file():
            bad.append(f"missing {rel}")
        elif p.stat().st_size != info["bytes"] or sha256_file(p) != info["sha256"]:
            bad.append(f"checksum mismatch in {rel}")
    if bad:
        raise UserError(f"cut directory {root}, rank {rank}: {'; '.join(bad[:3])}. Copy the unit again or re-run "
                        "compress cut")
