"""Where a rank's tensors come from: sliced views of an uncut model, or a cut unit on disk."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from ..config import ModelConfig
from ..errors import UserError
from ..loaders.base import expected_shapes
from .plan import TPPlan


class SlicedSource:
    """A TensorSource view that hands out rank `rank`'s slice of every tensor (slice at load time).

    One full tensor is read at a time and dropped after slicing, so a rank's peak memory is its
    share plus one tensor.
    """

    def __init__(self, source, plan: TPPlan, rank: int):
        self.inner, self.plan, self.rank = source, plan, rank
        self.config: ModelConfig = source.config
        self.path = source.path

    def get(self, name: str) -> torch.Tensor:
        return self.plan.slice(name, self.inner.get(name), self.rank)

    def names(self) -> list[str]:
        return self.inner.names()

    def tokenizer_path(self) -> Path | None:
        return self.inner.tokenizer_path()


class SlicedTensors:
    """The same for an artifact's quantized tensors (the QuantBinder's `has` / `tensor` accessor)."""

    def __init__(self, tensors, plan: TPPlan, rank: int):
        self.inner, self.plan, self.rank = tensors, plan, rank

    def has(self, name: str) -> bool:
        return self.inner.has(name)

    def tensor(self, name: str) -> torch.Tensor:
        return self.plan.slice(name, self.inner.tensor(name), self.rank)

    def __getattr__(self, item):  # manifest, names(), ... of the wrapped reader
        return getattr(self.inner, item)


class CutUnitSource:
    """One rank's float unit written by `compress cut`: the full config plus this rank's slices."""

    def __init__(self, path: Path, plan: TPPlan, rank: int):
        self.path = Path(path)
        self.config = ModelConfig.load(self.path)
        self.plan, self.rank = plan, rank
        self._where: dict[str, Path] = {}
        files = sorted(self.path.glob("*.safetensors"))
        if not files:
            raise UserError(f"{self.path} holds no *.safetensors: the cut directory is incomplete; re-run compress cut")
        for f in files:
            with safe_open(str(f), framework="pt") as h:
                for k in h.keys():
                    self._where[k] = f
        self._handles: dict[Path, object] = {}
        self._full = expected_shapes(self.config)

    def names(self) -> list[str]:
        return list(self._where)

    def get(self, name: str) -> torch.Tensor:
        if name not in self._where:
            raise UserError(f"{self.path}: tensor {name!r} is missing from this rank's unit; the cut directory is "
                            "incomplete or for another model: re-run compress cut")
        f = self._where[name]
        if f not in self._handles:
            self._handles[f] = safe_open(str(f), framework="pt")
        t = self._handles[f].get_tensor(name)
        full = self._full.get(name)
        if full is not None:
            want = tuple(self.plan.slice(name, torch.empty(full, device="meta"), self.rank).shape)
            if tuple(t.shape) != want:
                raise UserError(f"{self.path}: {name!r} has shape {tuple(t.shape)} but rank {self.rank} of "
                                f"{self.plan.world} should hold {want}; the unit does not match its manifest")
        return t

    def tokenizer_path(self) -> Path | None:
        for n in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"):
            if (self.path / n).exists():
                return self.path
        return None
