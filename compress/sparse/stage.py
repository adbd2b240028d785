"""`compress sparse`: calibration-aware pruning, then the same anti-outlier W8A8 stages as `compress quantize`.

Order: calibration set -> dense layers (float fallback, one streamed measuring pass) -> prune layer by layer,
streamed (streamed.py: one decoder layer in memory, each pruned layer written to a pruned HF directory; Wanda /
magnitude / SparseGPT, block reconstruction) -> compress.quantize.run_quantize on the pruned directory (its
activation statistics, smoothing, int8, fallback and artifact writer, unchanged) -> the manifest gains a
"sparsity" section. Smoothing and int8 rounding never turn a zero into a non-zero, so the pattern survives; int8
rounding may add a few zeros, which the manifest records separately.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from runtime.errors import UserError

from .driver import PruneConfig
from .masks import check_pattern, parse_pattern
from .streamed import prune_streamed


def choose_dense_layers(src, hf_dir: Path, samples, pcfg: PruneConfig, k: int, progress: bool,
                        log=None) -> tuple[list[int], dict[int, float]]:
    """The k decoder layers whose pruning alone hurts their output most (measured with Wanda masks: cheap), in
    one streamed pass over the source (nothing written)."""
    if k <= 0:
        return [], {}
    mcfg = dataclasses.replace(pcfg, method="magnitude" if pcfg.method == "magnitude" else "wanda", dense_layers=())
    rep = prune_streamed(src, hf_dir, samples, mcfg, measure_only=True, progress=progress, log=log)
    order = sorted(rep.layer_error, key=lambda i: -rep.layer_error[i])
    return sorted(order[:k]), rep.layer_error


def int8_sparsity(art, nm: tuple[int, int] | None) -> dict[str, Any]:
    """module -> the share of zeros in its stored int8 weight (and the N:M check), read one tensor at a time
    (all of them together are 6.5 GB at 7B)."""
    out = {}
    for name in sorted(n for n in art.names() if n.endswith(".quant_weight")):
        q = art.tensor(name)
        mod = name[: -len(".quant_weight")]
        d = {"int8_sparsity": round(float((q == 0).float().mean()), 6)}
        if nm is not None:
            d["pattern_ok"] = check_pattern(q, *nm)
        out[mod] = d
    return out


def run_sparse(hf_dir: Path, model_name: str, tokenizer, out: Path, calib_path: Path, qopts, pcfg: PruneConfig,
               overwrite: bool = False, progress: bool = True, log=print) -> dict[str, Any]:
    """The whole stage; returns the manifest written to `out`/artifact.json."""
    from calibration.data import build_calibration, describe_sources
    from compress.quantize import run_quantize, source_checksum
    from runtime.atomic import atomic_dir, check_out, clean_stale
    from runtime.loaders import open_source
    from runtime.quant.artifact import MANIFEST, open_artifact, write_manifest

    pcfg.check()
    # Rotations mix every input channel of a weight row: applied after pruning they would undo the sparsity,
    # and pruning in the rotated basis is far worse (measured on SmolLM2-135M, 50% unstructured, 20 windows:
    # Wanda 77 -> 815, SparseGPT 64 -> 100; the rotation spreads the outlier channels pruning relies on).
    qopts.hadamard_down, qopts.rotate_o, qopts.rotate_residual = 0, False, False
    # Without its rotation down_proj's input cannot be served by one static range (alone +35% perplexity):
    # quantize it per token instead, the other inputs stay static
    if qopts.act_method == "static" and qopts.dynamic_groups is None:
        qopts.dynamic_groups = ("down",)
    qopts.dynamic_groups = qopts.dynamic_groups or ()
    qopts.check()
    t0 = time.time()
    out = check_out(out, overwrite)  # before the work
    src = open_source(hf_dir)
    cfg = src.config
    if qopts.fallback_unit != "layer":
        raise UserError("compress sparse keeps whole decoder layers dense and float: use --fallback-unit layer")
    from compress.checks import check_calibration, check_float_units, check_layers

    check_float_units(qopts.float_units, "layer", cfg)
    check_layers(pcfg.dense_layers, cfg, "--dense-layers")
    check_calibration(qopts.calib_samples, qopts.calib_seq_len, cfg)
    if qopts.disable_level > cfg.num_hidden_layers:
        raise UserError(f"--disable-level L{qopts.disable_level} exceeds the {cfg.num_hidden_layers} decoder layers")
    from compress.preflight import preflight_quantize  # tokenizer, output, disk, RAM: before the heavy work

    preflight_quantize(cfg, src.get("model.norm.weight").element_size(), out, tokenizer, qopts, sparse=True,
                       prune=pcfg, log=log)
    log(f"[sparse 1/4] calibration set: {qopts.calib_samples} x {qopts.calib_seq_len} tokens from "
        f"{describe_sources(calib_path)}")
    calib = build_calibration(calib_path, tokenizer, qopts.calib_samples, qopts.calib_seq_len, qopts.seed)
    scores: dict[int, float] = {}
    if qopts.float_units is not None:
        dense = sorted(int(u) for u in qopts.float_units)
        chosen_by = "manual"
    else:
        if qopts.disable_level > 0:
            log(f"[sparse 2/4] dense layers: pruning error of every layer pruned alone (L{qopts.disable_level})")
        dense, scores = choose_dense_layers(src, hf_dir, calib.samples, pcfg, qopts.disable_level, progress, log)
        chosen_by = "pruning error (relative output error of the layer pruned alone, Wanda masks)"
    extra = sorted(set(pcfg.dense_layers) - set(dense))
    pcfg = dataclasses.replace(pcfg, dense_layers=tuple(sorted(set(dense) | set(pcfg.dense_layers))))
    qopts = dataclasses.replace(qopts, float_units=[str(i) for i in dense], disable_level=len(dense))
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out.parent, out.name)  # a killed run's working copy (its pid is in the name)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.tmp-{os.getpid()}-sparse-", dir=out.parent) as td:
        log(f"[sparse 3/4] pruning {pcfg.method} {pcfg.pattern} {pcfg.sparsity:g} layer by layer; dense+float "
            f"layers {dense}" + (f", dense int8 layers {extra}" if extra else "")
            + (f"; block reconstruction {pcfg.reconstruct_epochs} epochs, lr {pcfg.reconstruct_lr:g}"
               if pcfg.reconstruct_epochs else ""))
        pruned_dir = Path(td) / "pruned"
        rep = prune_streamed(src, hf_dir, calib.samples, pcfg, out_dir=pruned_dir, tokenizer=tokenizer,
                             progress=progress, log=log)
        log("[sparse 4/4] anti-outlier W8A8 on the pruned model (compress quantize's stages)")
        stage = Path(td) / "stage"
        run_quantize(pruned_dir, model_name, tokenizer, stage, calib_path, qopts, overwrite=True, progress=progress,
                     log=lambda s: log("    " + s))
        art = open_artifact(stage, check=True)
        i8 = int8_sparsity(art, parse_pattern(pcfg.pattern))
        m = {k: v for k, v in art.manifest.items() if k != "files"}
        m["source"] = {**m["source"], "path": str(hf_dir), "sha256": source_checksum(hf_dir)}
        m["method"] = {**m["method"], "name": "sparse-anti-outlier-w8a8"}
        m["fallback"] = {**m["fallback"], "chosen_by": chosen_by,
                         "score": "relative output error of the decoder layer pruned alone" if scores else "manual",
                         "scores": {str(k): v for k, v in sorted(scores.items())}}
        per_layer = {}
        for name, d in rep.per_module.items():
            per_layer[name] = {**d, **i8.get(name, {"int8_sparsity": None})}
        pruned = [d for d in rep.per_module.values() if d["pattern"] != "dense"]
        m["sparsity"] = {
            "method": pcfg.method, "pattern": pcfg.pattern, "target": pcfg.sparsity,
            "importance": {"wanda": "|W|·‖X‖₂ per output row", "magnitude": "|W| per output row",
                           "sparsegpt": "OBS w²/[H⁻¹]²_jj with weight update"}[pcfg.method],
            "dense_layers": list(pcfg.dense_layers), "float_layers": dense,
            "achieved_mean": round(sum(d["sparsity"] for d in pruned) / max(1, len(pruned)), 6),
            "sparsegpt": {"percdamp": pcfg.percdamp, "blocksize": pcfg.blocksize} if pcfg.method == "sparsegpt" else None,
            "reconstruction": {"epochs": pcfg.reconstruct_epochs, "lr": pcfg.reconstruct_lr,
                               "objective": "layer output vs the dense model's, pruned-stream inputs, mask frozen",
                               "relative_error": {str(k): [round(a, 6), round(b, 6)]
                                                  for k, (a, b) in sorted(rep.reconstruction.items())}}
            if pcfg.reconstruct_epochs else None,
            "per_module": per_layer,
        }
        with atomic_dir(out, overwrite=overwrite) as tmp:
            for p in stage.iterdir():
                if p.name != MANIFEST:
                    shutil.move(str(p), tmp / p.name)
            m = write_manifest(tmp, m)
    size = sum(f["bytes"] for f in m["files"].values())
    m["_summary"] = {"seconds": time.time() - t0, "bytes": size, "dense_layers": list(pcfg.dense_layers),
                     "achieved": m["sparsity"]["achieved_mean"]}
    return m
