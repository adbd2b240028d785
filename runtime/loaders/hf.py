"""HF Llama directories: config.json + safetensors (single or sharded) or pytorch_model*.bin."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from ..config import ModelConfig
from ..errors import UserError
from .base import TensorSource


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
                with safe_open(str(f), framework="pt") as h:
                    for k in h.keys():
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
        self.check()

    def names(self) -> list[str]:
        return list(self._where)

    def _load(self, name: str) -> torch.Tensor:
        if self._kind == "bin":
            return self._bin_state[name]
        f = self._where[name]
        if f not in self._handles:
            self._handles[f] = safe_open(str(f), framework="pt")
        return self._handles[f].get_tensor(name)

    def tokenizer_path(self) -> Path | None:
        for n in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"):
            if (self.path / n).exists():
                return self.path
        return None
