"""`compress cut`: split a float model or a quantized artifact into one unit per tensor-parallel rank.

The format (runtime/parallel/cutdir.py) is read by the runtime under torchrun; the slicing rules
(head boundaries, the KV-head rule, row/column splits) are runtime/parallel/plan.py's, so what is
cut here and what the runtime slices at load time are the same tensors.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterable

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from runtime.atomic import atomic_dir
from runtime.errors import UserError
from runtime.format import Producer, sha256_file, write_manifest
from runtime.parallel.cutdir import FORMAT_NAME, FORMAT_VERSION, MANIFEST, UNIT_INFO, unit_dir
from runtime.parallel.plan import TPPlan

SHARD_BYTES = 1 << 30  # a rank's unit is written shard by shard: at most ~1 GiB of slices in RAM


def dir_checksum(root: Path, skip: Iterable[str] = ()) -> str:
    """sha256 over every file's relative path and sha256: one number for a whole source directory."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel not in skip:
            h.update(f"{rel}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


def _float_names(source) -> list[str]:
    from runtime.loaders import weight_names

    names = weight_names(source.config)
    if source.config.tie_word_embeddings:
        names.append("lm_head.weight")  # each rank stores its vocabulary rows of the (tied) head
    return names


def write_float_unit(source, plan: TPPlan, rank: int, out: Path, bar: tqdm | None = None) -> None:
    """config.json (the full model's) + this rank's slices, sharded, under the checkpoint's names."""
    out.mkdir(parents=True)
    shards: list[str] = []
    buf: dict[str, torch.Tensor] = {}
    size = 0

    def flush() -> None:
        nonlocal buf, size
        if buf:
            fn = f"model-{len(shards) + 1:05d}.safetensors"
            save_file(buf, str(out / fn), metadata={"format": "pt"})
            shards.append(fn)
        buf, size = {}, 0

    dtype = None
    for name in _float_names(source):
        t = plan.slice(name, source.get(name), rank).contiguous().clone()  # own storage, not a view of the whole
        dtype = dtype or t.dtype
        nb = t.numel() * t.element_size()
        if size and size + nb > SHARD_BYTES:
            flush()
        buf[name] = t
        size += nb
        if bar is not None:
            bar.update(1)
    flush()
    cfg = source.config.to_hf()
    cfg["torch_dtype"] = str(dtype).removeprefix("torch.")
    cfg["tensor_parallel"] = {"rank": rank, "world_size": plan.world}
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))


def _manifest(tmp: Path, plan: TPPlan, kind: str, source: dict[str, Any]) -> dict[str, Any]:
    m = {"format": {"name": FORMAT_NAME, "version": FORMAT_VERSION}, "producer": Producer.current().to_dict(),
         "world_size": plan.world, "kind": kind, "source": source, "plan": plan.describe(),
         "ranks": [{"rank": r, "dir": unit_dir(Path(""), r).as_posix()} for r in range(plan.world)]}
    return write_manifest(tmp, m, MANIFEST)


def _unit_info(out: Path, plan: TPPlan, rank: int, source_sha: str) -> None:
    (out / UNIT_INFO).write_text(json.dumps({"format": FORMAT_NAME, "world_size": plan.world, "rank": rank,
                                             "source_sha256": source_sha}, indent=1, sort_keys=True) + "\n")


def cut_float(src: str, world: int, out: Path, tokenizer: str | None = None, overwrite: bool = False,
              progress: bool = True) -> dict[str, Any]:
    from runtime.loaders import open_source
    from runtime.loading import imported_dir, tokenizer_for
    from runtime.presets import resolve_model

    ref = resolve_model(src, tokenizer=tokenizer)
    hf = imported_dir(ref, progress=progress)
    source = open_source(hf)
    plan = TPPlan.make(source.config, world)  # refuse before writing anything
    # a checkpoint without a tokenizer is still cut; `runtime run` then needs --tokenizer
    tok = tokenizer_for(ref, source) if ref.tokenizer is not None or source.tokenizer_path() else None
    sha = dir_checksum(hf)
    names = _float_names(source)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        with tqdm(total=len(names) * world, desc=f"cut --tp {world}", unit="tensor", disable=not progress) as bar:
            for r in range(world):
                u = unit_dir(tmp, r)
                write_float_unit(source, plan, r, u, bar)
                if tok is not None:
                    tok.save(u)
                _unit_info(u, plan, r, sha)
        m = _manifest(tmp, plan, "float", {"name": ref.name, "path": str(hf), "sha256": sha})
    return m


def cut_artifact(src: Path, world: int, out: Path, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Each rank's unit is itself a complete artifact (artifact.json names its rank and world)."""
    from runtime.loaders import open_source
    from runtime.quant.artifact import ANTI_DIR, KINDS, MANIFEST as ART_MANIFEST, kind_file, open_artifact, \
        save_tensors, write_manifest

    art = open_artifact(src)  # refuses a damaged or unknown-version artifact
    if "packing" in art.manifest:  # packed rows cannot be cut by columns: pack is the last stage
        raise UserError(f"{src} is a packed artifact (compress pack): cut the artifact before packing it — "
                        "`compress unpack` it, cut that, then pack the cut directory (each rank is packed)")
    fsrc = open_source(src / ANTI_DIR)
    plan = TPPlan.make(fsrc.config, world)
    sha = sha256_file(src / ART_MANIFEST)  # the manifest holds every file's sha256
    names = art.names()
    with atomic_dir(out, overwrite=overwrite) as tmp:
        total = world * (len(_float_names(fsrc)) + len(names))
        with tqdm(total=total, desc=f"cut --tp {world}", unit="tensor", disable=not progress) as bar:
            for r in range(world):
                u = unit_dir(tmp, r)
                write_float_unit(fsrc, plan, r, u / ANTI_DIR, bar)
                for f in sorted((src / ANTI_DIR).iterdir()):  # tokenizer files travel with every unit
                    if f.is_file() and f.suffix != ".safetensors" and f.name not in ("config.json",) \
                            and not f.name.endswith(".index.json"):
                        shutil.copy2(f, u / ANTI_DIR / f.name)
                for kind in KINDS:
                    ts = {n: plan.slice(n, art.tensor(n), r).contiguous().clone()
                          for n in names if n.endswith("." + kind)}
                    bar.update(len(ts))
                    if ts:
                        save_tensors(u / kind_file(kind), ts)
                m = {k: v for k, v in art.manifest.items() if k != "files"}
                m["tensor_parallel"] = {"rank": r, "world_size": world, "source_sha256": sha,
                                        "plan": plan.describe()}
                write_manifest(u, m)
        name = art.manifest.get("source", {}).get("name", src.name)
        return _manifest(tmp, plan, "artifact", {"name": name, "path": str(src), "sha256": sha})


def cut(src: str, world: int, out: Path, tokenizer: str | None = None, overwrite: bool = False,
        progress: bool = True) -> dict[str, Any]:
    """Cut `src` (model preset / HF dir / GGUF / llama2.c, or an artifact directory) into `world` units."""
    from runtime.atomic import check_out

    check_out(out, overwrite)  # before the work (an import or a 7B slicing)
    p = Path(src).expanduser()
    if p.is_dir() and (p / "cut.json").exists():
        raise UserError(f"{src} is already a cut directory: cut the original model or artifact instead")
    if p.is_dir() and (p / "artifact.json").exists():
        return cut_artifact(p, world, out, overwrite, progress)
    return cut_float(src, world, out, tokenizer, overwrite, progress)
