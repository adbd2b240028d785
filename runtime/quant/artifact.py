"""The artifact directory of compress quantize: reader and writer helpers over runtime/format (the one format module).

Layout (docs/ARTIFACT.md is the full spec):

    artifact.json                 manifest: format, version, source, method, parameters, float units,
                                  scores, sha256 of every other file
    anti_weight/                  the smoothed float model in HF format (config.json, model.safetensors,
                                  tokenizer files): norms, embeddings, lm_head and float-fallback linears
    quant_weight.safetensors      "<module>.quant_weight"  int8 [out, in]
    weight_scale.safetensors      "<module>.weight_scale"  float32 [out]   (symmetric per output channel)
    deq_scale.safetensors         "<module>.deq_scale"     float32 [out]   (input_scale * weight_scale; static only)
    input_scale.safetensors       "<module>.input_scale"   float32 [1]     (static only)
    input_offset.safetensors      "<module>.input_offset"  float32 [1]     (static only, an integer value)
    fp_bias.safetensors           "<module>.fp_bias"       float32 [out]   (float bias added after dequant)
    input_hadamard.safetensors    "<module>.input_hadamard" int32 [1]      (optional, format >= 1.1: block size
                                  of an online Hadamard rotation of the input; quant_weight is W rotated alike)

<module> is the HF module name, e.g. "model.layers.3.self_attn.q_proj". Everything goes through
`ArtifactReader.tensor(name)` so a tensor-parallel wrapper can hand out sliced tensors instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors import safe_open

from ..errors import UserError
from ..format import ARTIFACT, ST_METADATA, save_tensors, sha256_file  # noqa: F401  (re-exported)
from ..format import write_manifest as _write_manifest
from ..format.verify import ANTI_DIR, raise_problems, read_artifact_manifest, verify_artifact
from ..schemes import ARTIFACT_KINDS

FORMAT_NAME = ARTIFACT.name
FORMAT_VERSION = ARTIFACT.version
MANIFEST = ARTIFACT.manifest
KINDS = tuple(ARTIFACT_KINDS)  # every tensor kind of every registered scheme (runtime/schemes)
FIX = "The files were changed or copied incompletely: copy the artifact again or re-run compress quantize"


def kind_file(kind: str) -> str:
    return f"{kind}.safetensors"


def write_manifest(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Hash every file under `root` (except the manifest) into manifest["files"] and write it."""
    return _write_manifest(root, manifest, MANIFEST)


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest, after checking it names our format and a major version we understand."""
    return read_artifact_manifest(root)


def verify(root: Path, manifest: dict[str, Any] | None = None) -> list[str]:
    """Problems found (empty when the artifact is intact): missing, extra or altered files, then manifest
    claims its tensors contradict (runtime/format/claims.py)."""
    return verify_artifact(root, manifest)


def check_or_raise(root: Path, manifest: dict[str, Any] | None = None) -> None:
    raise_problems(root, "artifact", verify(root, manifest), FIX)


@dataclass
class ArtifactReader:
    """Name -> tensor access over an artifact's tensor files (lazy, one handle per file)."""

    root: Path
    manifest: dict[str, Any]

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self._handles: dict[str, Any] = {}
        self._where: dict[str, Path] = {}
        for kind in KINDS:
            p = self.root / kind_file(kind)
            if p.exists():
                with safe_open(str(p), framework="pt") as h:
                    for k in h.keys():
                        self._where[k] = p

    def has(self, name: str) -> bool:
        return name in self._where

    def tensor(self, name: str) -> torch.Tensor:
        """e.g. tensor("model.layers.0.mlp.down_proj.deq_scale")."""
        p = self._where.get(name)
        if p is None:
            raise UserError(f"artifact {self.root} lacks tensor {name!r}: the artifact is incomplete or from another "
                            "model; re-run compress quantize")
        key = str(p)
        if key not in self._handles:
            self._handles[key] = safe_open(key, framework="pt")
        return self._handles[key].get_tensor(name)

    def names(self) -> list[str]:
        return sorted(self._where)


def open_artifact(root: Path, check: bool = True) -> ArtifactReader:
    """The reader, after the format/version check and (check=True) every sha256 and the manifest's claims."""
    root = Path(root)
    m = read_manifest(root)
    reader = ArtifactReader(root, m)
    if check:
        packed = {f"{mod}.quant_weight" for mod in (m.get("packing") or {}).get("modules", {})}
        raise_problems(root, "artifact", verify_artifact(root, m, lambda n: reader.has(n) or n in packed,
                                                      reader.tensor), FIX)
    return reader


def group_by_kind(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Split "<module>.<kind>" tensors into one dict per kind (one file per kind)."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        kind = name.rsplit(".", 1)[1]
        if kind not in KINDS:
            raise ValueError(f"unknown artifact tensor kind in {name!r}")
        out.setdefault(kind, {})[name] = t
    return out


def write_quant_tensors(root: Path, tensors: dict[str, torch.Tensor]) -> None:
    for kind, ts in group_by_kind(tensors).items():
        save_tensors(root / kind_file(kind), ts)


def iter_module_names(names: Iterable[str], kind: str = "quant_weight") -> list[str]:
    suf = "." + kind
    return sorted(n[: -len(suf)] for n in names if n.endswith(suf))

