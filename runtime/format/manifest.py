"""Typed manifests of the three directory kinds: artifact, packed artifact (an artifact with a `packing`
section) and `compress cut` directory. Parsing checks the shape of every field it knows and keeps the
rest verbatim (sections later stages add), so parse -> to_dict -> JSON reproduces the file byte for byte.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import UserError
from .version import check_format


@dataclass(frozen=True)
class FormatSpec:
    name: str
    version: str
    manifest: str | None  # the manifest file at the directory root (None: a section inside another)
    what: str  # for messages
    fix: str  # what to do when the major version is not ours


ARTIFACT = FormatSpec("llama-compress-artifact", "1.3.0", "artifact.json", "llama-compress artifact",
                      "upgrade llama-compress to a release that reads it, or re-create the artifact with this "
                      "version's compress quantize")
CUT = FormatSpec("llama-compress-tp-cut", "1.0.0", "cut.json", "`compress cut` directory",
                 "re-cut the model with this version's compress cut")
# what a writer puts in format.version: the oldest minor that holds everything the artifact uses, so an
# artifact without a 1.3 feature (kv_prefix) stays a 1.2.0 artifact
ARTIFACT_BASE_VERSION = "1.2.0"


def artifact_version(manifest: dict[str, Any]) -> str:
    return ARTIFACT.version if manifest.get("kv_prefix") else ARTIFACT_BASE_VERSION


PACKED = FormatSpec("llama-compress-packed-int8", "1.0.0", None, "packed int8 weight section",
                    "upgrade llama-compress or `compress unpack` the artifact with the release that packed it")


def producer_version() -> str:
    try:
        from importlib.metadata import version

        return version("llama-compress")
    except Exception:  # not installed: a source checkout
        return "0+source"


@dataclass(frozen=True)
class Producer:
    name: str
    version: str
    torch: str | None = None

    @classmethod
    def current(cls) -> "Producer":
        return cls("llama-compress", producer_version(), torch.__version__.split("+")[0])

    @classmethod
    def parse(cls, p: Any, where: str) -> "Producer":
        if isinstance(p, str):  # cut.json of cut format 1.0 before 1.2 artifacts: "llama-compress 0.1.0"
            name, _, ver = p.partition(" ")
            return cls(name, ver)
        if not isinstance(p, dict) or "name" not in p:
            raise UserError(f"{where}: 'producer' is {p!r}, not {{name, version, torch}}: the manifest is damaged")
        return cls(str(p["name"]), str(p.get("version", "?")), p.get("torch"))

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "version": self.version}
        if self.torch is not None:
            d["torch"] = self.torch
        return d


def _dict(m: dict, key: str, where: str, required: bool = True) -> dict:
    v = m.get(key)
    if v is None and not required:
        return {}
    if not isinstance(v, dict):
        raise UserError(f"{where}: '{key}' is {type(v).__name__}, not an object: the manifest is damaged; "
                        "re-create it with the compress stage that wrote it")
    return v


def _files(m: dict, where: str) -> dict[str, dict[str, Any]]:
    files = _dict(m, "files", where, required=False)
    for rel, info in files.items():
        if not isinstance(info, dict) or not isinstance(info.get("sha256"), str) or not isinstance(info.get("bytes"), int):
            raise UserError(f"{where}: files[{rel!r}] is not {{sha256, bytes}}: the manifest is damaged")
    return files


@dataclass
class ArtifactManifest:
    """artifact.json (docs/ARTIFACT.md). `schemes`: module -> scheme name (runtime/schemes), since 1.2."""

    version: str
    producer: Producer
    modules: dict[str, str]
    schemes: dict[str, str]
    fallback: dict[str, Any]
    method: dict[str, Any]
    files: dict[str, dict[str, Any]]
    packing: dict[str, Any] | None
    raw: dict[str, Any] = field(repr=False)  # every key as read (or to be written)

    @classmethod
    def parse(cls, m: Any, where: str) -> "ArtifactManifest":
        if not isinstance(m, dict):
            raise UserError(f"{where} is not a JSON object: the artifact is damaged; re-run compress quantize")
        version = check_format(m.get("format", {}), ARTIFACT.name, ARTIFACT.version, where, ARTIFACT.what,
                               ARTIFACT.fix)
        modules = _dict(m, "modules", where, required=False)
        schemes = _dict(m, "schemes", where, required=False)
        packing = m.get("packing")
        if packing is not None:
            check_format({"name": _dict(m, "packing", where).get("format"), "version": packing.get("version")},
                         PACKED.name, PACKED.version, where, PACKED.what, PACKED.fix)
        return cls(version, Producer.parse(m.get("producer", {"name": "?"}), where), modules, schemes,
                   _dict(m, "fallback", where, required=False), _dict(m, "method", where, required=False),
                   _files(m, where), packing, m)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)


@dataclass
class CutManifest:
    """cut.json: world size, kind ("float" | "artifact"), source, the slicing plan, every file's sha256."""

    version: str
    producer: Producer
    world_size: int
    kind: str
    source: dict[str, Any]
    files: dict[str, dict[str, Any]]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def parse(cls, m: Any, where: str) -> "CutManifest":
        if not isinstance(m, dict):
            raise UserError(f"{where} is not a JSON object: the cut directory is damaged; re-run compress cut")
        version = check_format(m.get("format", {}), CUT.name, CUT.version, where, CUT.what, CUT.fix)
        kind = m.get("kind")
        if kind not in ("float", "artifact"):
            raise UserError(f"{where}: kind {kind!r} is neither float nor artifact: the manifest is damaged")
        try:
            world = int(m["world_size"])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{where}: no integer world_size: the manifest is damaged; re-run compress cut") from None
        return cls(version, Producer.parse(m.get("producer", {"name": "?"}), where), world, kind,
                   _dict(m, "source", where, required=False), _files(m, where), m)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)
