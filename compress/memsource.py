"""A TensorSource over tensors held in memory (the smoothed model before it is written)."""
from __future__ import annotations

from pathlib import Path

import torch

from runtime.config import ModelConfig
from runtime.loaders.base import TensorSource


class DictSource(TensorSource):
    def __init__(self, config: ModelConfig, tensors: dict[str, torch.Tensor], path: str = "<memory>"):
        self.config = config
        self.tensors = tensors
        self.path = Path(path)

    def names(self) -> list[str]:
        return list(self.tensors)

    def _load(self, name: str) -> torch.Tensor:
        return self.tensors[name]


class DictTensors:
    """The artifact-tensor accessor (has/tensor) over an in-memory dict."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def has(self, name: str) -> bool:
        return name in self.tensors

    def tensor(self, name: str) -> torch.Tensor:
        return self.tensors[name]
