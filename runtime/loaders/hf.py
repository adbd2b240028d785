"""HF Llama directories: config.json + safetensors (single or sharded) or pytorch_model*.bin."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from ..config import ModelConfig
from ..errors import UserError
from .base import TensorSource


def _keys(f: Path) -> list[str]:
    """The tensor names of one safetensors file; an empty, truncated or foreign file is a UserError."""
    from safetensors import SafetensorError

    size = f.stat().st_size
    try:
        with safe_open(str(f), framework="pt") as h:
            return list(h.keys())
    except (SafetensorError, OSError) as e:
        what = "empty (0 bytes)" if size == 0 else f"not a complete safetensors file ({size:,} bytes: {e})"
        raise UserError(f"{f} is {what}: an interrupted download or copy? Copy the weights again") from None


class HFDirSource(TensorSource):
    def __init__(self, path: Path):
        self.path = Path(path)
        self.config = ModelConfig.load(self.path)
        self._where: dict[str, Path] = {}
        st = sorted(self.path.glob("*.safetensors"))
        idx = self.path / "model.safetensors.index.json"
        if idx.exists():
            wm = json.loads(idx.read_text())["weight_map"]
            self._where = {k: self.path / v for k, v in wm.items()}
            self._kind = "safetensors"
        elif st:
            self._kind = "safetensors"
            for f in st:
                for k in _keys(f):
                    self._where[k] = f
        else:
            bins = sorted(self.path.glob("pytorch_model*.bin"))
            if not bins:
                raise UserError(f"{self.path} has config.json but no *.safetensors or pytorch_model*.bin weights")
            self._kind = "bin"
            self._bin_state: dict[str, torch.Tensor] = {}
            for f in bins:  # mmap + weights_only: no code runs, no copy into RAM until touched
                self._bin_state.update(torch.load(f, map_location="cpu", mmap=True, weights_only=True))
            self._where = {k: bins[0] for k in self._bin_state}
        self._handles: dict[Path, object] = {}
        self._check_files()
        self.check()

    def _check_files(self) -> None:
        """Every weight file named by the index must exist and open: a clear error, not a SafetensorError."""
        if self._kind == "safetensors":
            for f in sorted(set(self._where.values())):
                if not f.exists():
                    raise UserError(f"{f} is missing: {self.path / 'model.safetensors.index.json'} names it; "
                                    "copy the complete checkpoint")
                _keys(f)

    def names(self) -> list[str]:
        return list(self._where)

    def _load(self, name: str) -> torch.Tensor:
        if self._kind == "bin":
            return self._bin_state[name]
        f = self._where[name]
        if f not in self._handles:
            self._handles[f] = safe_open(str(f), framework="pt")
        return self._handles[f].get_tensor(name)

    def release(self) -> None:
        """Close the file handles (and their memory maps): a streamed stage calls it after each layer, so the
        pages it read do not stay mapped, and counted in its resident memory, for the rest of the run."""
        self._handles.clear()

    def tokenizer_path(self) -> Path | None:
        for n in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"):
            if (self.path / n).exists():
                return self.path
        return None
