"""Random weights with a real model's shapes: speed does not depend on the values."""
from __future__ import annotations

import zlib
from pathlib import Path

import torch

from ..config import ModelConfig
from .base import TensorSource, expected_shapes, weight_names


class RandomSource(TensorSource):
    def __init__(self, config: ModelConfig, seed: int = 0, dtype: torch.dtype = torch.float32):
        self.config = config
        self.path = Path(f"<random {config.hidden_size}x{config.num_hidden_layers}>")
        self.seed = seed
        self.dtype = dtype
        self._shapes = expected_shapes(config)

    def names(self) -> list[str]:
        return weight_names(self.config)

    def _load(self, name: str) -> torch.Tensor:
        shape = self._shapes[name]
        if len(shape) == 1:
            return torch.ones(shape, dtype=self.dtype)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + zlib.crc32(name.encode()))
        std = 0.02 if "embed" not in name else 1.0
        return (torch.randn(shape, generator=g, dtype=torch.float32) * std).to(self.dtype)
