"""Write tensors as one safetensors file, or shards plus an index when they exceed a size, one shard in RAM."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

ST_METADATA = {"format": "pt"}  # fixed: equal tensors give equal bytes


class ShardWriter:
    """add() tensors in order; close() writes `<stem>.safetensors`, or `<stem>-0000K.safetensors` files and
    `<stem>.safetensors.index.json` (the weight_map transformers and MindIE read) when there is more than one."""

    def __init__(self, root: Path, stem: str, max_bytes: int):
        self.root, self.stem, self.max_bytes = Path(root), stem, max_bytes
        self.current: dict[str, torch.Tensor] = {}
        self.size = 0
        self.files: list[tuple[str, list[str]]] = []

    def add(self, name: str, t: torch.Tensor) -> None:
        if name in self.current or any(name in ks for _, ks in self.files):
            raise ValueError(f"tensor {name} written twice")
        nb = t.numel() * t.element_size()
        if self.current and self.size + nb > self.max_bytes:
            self._flush()
        self.current[name] = t.contiguous()
        self.size += nb

    def _flush(self) -> None:
        fn = f"{self.stem}-{len(self.files) + 1:05d}.safetensors"
        save_file({k: self.current[k] for k in sorted(self.current)}, str(self.root / fn), metadata=ST_METADATA)
        self.files.append((fn, sorted(self.current)))
        self.current, self.size = {}, 0

    def close(self) -> list[str]:
        """The files written (relative names)."""
        if not self.files:  # everything fits one file: the plain name engines look for first
            fn = f"{self.stem}.safetensors"
            save_file({k: self.current[k] for k in sorted(self.current)}, str(self.root / fn), metadata=ST_METADATA)
            return [fn]
        if self.current:
            self._flush()
        total = sum(1 for _ in self.files)
        index = {"metadata": {"total_shards": total},
                 "weight_map": {k: fn for fn, ks in self.files for k in ks}}
        idx = f"{self.stem}.safetensors.index.json"
        (self.root / idx).write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
        return [fn for fn, _ in self.files] + [idx]
