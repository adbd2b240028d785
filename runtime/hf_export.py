"""Write any TensorSource as an HF Llama directory that transformers itself loads."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from .atomic import atomic_dir
from .config import ModelConfig
from .loaders import TensorSource, weight_names
from .tokenizer import Tokenizer

SHARD_BYTES = 2 * 1024**3
INDEX = "model.safetensors.index.json"


def write_hf_metadata(out: Path, config: ModelConfig, dtype: torch.dtype, tokenizer: Tokenizer | None,
                      weight_map: dict[str, str]) -> None:
    """config.json, the shard index (when there is more than one shard) and the tokenizer of an HF directory
    whose safetensors shards are already in `out` (weight_map: tensor name -> shard file name)."""
    files = sorted(set(weight_map.values()))
    if files != ["model.safetensors"]:  # one plain model.safetensors needs no index
        total = sum((out / f).stat().st_size for f in files)
        idx = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out / INDEX).write_text(json.dumps(idx, indent=2))
    cfg = config.to_hf()
    cfg["torch_dtype"] = str(dtype).removeprefix("torch.")
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    if tokenizer is not None:
        tokenizer.save(out)


def export_hf_dir(source: TensorSource, tokenizer: Tokenizer | None, out: Path, dtype: torch.dtype = torch.float32,
                  overwrite: bool = False, progress: bool = False) -> Path:
    """Tensors are written shard by shard, so at most one shard is held in RAM."""
    from tqdm import tqdm

    names = weight_names(source.config)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        shards: list[dict[str, torch.Tensor]] = [{}]
        size = 0
        weight_map: dict[str, str] = {}
        files: list[str] = []

        def flush() -> None:
            nonlocal size
            if shards[-1]:
                fn = f"model-{len(files) + 1:05d}.safetensors"
                save_file(shards[-1], str(tmp / fn), metadata={"format": "pt"})
                files.append(fn)
                for k in shards[-1]:
                    weight_map[k] = fn
            shards.append({})
            size = 0

        for n in tqdm(names, desc="export", disable=not progress, unit="tensor"):
            t = source.get(n).to(dtype).contiguous()
            nb = t.numel() * t.element_size()
            if size and size + nb > SHARD_BYTES:
                flush()
            shards[-1][n] = t
            size += nb
        flush()
        if len(files) == 1:
            (tmp / files[0]).rename(tmp / "model.safetensors")
            weight_map = dict.fromkeys(weight_map, "model.safetensors")
        write_hf_metadata(tmp, source.config, dtype, tokenizer, weight_map)
    return out
