"""The artifact's files from a finished work directory, one tensor in memory at a time.

anti_weight/ is the work directory's float files themselves: head.safetensors and one
layer-NNNNN.float.safetensors per layer are its shards, taken as hard links (no second copy of the 13-26 GB of
float weights on disk, no time spent copying; the files are byte-identical either way), with the index,
config and tokenizer of runtime/hf_export.py. Each tensor-kind file is written by the streamed safetensors
writer from the layers' int8 files: neither needs the model in memory.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path
from typing import Iterable

import torch
from safetensors import safe_open

from runtime.config import ModelConfig
from runtime.format.streamed import PendingTensor, save_tensors_streamed
from runtime.hf_export import write_hf_metadata
from runtime.loaders.base import weight_names
from runtime.quant.artifact import group_by_kind, kind_file

from .workdir import WorkDir

_ST_DTYPES = {"BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "F16": torch.float16,
              "BF16": torch.bfloat16, "I32": torch.int32, "F32": torch.float32, "F64": torch.float64,
              "I64": torch.int64}


def tensor_index(path: Path) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    """name -> (dtype, shape) from a safetensors header, without reading the data."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    return {k: (_ST_DTYPES[v["dtype"]], tuple(v["shape"])) for k, v in h.items() if k != "__metadata__"}


class _Files:
    """One open safetensors handle at a time: a file's pages stay mapped (and counted in the resident
    memory) only while its tensors are read, not for the whole 13-26 GB of a LLaMA-2 artifact."""

    def __init__(self) -> None:
        self.key: str | None = None
        self.handle = None

    def get(self, path: Path, name: str) -> torch.Tensor:
        key = str(path)
        if key != self.key:
            self.handle = None  # closes the previous map
            self.handle, self.key = safe_open(key, framework="pt"), key
        return self.handle.get_tensor(name)


def link_or_copy(src: Path, dst: Path) -> bool:
    """Hard-link `src` as `dst` (True), or copy it where the file system has no hard links (False)."""
    try:
        os.link(src, dst)
        return True
    except OSError:
        shutil.copyfile(src, dst)
        return False


def link_anti_weight(work: WorkDir, config: ModelConfig, dtype: torch.dtype, tokenizer, out: Path) -> int:
    """Write anti_weight/ into the (new, empty) directory `out` from the work directory's float files; returns
    how many shards had to be copied rather than linked. Every weight of `config` must be there once, in
    `dtype` (the source's): what a straight export of the same tensors would hold."""
    out.mkdir()
    shards = [work.head_file] + [work.float_file(i) for i in range(config.num_hidden_layers)]
    n = len(shards)
    weight_map: dict[str, str] = {}
    copied = 0
    for k, src in enumerate(shards):
        name = f"model-{k + 1:05d}-of-{n:05d}.safetensors"
        for t, (dt, _) in tensor_index(src).items():
            if dt != dtype or t in weight_map:
                raise RuntimeError(f"{src}: {t} is {dt} (expected {dtype}) or held twice: a damaged work directory")
            weight_map[t] = name
        copied += not link_or_copy(src, out / name)
    missing = set(weight_names(config)) - set(weight_map)
    if missing or len(weight_map) != len(weight_names(config)):
        raise RuntimeError(f"the work directory {work.path} lacks {sorted(missing)[:3]} or holds extra weights")
    write_hf_metadata(out, config, dtype, tokenizer, weight_map)
    return copied


def write_kind_files(root: Path, work: WorkDir, n_layers: int, skip_modules: set[str],
                     extra: dict[str, torch.Tensor]) -> None:
    """One `<kind>.safetensors` per tensor kind: the layers' int8 tensors of every module not in
    `skip_modules` (the float-fallback ones), plus `extra` (in memory: e.g. W8A16 tensors of those)."""
    files = _Files()
    pending: dict[str, list[PendingTensor]] = {}
    for i in range(n_layers):
        p = work.layer_file(i)
        for n, (dt, shape) in tensor_index(p).items():
            if n.rsplit(".", 1)[0] in skip_modules:
                continue
            pending.setdefault(n.rsplit(".", 1)[1], []).append(
                PendingTensor(n, dt, shape, lambda p=p, n=n: files.get(p, n)))
    for kind, ts in group_by_kind(extra).items():
        pending.setdefault(kind, []).extend(PendingTensor(n, t.dtype, tuple(t.shape), lambda t=t: t)
                                            for n, t in ts.items())
    for kind, items in sorted(pending.items()):
        group_by_kind({it.name: torch.empty(0) for it in items})  # refuses unknown kinds, as the writer does
        save_tensors_streamed(root / kind_file(kind), items)


def layer_float_weights(work: WorkDir, modules: Iterable[str]) -> dict[str, torch.Tensor]:
    """The smoothed float weights of `modules` (from their layers' files)."""
    files = _Files()
    out = {}
    for m in modules:
        i = int(m.split(".")[2])
        out[m] = files.get(work.float_file(i), f"{m}.weight")
    return out
