"""The working directory of a streamed compress run: per-layer results, so a killed run resumes.

Beside the output, `.<out>.partial/` holds
    run.json                the fingerprint of the command (source checksum, options, calibration tokens,
                            producer); a partial run from another command is discarded, never resumed
    lock                    the pid of the run using it (a second live run on the same --out is refused)
    head.safetensors        the embedding, final norm and lm_head as anti_weight/ will hold them
    layer-00007.float.safetensors
                            layer 7's float weights (smoothed, source dtype): exactly one anti_weight/ shard,
                            which the artifact takes as a hard link (compress/stream/assemble.py), not a copy
    layer-00007.safetensors its int8 artifact tensors (and KV prefix), copied into the tensor-kind files
    layer-00007.json        its choices and scores (written after the tensors: the layer's "done" mark)
    stream.safetensors      the calibration activations entering layer `next_layer` (stream.json)
    scoring.safetensors     the sensitivity streams at that point (compress/stream/pipeline.py)
Every file is written under a temporary name and renamed, so a kill leaves the previous state whole. The
directory is ours (nothing a user wrote lives there); it is removed once the artifact is written.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from runtime.atomic import _pid_alive
from runtime.errors import UserError
from runtime.format import save_tensors
from runtime.format.files import dump_json


def work_path(out: Path) -> Path:
    """The working directory of a run writing `out`."""
    return out.parent / f".{out.name}.partial"


def _replace_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


class WorkDir:
    """One run's `.<out>.partial/` directory (see the module docstring)."""

    def __init__(self, out: Path, fingerprint: dict[str, Any], log=print):
        self.path = work_path(out)
        self.fingerprint = fingerprint
        self.log = log

    # --- lifetime -------------------------------------------------------------------------------------
    def open(self) -> int:
        """Create or resume; returns the first layer still to do (0 for a fresh run)."""
        lock = self.path / "lock"
        if lock.is_file():
            with contextlib.suppress(ValueError, OSError):
                pid = int(lock.read_text().strip())
                if pid != os.getpid() and _pid_alive(pid):
                    raise UserError(f"another compress run (pid {pid}) is writing {self.path}: wait for it to end, "
                                    "or choose another --out")
        run = self.path / "run.json"
        if self.path.is_dir():
            same = False
            with contextlib.suppress(OSError, ValueError):
                same = json.loads(run.read_text()).get("fingerprint") == self.fingerprint
            if not same:
                self.log(f"discarding {self.path}: a partial run of a different command (source, options or "
                         "calibration differ)")
                shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        _replace_write(lock, lambda p: p.write_text(f"{os.getpid()}\n"))
        if not run.is_file():
            _replace_write(run, lambda p: p.write_text(dump_json({"fingerprint": self.fingerprint})))
        return self.next_layer()

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    # --- state ----------------------------------------------------------------------------------------
    def next_layer(self) -> int:
        """The layer whose input the saved stream is (0 without one); layers before it are all done."""
        p = self.path / "stream.json"
        if not p.is_file():
            return 0
        k = int(json.loads(p.read_text())["next_layer"])
        if not all(self.layer_done(i) for i in range(k)):
            return 0  # cannot happen with the write order below; a damaged directory is redone
        return k

    def layer_done(self, i: int) -> bool:
        return all(p.is_file() for p in (self.path / f"layer-{i:05d}.json", self.layer_file(i), self.float_file(i)))

    # --- files ----------------------------------------------------------------------------------------
    def layer_file(self, i: int) -> Path:
        return self.path / f"layer-{i:05d}.safetensors"

    def float_file(self, i: int) -> Path:
        return self.path / f"layer-{i:05d}.float.safetensors"

    @property
    def head_file(self) -> Path:
        return self.path / "head.safetensors"

    def save_head(self, tensors: dict[str, torch.Tensor]) -> None:
        _replace_write(self.head_file, lambda p: save_tensors(p, tensors))

    def save_layer(self, i: int, weights: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor],
                   info: dict[str, Any]) -> None:
        """weights: the layer's float weights (its anti_weight/ shard); tensors: its int8 artifact tensors."""
        _replace_write(self.float_file(i), lambda p: save_tensors(p, weights))
        _replace_write(self.layer_file(i), lambda p: save_tensors(p, tensors))
        _replace_write(self.path / f"layer-{i:05d}.json", lambda p: p.write_text(dump_json(info)))

    def layer_info(self, i: int) -> dict[str, Any]:
        return json.loads((self.path / f"layer-{i:05d}.json").read_text())

    def save_stream(self, x: torch.Tensor, next_layer: int, scoring: dict[str, torch.Tensor]) -> None:
        """The activations entering `next_layer` and the scoring streams (after its predecessor's files: the
        resume point). stream.json is renamed last: it names the layer both files belong to."""
        _replace_write(self.path / "stream.safetensors", lambda p: save_tensors(p, {"x": x}))
        _replace_write(self.path / "scoring.safetensors", lambda p: save_tensors(p, scoring))
        _replace_write(self.path / "stream.json", lambda p: p.write_text(dump_json({"next_layer": next_layer})))

    def load_scoring(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the float model's scoring stream, {layer: the stream with only that layer in int8})."""
        with safe_open(str(self.path / "scoring.safetensors"), framework="pt") as f:
            t = {k: f.get_tensor(k) for k in f.keys()}
        return t.pop("ref"), {k.removeprefix("pert."): v for k, v in t.items()}

    def load_stream(self) -> torch.Tensor:
        with safe_open(str(self.path / "stream.safetensors"), framework="pt") as f:
            return f.get_tensor("x")
