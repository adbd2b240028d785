"""`compress export --format compressed-tensors`: a Hugging Face checkpoint that transformers (with the
`compressed-tensors` package) and vLLM load as static W8A8.

Mapping of our tensors (docs/ARTIFACT.md) to compressed-tensors' "int-quantized" format, per int8 linear:

    quant_weight  int8 [out, in]      -> <m>.weight             int8 [out, in]
    weight_scale  float32 [out]       -> <m>.weight_scale       float32 [out, 1]  (strategy "channel", symmetric)
    input_scale   float32 [1]         -> <m>.input_scale        float32 [1]       (strategy "tensor", static)
    input_offset  float32 [1] (int)   -> <m>.input_zero_point   int8 [1]          (asymmetric)
    fp_bias       float32 [out]       -> refused unless all zero (LLaMA linears have no bias parameter)

compressed-tensors computes x_q = clamp(round(x / s + zp)) and dequantizes (x_q - zp) * s, then a float
matmul with weight * weight_scale: the same function as ours (round(x/s) + o; the two differ only on
exact .5 ties with an odd zero point). Float-fallback linears and lm_head go in `ignore`, as float
weights. The residual and o_proj rotations are already folded into the weights. An online Hadamard
(input_hadamard) is refused: compressed-tensors 0.20 can describe it (a "hadamard" transform_config with
head_dim = block at location "input"), but transformers' loader does not apply transform_config, so the
checkpoint would load and compute the wrong function. Per-token (dynamic) inputs are refused too: its
per-token scale is absmax / 127.5 with codes in [-128, 127], ours absmax / 127 in [-127, 127].
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from runtime.atomic import atomic_dir
from runtime.errors import UserError

from .marker import write_export_marker
from .shards import ShardWriter
from .source import SHARD_BYTES, ExportSource, refuse_unsupported

FORMAT = "compressed-tensors"
CT_VERSION = "0.20.0"  # the compressed-tensors release this layout was written and tested against


def quantization_config(ignore: list[str]) -> dict[str, Any]:
    """The `quantization_config` of config.json: one group, int8 per-channel weights, static per-tensor
    asymmetric int8 inputs, every Linear but `ignore`."""
    weights = {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel", "dynamic": False,
               "group_size": None, "block_structure": None, "actorder": None, "observer": "minmax",
               "observer_kwargs": {}}
    inputs = {"num_bits": 8, "type": "int", "symmetric": False, "strategy": "tensor", "dynamic": False,
              "group_size": None, "block_structure": None, "actorder": None, "observer": "minmax",
              "observer_kwargs": {}}
    return {
        "quant_method": "compressed-tensors",
        "format": "int-quantized",
        "quantization_status": "compressed",
        "version": CT_VERSION,
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights, "input_activations": inputs,
                                      "output_activations": None, "format": "int-quantized"}},
        "ignore": ignore,
        "kv_cache_scheme": None,
        "global_compression_ratio": None,
        "sparsity_config": {},
        "transform_config": {},
    }


def export_compressed_tensors(src: ExportSource, out: Path, overwrite: bool = False) -> dict[str, Any]:
    refuse_unsupported(src, FORMAT, "compressed-tensors' per-token scales are absmax/127.5 over [-128, 127], "
                                    "ours absmax/127 over [-127, 127], so it would compute another function")
    int8 = src.int8_modules()
    float_linears = [n for n in src.linear_modules() if n not in set(int8)]
    for n in int8:
        p = src.params(n)
        if p.fp_bias is not None and bool(p.fp_bias.any()):
            raise UserError(f"{src.root}: {n} has a non-zero fp_bias, and this exporter writes Llama linears "
                            "without a bias parameter: not exportable to compressed-tensors yet")
    ignore = ["lm_head"] + float_linears
    cfg = dict(src.hf_config)
    cfg["quantization_config"] = quantization_config(ignore)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        w = ShardWriter(tmp, "model", SHARD_BYTES)
        for name in src.float_tensor_names():
            w.add(name, src.float_tensor(name))
        for n in int8:
            p = src.params(n)
            w.add(f"{n}.weight", p.quant_weight.to(torch.int8))
            w.add(f"{n}.weight_scale", p.weight_scale.float().reshape(-1, 1))
            w.add(f"{n}.input_scale", torch.tensor([p.input_scale], dtype=torch.float32))
            w.add(f"{n}.input_zero_point", torch.tensor([int(p.input_offset)], dtype=torch.int8))
        files = w.close()
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        for f in src.aux_files():
            shutil.copyfile(f, tmp / f.name)
        write_export_marker(tmp, FORMAT, src.root)  # last: it lists every file written above
    return {"format": FORMAT, "out": str(out), "int8_modules": len(int8), "ignore": ignore, "files": files}
