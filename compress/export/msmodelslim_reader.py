"""Read an msModelSlim (AscendV1) W8A8 directory back: a schema check against the documented layout, and the
inverse mapping into our tensor kinds, so the runtime can run an export (round trip) the way MindIE would.

Inverse of compress/export/msmodelslim.py, per W8A8 linear:

    quant_weight = weight;  input_scale, input_offset as stored;  deq_scale decoded to float32
    weight_scale = deq_scale / input_scale                      (float32; equal to ours within 1 ulp)
    fp_bias      = (quant_bias + input_offset * sum_k weight) * deq_scale
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from runtime.config import ModelConfig
from runtime.errors import UserError

from .msmodelslim import DESCRIPTION, W8A8_SUFFIXES, WEIGHTS_STEM, deq_scale_from_int64

# quantization types of msModelSlim's enumeration (AscendV1 docs); this reader runs W8A8 and FLOAT only
KNOWN_TYPES = {"FLOAT", "W16A16S", "W8A16", "W8A8_DYNAMIC", "W8A8_MIX", "W8A8", "WFP8AFP8_DYNAMIC",
               "W8A8_MXFP8", "W4A8_MXFP", "W4A4_DYNAMIC", "W4A4_MXFP4", "W4A4_MXFP4_DUALSCALE", "W4A16", "W8A8S",
               "W8A8SC"}
GLOBAL_KEYS = {"model_quant_type", "version", "group_size", "kv_quant_type", "kv_cache_type", "fa_quant_type",
               "reduce_quant_type", "metadata", "optional"}
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _weight_files(root: Path) -> dict[str, Path]:
    idx = root / f"{WEIGHTS_STEM}.safetensors.index.json"
    if idx.is_file():
        return {k: root / v for k, v in json.loads(idx.read_text())["weight_map"].items()}
    single = root / f"{WEIGHTS_STEM}.safetensors"
    if not single.is_file():
        raise UserError(f"{root} has no {WEIGHTS_STEM}.safetensors (nor its .index.json): not an msModelSlim "
                        "AscendV1 export")
    with safe_open(str(single), framework="pt") as h:
        return {k: single for k in h.keys()}


def load_tensors(root: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, f in _weight_files(Path(root)).items():
        with safe_open(str(f), framework="pt") as h:
            out[name] = h.get_tensor(name)
    return out


def check_schema(root: Path, tensors: dict[str, torch.Tensor] | None = None) -> list[str]:
    """Every way `root` departs from the documented AscendV1 W8A8 layout (empty when it conforms)."""
    root = Path(root)
    problems: list[str] = []
    try:
        desc: dict[str, Any] = json.loads((root / DESCRIPTION).read_text())
    except (OSError, json.JSONDecodeError) as e:
        return [f"{DESCRIPTION} unreadable: {e}"]
    tensors = load_tensors(root) if tensors is None else tensors
    for k in ("model_quant_type", "version"):
        if k not in desc:
            problems.append(f"{DESCRIPTION} lacks the global field {k!r}")
    entries = {k: v for k, v in desc.items() if k not in GLOBAL_KEYS}
    for k, v in sorted(entries.items()):
        if v not in KNOWN_TYPES:
            problems.append(f"{k}: unknown quantization type {v!r}")
    missing = sorted(set(tensors) - set(entries))
    extra = sorted(set(entries) - set(tensors))
    problems += [f"tensor {k} is not described" for k in missing]
    problems += [f"described tensor {k} is not in the weights" for k in extra]
    kinds = {v for k, v in entries.items() if k in tensors}
    if desc.get("model_quant_type") not in kinds | {"FLOAT"}:
        problems.append(f"model_quant_type {desc.get('model_quant_type')!r} is none of the tensors' types")
    modules = sorted({k.rsplit(".", 1)[0] for k, v in entries.items() if v == "W8A8"})
    for m in modules:
        have = {k.rsplit(".", 1)[1] for k, v in entries.items() if k.rsplit(".", 1)[0] == m}
        if have != set(W8A8_SUFFIXES):
            problems.append(f"{m}: W8A8 tensors {sorted(have)}, expected {sorted(W8A8_SUFFIXES)}")
            continue
        if any(entries[f"{m}.{s}"] != "W8A8" for s in W8A8_SUFFIXES):
            problems.append(f"{m}: its tensors do not all share the type W8A8")
        t = {s: tensors.get(f"{m}.{s}") for s in W8A8_SUFFIXES}
        if any(v is None for v in t.values()):
            continue
        w = t["weight"]
        if w.dtype != torch.int8 or w.dim() != 2:
            problems.append(f"{m}.weight: {w.dtype} {tuple(w.shape)}, expected int8 [n, k]")
            continue
        n = w.shape[0]
        for s in ("input_scale", "input_offset"):
            if t[s].dtype not in FLOAT_DTYPES or tuple(t[s].shape) != (1,):
                problems.append(f"{m}.{s}: {t[s].dtype} {tuple(t[s].shape)}, expected a float [1]")
        if t["quant_bias"].dtype != torch.int32 or tuple(t["quant_bias"].shape) != (n,):
            problems.append(f"{m}.quant_bias: {t['quant_bias'].dtype} {tuple(t['quant_bias'].shape)}, "
                            f"expected int32 [{n}]")
        if t["deq_scale"].dtype not in (torch.int64, torch.float32) or tuple(t["deq_scale"].shape) != (n,):
            problems.append(f"{m}.deq_scale: {t['deq_scale'].dtype} {tuple(t['deq_scale'].shape)}, "
                            f"expected int64 or float32 [{n}]")
        off = t["input_offset"].float()
        if bool((off != off.round()).any()) or not -128 <= float(off[0]) <= 127:
            problems.append(f"{m}.input_offset {float(off[0])} is not an integer in [-128, 127]")
    for k, v in entries.items():
        if v == "FLOAT" and k in tensors and tensors[k].dtype not in FLOAT_DTYPES:
            problems.append(f"{k}: FLOAT tensor of dtype {tensors[k].dtype}")
    return problems


def read_msmodelslim(root: Path) -> tuple[ModelConfig, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(config, float tensors by HF name, our artifact tensors "<module>.<kind>") of a conforming export."""
    root = Path(root)
    tensors = load_tensors(root)
    problems = check_schema(root, tensors)
    if problems:
        raise UserError(f"{root} does not follow the msModelSlim AscendV1 layout: {'; '.join(problems[:3])}")
    desc = json.loads((root / DESCRIPTION).read_text())
    cfg = ModelConfig.load(root)
    floats: dict[str, torch.Tensor] = {}
    quant: dict[str, torch.Tensor] = {}
    for k, v in desc.items():
        if k in GLOBAL_KEYS:
            continue
        if v == "FLOAT":
            floats[k] = tensors[k]
        elif v != "W8A8":
            raise UserError(f"{root}: {k} is {v}, and this reader runs W8A8 and FLOAT only")
    for m in sorted({k.rsplit(".", 1)[0] for k, v in desc.items() if v == "W8A8" and k not in GLOBAL_KEYS}):
        w = tensors[f"{m}.weight"]
        s = tensors[f"{m}.input_scale"].float()
        off = tensors[f"{m}.input_offset"].float()
        dq = tensors[f"{m}.deq_scale"]
        deq = deq_scale_from_int64(dq) if dq.dtype == torch.int64 else dq.float()
        corr = w.to(torch.int64).sum(1) * int(off[0])
        quant[f"{m}.quant_weight"] = w
        quant[f"{m}.weight_scale"] = (deq / s).float()
        quant[f"{m}.input_scale"] = s
        quant[f"{m}.input_offset"] = off
        quant[f"{m}.deq_scale"] = deq
        quant[f"{m}.fp_bias"] = ((tensors[f"{m}.quant_bias"].to(torch.int64) + corr).double() * deq.double()).float()
    return cfg, floats, quant
