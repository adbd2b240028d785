"""Pack an artifact's int8 weights into the packed sparse form, and back, bit for bit.

Everything but quant_weight.safetensors is copied unchanged; the manifest gains a "packing" section (and loses
it again on unpack, so pack -> unpack gives back the original artifact.json and quant_weight.safetensors byte
for byte). A tensor-parallel cut artifact (rank_0/, rank_1/, ... each an artifact) is packed rank by rank.
"""
from __future__ import annotations

import json
import lzma
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as st_save
from tqdm import tqdm

from runtime.atomic import atomic_dir
from runtime.errors import UserError
from runtime.quant.artifact import (MANIFEST, ST_METADATA, check_or_raise, iter_module_names, kind_file,
                                    open_artifact, read_manifest, save_tensors, write_manifest)
from runtime.sparse.artifact import PACKED_FILE, PACKED_FORMAT, PACKED_VERSION, PackedTensors, packing_of
from runtime.schemes import infer, schemes_of
from runtime.schemes.packed_sparse import PACKED_SPARSE
from runtime.sparse.format import BLOCK, pack_int8

from ..memsource import DictTensors


class _Acc:
    """has(name) as the tensor accessor runtime.schemes.infer reads."""

    def __init__(self, has):
        self.has = has


CODECS = ("none", "lzma")
QW = kind_file("quant_weight")


def _ranks(root: Path) -> list[Path]:
    """The artifact directories to treat: the root itself, or its rank_*/ sub-artifacts when cut."""
    if (root / MANIFEST).exists():
        return [root]
    ranks = sorted(p for p in root.glob("rank_*") if (p / MANIFEST).exists())
    if not ranks:
        raise UserError(f"{root} is not an artifact (no {MANIFEST}) nor a cut artifact (no rank_*/): pass the "
                        "--out directory of compress quantize / sparse / cut")
    return ranks


def _refresh_cut_manifest(root: Path) -> None:
    """A cut directory's cut.json lists every file's sha256: re-hash after the ranks changed (same rules as cut)."""
    from runtime.format import write_manifest as write_any
    from runtime.parallel.cutdir import MANIFEST as CUT_MANIFEST

    mf = root / CUT_MANIFEST
    if not mf.exists():
        return
    write_any(root, json.loads(mf.read_text()), CUT_MANIFEST)


def _copy_except(src: Path, dst: Path, skip: set[str]) -> None:
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src).as_posix()
        if p.is_file() and rel not in skip and not any(rel.startswith(f"{s}/") for s in skip):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dst / rel)


def _pack_one(src: Path, dst: Path, codec: str, progress: bool) -> dict[str, Any]:
    art = open_artifact(src, check=True)
    m = art.manifest
    if packing_of(m) is not None:
        raise UserError(f"{src} is already packed: pass the unpacked artifact, or `compress unpack` it first")
    modules = iter_module_names(art.names())
    if not modules:
        raise UserError(f"{src} holds no int8 weights (quant_weight): nothing to pack")
    sch = schemes_of(m, art, modules)
    unpackable = sorted(f"{n} ({s.name})" for n, s in sch.items() if not s.can_pack)
    if unpackable:  # the packed kernel is W8A8 only; packing replaces the whole quant_weight file
        raise UserError(f"{src} has linears whose scheme cannot be packed: {', '.join(unpackable[:3])}"
                        f"{' ...' if len(unpackable) > 3 else ''}; re-quantize with --fallback-weights float to pack it")
    tensors: dict[str, torch.Tensor] = {}
    per_module: dict[str, Any] = {}
    dense = packed_bytes = 0
    for mod in tqdm(modules, desc=f"pack {src.name}", unit="linear", disable=not progress):
        q = art.tensor(f"{mod}.quant_weight")
        p = pack_int8(q)
        tensors[f"{mod}.packed_mask"] = p.mask
        tensors[f"{mod}.packed_values"] = p.values
        tensors[f"{mod}.packed_row_ptr"] = p.row_ptr
        tensors[f"{mod}.packed_shape"] = torch.tensor([p.rows, p.cols], dtype=torch.int64)
        dense += q.numel()
        packed_bytes += p.nbytes()
        per_module[mod] = {"shape": [p.rows, p.cols], "nnz": p.nnz, "sparsity": round(1 - p.nnz / q.numel(), 6),
                           "bytes": p.nbytes()}
    _copy_except(src, dst, {MANIFEST, QW})
    data = st_save({k: tensors[k].contiguous() for k in sorted(tensors)}, metadata=ST_METADATA)
    fname = PACKED_FILE
    if codec == "lzma":
        fname += ".xz"
        data = lzma.compress(data, preset=6)  # deterministic: same input, same bytes
    (dst / fname).write_bytes(data)
    m = {k: v for k, v in m.items() if k != "files"}
    if "schemes" in m:  # format 1.2: the packed linears are named as such (unpack names them back)
        m["schemes"] = {**m["schemes"], **{n: PACKED_SPARSE.name for n in modules}}
    m["packing"] = {
        "format": PACKED_FORMAT, "version": PACKED_VERSION, "file": fname, "codec": codec, "block": BLOCK,
        "layout": "per row: uint64 mask per 64 input columns + non-zero int8 values + int64 row_ptr",
        "replaces": QW, "dense_int8_bytes": dense, "packed_bytes": packed_bytes,
        "file_bytes": len(data), "ratio": round(packed_bytes / dense, 4), "file_ratio": round(len(data) / dense, 4),
        "modules": per_module,
    }
    write_manifest(dst, m)
    return m["packing"]


def pack_artifact(src: Path, out: Path, codec: str = "none", overwrite: bool = False,
                  progress: bool = True) -> list[dict[str, Any]]:
    """Write the packed copy of artifact `src` to `out`; returns each rank's packing summary."""
    if codec not in CODECS:
        raise UserError(f"--codec {codec!r}: use one of {', '.join(CODECS)}")
    return _per_rank(Path(src), Path(out), overwrite, lambda r, dst: _pack_one(r, dst, codec, progress))


def _per_rank(src: Path, out: Path, overwrite: bool, fn) -> list:
    """Apply fn(rank_dir, out_dir) to an artifact, or to each rank of a cut one, writing `out` atomically."""
    ranks = _ranks(src)
    res = []
    with atomic_dir(out, overwrite=overwrite) as tmp:
        if ranks != [src]:  # a cut artifact: files beside the rank directories are copied as they are
            _copy_except(src, tmp, {r.relative_to(src).as_posix() for r in ranks})
        for r in ranks:
            dst = tmp if r == src else tmp / r.name
            dst.mkdir(exist_ok=True)
            res.append(fn(r, dst))
        _refresh_cut_manifest(tmp)
    return res


def _unpack_one(src: Path, dst: Path, progress: bool) -> None:
    m = read_manifest(src)
    check_or_raise(src, m)
    packing = packing_of(m)
    if packing is None:
        raise UserError(f"{src} is not packed (its artifact.json has no 'packing' section): nothing to unpack")
    pt = PackedTensors(src, packing)
    art_has = open_artifact(src, check=False).has
    dense = {f"{mod}.quant_weight": pt.dense(mod) for mod in tqdm(pt.modules, desc=f"unpack {src.name}",
                                                                 unit="linear", disable=not progress)}
    _copy_except(src, dst, {MANIFEST, packing["file"]})
    save_tensors(dst / QW, dense)
    m = {k: v for k, v in m.items() if k not in ("files", "packing")}
    if "schemes" in m:  # back to the dense W8A8 scheme each packed linear came from
        dt = DictTensors(dense)
        has = lambda n: dt.has(n) or art_has(n)  # noqa: E731
        back = {mod: infer(_Acc(has), mod).name for mod in pt.modules}
        m["schemes"] = {**m["schemes"], **back}
    write_manifest(dst, m)


def unpack_artifact(src: Path, out: Path, overwrite: bool = False, progress: bool = True) -> None:
    """Restore the exact unpacked artifact (quant_weight.safetensors and artifact.json as before packing)."""
    _per_rank(Path(src), Path(out), overwrite, lambda r, dst: _unpack_one(r, dst, progress))
