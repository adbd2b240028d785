"""The one reader-side check of every directory kind: format and version, every file's sha256, and
(artifacts) the manifest's claims against the tensors. `compress verify` prints what it returns; the
loaders raise on the first problems (check_or_raise)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from safetensors import safe_open

from ..errors import UserError
from .claims import claim_problems
from .files import check_files
from .manifest import ARTIFACT, CUT, ArtifactManifest, CutManifest

ANTI_DIR = "anti_weight"


def _load_json(path: Path, what: str, fix: str) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e}): the {what} is damaged; {fix}") from None


def kind_of(root: Path) -> str:
    """"cut", "packed artifact" or "artifact"; a UserError for anything else."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a directory: pass the --out directory of compress quantize / sparse / "
                        "pack / cut")
    if (root / CUT.manifest).is_file():
        return "cut"
    if (root / ARTIFACT.manifest).is_file():
        return "packed artifact" if "packing" in read_artifact_manifest(root) else "artifact"
    raise UserError(f"{root} has neither {ARTIFACT.manifest} nor {CUT.manifest}: it is not a llama-compress "
                    "artifact or cut directory (or was copied incompletely); re-create it or copy the whole directory")


def read_artifact_manifest(root: Path) -> dict[str, Any]:
    """artifact.json as a dict, after checking its format, major version, field shapes and tensor kinds."""
    from ..schemes import ARTIFACT_KINDS

    root = Path(root)
    mf = root / ARTIFACT.manifest
    if not root.is_dir():
        raise UserError(f"{root} is not an artifact directory: pass the --out directory of compress quantize")
    if not mf.exists():
        raise UserError(f"{root} has no {ARTIFACT.manifest}: it is not a llama-compress artifact (or was copied "
                        "incompletely); re-run compress quantize or copy the whole directory")
    m = ArtifactManifest.parse(_load_json(mf, "artifact", "re-run compress quantize"), str(mf))
    unknown = sorted(f for f in m.files if "/" not in f and f.endswith(".safetensors")
                     and f.split(".")[0] not in ARTIFACT_KINDS)
    if unknown:  # a newer minor version's tensor kinds: ignoring them would compute the wrong function
        raise UserError(f"{root} (format {m.version}) holds tensor files this runtime does not know "
                        f"({', '.join(unknown)}): upgrade llama-compress to read it")
    return m.to_dict()


def tensor_names(root: Path, manifest: dict[str, Any]) -> set[str]:
    """Every "<module>.<kind>" an artifact holds (headers only), the packed weights as quant_weight."""
    from ..schemes import ARTIFACT_KINDS

    names: set[str] = set()
    for kind in ARTIFACT_KINDS:
        p = Path(root) / f"{kind}.safetensors"
        if p.is_file():
            with safe_open(str(p), framework="pt") as h:
                names.update(h.keys())
    packing = manifest.get("packing") or {}
    names.update(f"{mod}.quant_weight" for mod in packing.get("modules", {}))
    return names


def verify_artifact(root: Path, manifest: dict[str, Any] | None = None,
                    has: Callable[[str], bool] | None = None,
                    tensor: Callable[[str], Any] | None = None) -> list[str]:
    """Missing, altered or unlisted files, then manifest claims the tensors contradict."""
    root = Path(root)
    m = manifest or read_artifact_manifest(root)
    problems = check_files(root, m.get("files", {}), ARTIFACT.manifest)
    if problems:
        return problems  # claims are only meaningful over intact files
    if has is None:
        names = tensor_names(root, m)
        has = names.__contains__
    if tensor is None:
        def tensor(name: str):
            with safe_open(str(root / f"{name.rsplit('.', 1)[1]}.safetensors"), framework="pt") as h:
                return h.get_tensor(name)
    return claim_problems(m, has, tensor)


def read_cut_manifest(root: Path) -> dict[str, Any]:
    mf = Path(root) / CUT.manifest
    if not mf.is_file():
        raise UserError(f"{root} has no {CUT.manifest}: it is not a `compress cut` directory")
    return CutManifest.parse(_load_json(mf, "cut directory", "re-run compress cut"), str(mf)).to_dict()


def unit_dir(root: Path, rank: int) -> Path:
    return Path(root) / f"rank_{rank}"


def verify_cut(root: Path, manifest: dict[str, Any] | None = None) -> list[str]:
    """Every listed file of every rank, and each artifact unit as an artifact of its own."""
    root = Path(root)
    m = manifest or read_cut_manifest(root)
    problems = check_files(root, m.get("files", {}), CUT.manifest)
    for r in range(int(m["world_size"])):
        u = unit_dir(root, r)
        if not u.is_dir():
            problems.append(f"missing rank directory {u.name}/")
        elif m["kind"] == "artifact":
            problems += [f"{u.name}: {p}" for p in verify_artifact(u)]
        elif not (u / "config.json").is_file():
            problems.append(f"{u.name}: no config.json (not a float unit)")
    return problems


def verify_dir(root: Path) -> tuple[str, dict[str, Any], list[str]]:
    """(kind, manifest, problems) for an artifact, a packed artifact or a cut directory."""
    kind = kind_of(root)
    if kind == "cut":
        m = read_cut_manifest(root)
        return kind, m, verify_cut(root, m)
    m = read_artifact_manifest(root)
    return kind, m, verify_artifact(root, m)


def raise_problems(root: Path, what: str, problems: list[str], fix: str) -> None:
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise UserError(f"{what} {root} failed its check: {'; '.join(problems[:3])}{more}. {fix} "
                        "(`compress verify DIR` lists every problem)")
