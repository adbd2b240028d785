"""What every exporter reads: one artifact, opened through the public reader, with the checks that say
which artifacts a serving format can hold.

Artifacts are read only through `runtime.quant.artifact.open_artifact` and `runtime.quant.binder.part_params`
(the same tensors the runtime binds), so a change of the on-disk format stays inside that module.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from runtime.errors import UserError
from runtime.loaders import open_source, weight_names
from runtime.loaders.base import TensorSource
from runtime.quant.artifact import ANTI_DIR, ArtifactReader, open_artifact
from runtime.quant.binder import part_params
from runtime.quant.linear import PartParams

# files of anti_weight/ that a serving engine needs beside the weights (config is rewritten by each exporter)
AUX_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
             "generation_config.json", "chat_template.jinja")
SHARD_BYTES = 4 << 30  # at most this many tensor bytes per safetensors file, as transformers shards


@dataclass
class ExportSource:
    """An opened, checked artifact: float tensors from anti_weight/, int8 parameters per module."""

    root: Path
    art: ArtifactReader
    floats: TensorSource
    hf_config: dict[str, Any]

    @property
    def manifest(self) -> dict[str, Any]:
        return self.art.manifest

    def int8_modules(self) -> list[str]:
        """Decoder linears stored as int8, in the model's order."""
        return [n for n in self.linear_modules() if self.art.has(f"{n}.quant_weight")]

    def linear_modules(self) -> list[str]:
        cfg = self.floats.config
        parts = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
        return [f"model.layers.{i}.{p}" for i in range(cfg.num_hidden_layers) for p in parts]

    def params(self, module: str) -> PartParams:
        return part_params(self.art, module)

    def float_tensor_names(self) -> list[str]:
        """Every anti_weight tensor an exporter writes as float: all but the int8 linears' weights."""
        q = {f"{m}.weight" for m in self.int8_modules()}
        return [n for n in weight_names(self.floats.config) if n not in q]

    def float_tensor(self, name: str) -> torch.Tensor:
        return self.floats.get(name)

    def source_dtype(self) -> torch.dtype:
        return self.floats.get(weight_names(self.floats.config)[0]).dtype

    def aux_files(self) -> Iterator[Path]:
        for f in AUX_FILES:
            p = self.root / ANTI_DIR / f
            if p.is_file():
                yield p


def open_for_export(path: Path, fmt: str) -> ExportSource:
    """Open `path` (checksums included) and refuse what no export format holds: cuts and packed weights."""
    path = Path(path)
    if (path / "cut.json").is_file():
        raise UserError(f"{path} is a tensor-parallel cut (compress cut): export the uncut artifact it was cut "
                        "from (named in its cut.json 'source') and let the serving engine shard it")
    art = open_artifact(path, check=True)
    m = art.manifest
    if m.get("tensor_parallel"):
        raise UserError(f"{path} is one rank of a tensor-parallel cut ({m['tensor_parallel']}): export the "
                        "uncut artifact it was cut from and let the serving engine shard it")
    if m.get("kv_prefix"):  # format 1.3: neither serving format has a place for fixed cache entries
        raise UserError(f"{path} starts every sequence with a fixed KV prefix (kv_prefix, tokens "
                        f"{m['kv_prefix'].get('token_ids')}; format 1.3), which a {fmt} export cannot carry: the "
                        "serving engine would run without it, and the static ranges were calibrated with it. "
                        "Re-run compress quantize with --kv-prefix none to export")
    if m.get("packing"):
        raise UserError(f"{path} holds packed sparse weights (compress pack), which {fmt} cannot store: "
                        f"run `compress unpack {path} --out DIR` and export DIR")
    anti = path / ANTI_DIR
    cfg = json.loads((anti / "config.json").read_text())
    return ExportSource(path, art, open_source(anti), cfg)


def refuse_unsupported(src: ExportSource, fmt: str, dynamic_reason: str) -> None:
    """The two artifact features the serving formats cannot express as our runtime computes them."""
    had = [n for n in src.int8_modules() if src.art.has(f"{n}.input_hadamard")]
    if had:
        more = f" (and {len(had) - 1} more)" if len(had) > 1 else ""
        raise UserError(f"{src.root}: {had[0]}{more} rotates its input online (input_hadamard, block "
                        f"{src.params(had[0]).hadamard}), which a {fmt} export cannot carry so that transformers "
                        "computes it: re-run compress quantize with --hadamard-block 0 (the residual and o_proj "
                        "rotations are folded into the weights and export fine)")
    dyn = [n for n in src.int8_modules() if not src.art.has(f"{n}.input_scale")]
    if dyn:
        more = f" (and {len(dyn) - 1} more)" if len(dyn) > 1 else ""
        raise UserError(f"{src.root}: {dyn[0]}{more} quantizes its input per token (dynamic): {dynamic_reason}. "
                        "Re-run compress quantize with --act-method static (compress sparse: --static-down)")
