"""`compress export --format msmodelslim`: the layout Ascend's MindIE / ATB and vLLM-Ascend load (msModelSlim's
"AscendV1" saver, description version 1.0.0).

Written from msModelSlim's format documentation (docs/zh/quantization_formats/ascendv1.md) and MindIE's W8A8
page (quantized weight layout, dtypes and shapes):

    quant_model_description.json      {"model_quant_type": "W8A8", "version": "1.0.0",
                                       "<tensor>": "W8A8" | "FLOAT" for every tensor in the weights}
    quant_model_weights.safetensors   (or -0000K shards + .index.json)
    config.json                       the float model's HF config, no quantization_config; "quantize": "w8a8"
    tokenizer files

Per W8A8 linear (original weight [n, k]):

    weight        int8    [n, k]   our quant_weight
    input_scale   float32 [1]      ours; x_q = clamp(round(x / input_scale) + input_offset, -128, 127)
    input_offset  float32 [1]      ours
    deq_scale     [n]              input_scale * weight_scale; int64 holding the float32 bit pattern for
                                   float16/float32 models, float32 for bfloat16 models (msModelSlim's rule)
    quant_bias    int32   [n]      round(fp_bias / deq_scale) - input_offset * sum_k weight[n, k], so that
                                   y = (x_q @ weight^T + quant_bias) * deq_scale  (the offset moves into the bias)

The offset correction is computed in int64 here (exact); msModelSlim computes it in float32, equal while
|input_offset * sum_k weight| < 2^24. A non-zero fp_bias is rounded to a multiple of deq_scale, as in
msModelSlim. Everything else (embeddings, norms, lm_head, float-fallback linears) is "FLOAT" in the
model's dtype. Only static per-tensor W8A8 without online rotations is written.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from runtime.atomic import atomic_dir

from .marker import write_export_marker
from .shards import ShardWriter
from .source import SHARD_BYTES, ExportSource, refuse_unsupported

FORMAT = "msmodelslim"
DESCRIPTION = "quant_model_description.json"
WEIGHTS_STEM = "quant_model_weights"
DESCRIPTION_VERSION = "1.0.0"
W8A8_SUFFIXES = ("weight", "input_scale", "input_offset", "deq_scale", "quant_bias")


def deq_scale_int64(deq: torch.Tensor) -> torch.Tensor:
    """float32 [n] -> int64 [n] holding each value's 32-bit pattern (msModelSlim's deqscale2int64)."""
    return deq.float().contiguous().view(torch.int32).to(torch.int64)


def deq_scale_from_int64(t: torch.Tensor) -> torch.Tensor:
    """The inverse: the low 32 bits of each int64 reinterpreted as float32."""
    return t.to(torch.int32).contiguous().view(torch.float32)


def quant_bias_of(quant_weight: torch.Tensor, offset: float, deq: torch.Tensor, fp_bias: torch.Tensor | None
                  ) -> torch.Tensor:
    corr = quant_weight.to(torch.int64).sum(1) * int(offset)  # exact in int64
    qb = -corr
    if fp_bias is not None and bool(fp_bias.any()):
        qb = qb + torch.round(fp_bias.double() / deq.double()).to(torch.int64)
    if qb.abs().max() >= 2 ** 31:
        raise OverflowError("quant_bias does not fit int32")
    return qb.to(torch.int32)


def export_msmodelslim(src: ExportSource, out: Path, overwrite: bool = False) -> dict[str, Any]:
    refuse_unsupported(src, FORMAT, "this exporter writes msModelSlim's static W8A8 only (W8A8_DYNAMIC is not "
                                    "written)")
    dtype = src.source_dtype()
    int8 = src.int8_modules()
    desc: dict[str, str] = {"model_quant_type": "W8A8" if int8 else "FLOAT", "version": DESCRIPTION_VERSION}
    cfg = {k: v for k, v in src.hf_config.items() if k != "quantization_config"}
    cfg["quantize"] = "w8a8"
    with atomic_dir(out, overwrite=overwrite) as tmp:
        w = ShardWriter(tmp, WEIGHTS_STEM, SHARD_BYTES)
        for name in src.float_tensor_names():
            w.add(name, src.float_tensor(name))
            desc[name] = "FLOAT"
        for n in int8:
            p = src.params(n)
            s = torch.tensor([p.input_scale], dtype=torch.float32)
            deq = src.art.tensor(f"{n}.deq_scale").float()  # input_scale * weight_scale, as stored
            tensors = {
                "weight": p.quant_weight.to(torch.int8),
                "input_scale": s,
                "input_offset": torch.tensor([p.input_offset], dtype=torch.float32),
                "deq_scale": deq if dtype == torch.bfloat16 else deq_scale_int64(deq),
                "quant_bias": quant_bias_of(p.quant_weight, p.input_offset, deq, p.fp_bias),
            }
            for suf in W8A8_SUFFIXES:
                w.add(f"{n}.{suf}", tensors[suf])
                desc[f"{n}.{suf}"] = "W8A8"
        files = w.close()
        (tmp / DESCRIPTION).write_text(json.dumps(desc, indent=2, sort_keys=True) + "\n")
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        for f in src.aux_files():
            shutil.copyfile(f, tmp / f.name)
        write_export_marker(tmp, FORMAT, src.root)  # last: it lists every file written above
    return {"format": FORMAT, "out": str(out), "int8_modules": len(int8), "files": files + [DESCRIPTION]}
