"""The compressed-artifact format: the one module that reads, writes and verifies it.

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

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import UserError

FORMAT_NAME = "llama-compress-artifact"
FORMAT_VERSION = "1.1.0"
MANIFEST = "artifact.json"
ANTI_DIR = "anti_weight"
KINDS = ("quant_weight", "weight_scale", "deq_scale", "input_scale", "input_offset", "fp_bias", "input_hadamard")
# fixed safetensors metadata: no timestamps, no host names, so equal inputs give equal bytes
ST_METADATA = {"format": "pt"}


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                return h.hexdigest()
            h.update(b)


def kind_file(kind: str) -> str:
    return f"{kind}.safetensors"


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """safetensors with sorted keys and fixed metadata: byte-identical for identical tensors."""
    ordered = {k: tensors[k].contiguous() for k in sorted(tensors)}
    save_file(ordered, str(path), metadata=ST_METADATA)


def write_manifest(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Hash every file under `root` (except the manifest) into manifest["files"] and write it."""
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            files[p.relative_to(root).as_posix()] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    manifest = dict(manifest)
    manifest["files"] = files
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def _major(v: str) -> int:
    try:
        return int(str(v).split(".")[0])
    except ValueError:
        raise UserError(f"artifact format version {v!r} is not a semantic version: the artifact.json is damaged; "
                        "re-run compress quantize") from None


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest, after checking it names our format and a major version we understand."""
    root = Path(root)
    mf = root / MANIFEST
    if not root.is_dir():
        raise UserError(f"{root} is not an artifact directory: pass the --out directory of compress quantize")
    if not mf.exists():
        raise UserError(f"{root} has no {MANIFEST}: it is not a llama-compress artifact (or was copied "
                        "incompletely); re-run compress quantize or copy the whole directory")
    try:
        m = json.loads(mf.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{mf} is not valid JSON ({e}): the artifact is damaged; re-run compress quantize") from None
    fmt = m.get("format", {})
    if fmt.get("name") != FORMAT_NAME:
        raise UserError(f"{mf} describes format {fmt.get('name')!r}, not {FORMAT_NAME!r}: this is not a "
                        "llama-compress artifact")
    if _major(fmt.get("version", "?")) != _major(FORMAT_VERSION):
        raise UserError(f"{root} uses artifact format {fmt.get('version')}, but this runtime reads major version "
                        f"{_major(FORMAT_VERSION)} ({FORMAT_VERSION}): upgrade llama-compress to a release that "
                        "reads it, or re-create the artifact with this version's compress quantize")
    unknown = sorted(f for f in m.get("files", {}) if "/" not in f and f.endswith(".safetensors")
                     and f.split(".")[0] not in KINDS)
    if unknown:  # a newer minor version's tensor kinds: ignoring them would compute the wrong function
        raise UserError(f"{root} (format {fmt.get('version')}) holds tensor files this runtime does not know "
                        f"({', '.join(unknown)}): upgrade llama-compress to read it")
    return m


def verify(root: Path, manifest: dict[str, Any] | None = None) -> list[str]:
    """Problems found (empty when the artifact is intact): missing, extra or altered files."""
    root = Path(root)
    m = manifest or read_manifest(root)
    problems = []
    listed = m.get("files", {})
    for rel, info in sorted(listed.items()):
        p = root / rel
        if not p.exists():
            problems.append(f"missing file {rel}")
        elif p.stat().st_size != info["bytes"] or sha256_file(p) != info["sha256"]:
            problems.append(f"checksum mismatch in {rel}")
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and p.name != MANIFEST and rel not in listed:
            problems.append(f"unlisted file {rel}")
    return problems


def check_or_raise(root: Path, manifest: dict[str, Any] | None = None) -> None:
    problems = verify(root, manifest)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UserError(f"artifact {root} failed its checksum check: {'; '.join(problems[:3])}{more}. The files were "
                        "changed or copied incompletely: copy the artifact again or re-run compress quantize "
                        "(`compress verify DIR` lists every problem)")


@dataclass
class ArtifactReader:
    """Name -> tensor access over an artifact's tensor files (lazy, one handle per file)."""

    root: Path
    manifest: dict[str, Any]

    def __post_init__(self) -> None:
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
    root = Path(root)
    m = read_manifest(root)
    if check:
        check_or_raise(root, m)
    return ArtifactReader(root, m)


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


TensorAccessor = Callable[[str], torch.Tensor]
