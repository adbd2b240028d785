"""File-level rules shared by every directory format: checksums, the manifest writer, tensor files.

One writer: a manifest lists the sha256 and size of every file under its directory except itself, and
is JSON with sorted keys (indent 1, trailing newline), so equal inputs give equal bytes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..fingerprint import sha256_file  # noqa: F401  (one checksum for every file we write or resume from)

# fixed safetensors metadata: no timestamps, no host names, so equal inputs give equal bytes
ST_METADATA = {"format": "pt"}


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """safetensors with sorted keys and fixed metadata: byte-identical for identical tensors."""
    ordered = {k: tensors[k].contiguous() for k in sorted(tensors)}
    save_file(ordered, str(path), metadata=ST_METADATA)


def file_table(root: Path, manifest_name: str) -> dict[str, dict[str, Any]]:
    """{relative path: {sha256, bytes}} of every file under `root` but its own manifest."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(root.rglob("*")) if p.is_file() and p.relative_to(root).as_posix() != manifest_name}


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"


def write_manifest(root: Path, manifest: dict[str, Any], manifest_name: str) -> dict[str, Any]:
    """Hash every file under `root` into manifest["files"] and write it as `root/manifest_name`."""
    m = dict(manifest)
    m["files"] = file_table(root, manifest_name)
    (Path(root) / manifest_name).write_text(dump_json(m))
    return m


def check_files(root: Path, listed: dict[str, Any], manifest_name: str, prefix: str = "") -> list[str]:
    """Missing, altered or unlisted files of `root` (only those under `prefix` when given)."""
    root = Path(root)
    problems = []
    for rel, info in sorted(listed.items()):
        if not rel.startswith(prefix):
            continue
        p = root / rel
        if not p.is_file():
            problems.append(f"missing file {rel}")
        elif p.stat().st_size != info.get("bytes") or sha256_file(p) != info.get("sha256"):
            problems.append(f"checksum mismatch in {rel}")
    base = root / prefix if prefix else root
    if base.is_dir():
        for p in sorted(base.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and rel != manifest_name and rel not in listed:
                problems.append(f"unlisted file {rel}")
    return problems
