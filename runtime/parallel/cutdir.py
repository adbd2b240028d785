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

from pathlib import Path
from typing import Any

from ..format import CUT, check_files, sha256_file  # noqa: F401  (sha256_file re-exported)
from ..format.verify import raise_problems, read_cut_manifest, unit_dir  # noqa: F401  (re-exported)
from ..errors import UserError

FORMAT_NAME = CUT.name
FORMAT_VERSION = CUT.version
MANIFEST = CUT.manifest
UNIT_INFO = "unit.json"


def is_cut_dir(path: str | Path | None) -> bool:
    return path is not None and (Path(path) / MANIFEST).is_file()


def verify_unit(root: Path, manifest: dict[str, Any], rank: int) -> None:
    """Check the sha256 of every file of rank `rank`'s unit against the manifest."""
    prefix = f"{unit_dir(Path('.'), rank).name}/"
    if not any(k.startswith(prefix) for k in manifest["files"]):
        raise UserError(f"{root}/{MANIFEST} lists no files for rank {rank}: re-run compress cut")
    problems = [p for p in check_files(root, manifest["files"], MANIFEST, prefix) if not p.startswith("unlisted")]
    raise_problems(f"{root} (rank {rank})", "cut directory", problems, "Copy the unit again or re-run compress cut.")
