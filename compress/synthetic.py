"""Quantize a TensorSource without calibration data: synthetic activation scales, real int8 weights.

For speed runs on random weights with a real model's shapes (benchmarks/quant_decode.py): kernel
speed does not depend on the scale values, so a fixed activation range stands in for calibration.
"""
from __future__ import annotations

import torch

from runtime.linear import LinearSpec
from runtime.loaders.base import TensorSource
from runtime.quant import qmath
from runtime.topology import PART_PATHS

from .memsource import DictTensors


def synthetic_quant_tensors(source: TensorSource, act_method: str = "static", act_range: float = 6.0,
                            float_layers: tuple[int, ...] = (), progress: bool = False,
                            hadamard_down: int = 0) -> DictTensors:
    """Artifact tensors (the accessor QuantBinder reads) for every decoder linear outside float_layers."""
    from tqdm import tqdm

    cfg = source.config
    out: dict[str, torch.Tensor] = {}
    sc, off = qmath.act_params(-act_range, act_range)
    parts = PART_PATHS
    for i in tqdm(range(cfg.num_hidden_layers), desc="synthetic int8", disable=not progress):
        if i in float_layers:
            continue
        for p in parts:
            n = f"model.layers.{i}.{p}"
            q, ws = qmath.quantize_weight(source.get(f"{n}.weight"))
            out[f"{n}.quant_weight"], out[f"{n}.weight_scale"] = q, ws
            if act_method == "static":
                out[f"{n}.input_scale"] = torch.tensor([sc])
                out[f"{n}.input_offset"] = torch.tensor([off])
                out[f"{n}.deq_scale"] = ws * sc
            if hadamard_down and p == "mlp.down_proj":  # speed only: the rotation's run-time cost
                out[f"{n}.input_hadamard"] = torch.tensor([hadamard_down], dtype=torch.int32)
    return DictTensors(out)


__all__ = ["synthetic_quant_tensors", "LinearSpec"]
