"""`compress quantize`: anti-outlier W8A8 with measured float fallback, written as a versioned artifact.

Stages: calibration samples -> activation statistics (transformers + hooks) -> per group: smoothing
strength and activation range by measured output error, folded into the float model -> int8 tensors
-> sensitivity of every unit -> float fallback (disable level) -> artifact (runtime/quant/artifact.py).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from runtime.errors import UserError
from runtime.quant import qmath
from runtime.format import Producer, producer_version  # noqa: F401  (producer_version re-exported)
from runtime.quant.artifact import ANTI_DIR, FORMAT_NAME, FORMAT_VERSION, sha256_file, write_manifest
from runtime.schemes.w8a16 import weight_tensors as w8a16_tensors

from runtime.topology import GROUPS as TOPOLOGY

from .gptq import gptq_quantize
from .search import GroupChoice, search_group
from .smooth import fold_group, fold_head_rotation

# group name -> (stats key suffix, parts with their block), from the one topology table
GROUPS = {g.name: (g.key, g.part_paths()) for g in TOPOLOGY}
ORDER = ("o", "qkv", "down", "gate_up")  # o before qkv (it rescales v), down before gate_up (it rescales up)


@dataclass
class QuantizeOptions:
    act_method: str = "static"  # "static" (per-tensor asymmetric, the guide's) or "dynamic" (per-token)
    alphas: tuple[float, ...] = (0.0, 0.5, 0.65, 0.8, 0.9)  # smoothing strengths tried (0 = none)
    range_search: str = "mse"  # "mse" (searched) or "minmax"
    disable_level: int = 0
    fallback_unit: str = "layer"  # "layer" or "linear"
    float_units: list[str] | None = None  # set by hand: skips the choice (scores are still recorded)
    rank_by: str = "error"  # "error" (measured KL) or "range" (activation range, msModelSlim-style)
    calib_samples: int = 64
    calib_seq_len: int = 512
    seed: int = 0
    max_rows: int = 512  # sampled activation rows per group for the searches
    sens_samples: int = 4  # calibration samples used to score units
    # GPTQ weight rounding; None: on where the Hessians fit (gptq_fits). Off by default: measured on
    # SmolLM2-135M static W8A8 it did not move perplexity (activation error dominates), and it costs time
    gptq: bool | None = False
    # online Hadamard rotation of the down_proj input (block size; 0 = off, None = largest power of two
    # dividing the intermediate size, at most 512). Measured on SmolLM2-135M: down_proj's input is the
    # one site static per-tensor int8 cannot serve (it alone costs +35% perplexity); rotating it spreads
    # each token's outlier channels over the block, so one static range fits every token.
    hadamard_down: int | None = None
    # per-head Hadamard rotation folded offline into v_proj rows and o_proj columns (exact in float, no
    # run-time cost): spreads o_proj's input outliers over each head's channels
    rotate_o: bool = True
    # residual-stream rotation folded into every weight (compress/rotate.py; exact in float, no run-time
    # cost): makes the q/k/v and gate/up inputs fit one static range
    rotate_residual: bool = True
    # groups ("o", "qkv", "down", "gate_up") whose inputs are quantized per token even when act_method is
    # static: `compress sparse` puts "down" here, since it cannot use the down_proj rotation (see stage.py)
    dynamic_groups: tuple[str, ...] | None = None  # None: () for compress quantize, ("down",) for compress sparse
    # weights of the float-fallback units: "float" (anti_weight/, the source dtype) or "int8" (scheme w8a16:
    # int8 per output channel, inputs still float, so the unit keeps float activations at half the bf16 bytes)
    fallback_weights: str = "float"
    skip_memory_check: bool = False  # run even where the pre-flight RAM estimate exceeds MemAvailable
    # attention-sink KV prefix (compress/stream/prefix.py, runtime/kv_prefix.py): token ids whose float
    # keys/values every sequence starts with; calibrated with them in attention, out of every statistic
    kv_prefix: tuple[int, ...] | None = None

    def check(self) -> None:
        if self.act_method not in ("static", "dynamic"):
            raise UserError(f"--act-method {self.act_method!r}: use static or dynamic")
        if set(self.dynamic_groups or ()) - set(GROUPS):
            raise UserError(f"dynamic groups {sorted(set(self.dynamic_groups) - set(GROUPS))}: choose from "
                            f"{', '.join(GROUPS)}")
        if self.range_search not in ("mse", "minmax"):
            raise UserError(f"--range-search {self.range_search!r}: use mse or minmax")
        if self.fallback_unit not in ("layer", "linear"):
            raise UserError(f"--fallback-unit {self.fallback_unit!r}: use layer or linear")
        if self.fallback_weights not in ("float", "int8"):
            raise UserError(f"--fallback-weights {self.fallback_weights!r}: use float or int8")
        if self.rank_by not in ("error", "range"):
            raise UserError(f"--rank-by {self.rank_by!r}: use error or range")
        if self.hadamard_down and self.hadamard_down & (self.hadamard_down - 1):
            raise UserError(f"--hadamard-block {self.hadamard_down}: must be a power of two")
        if any(not 0 <= a < 1 for a in self.alphas):
            raise UserError("smoothing strengths must lie in [0, 1)")


def parse_level(level: str | int | None) -> int:
    if level is None:
        return 0
    s = str(level).strip().upper().removeprefix("L")
    if not s.isdigit():
        raise UserError(f"--disable-level {level!r}: use Lk with k the number of units left in float, e.g. L6")
    return int(s)


@dataclass
class QuantResult:
    float_tensors: dict[str, torch.Tensor]  # the smoothed float model (every tensor)
    quant_tensors: dict[str, torch.Tensor]  # artifact tensors of EVERY linear (before fallback)
    choices: dict[str, dict[str, Any]] = field(default_factory=dict)  # per group key: alpha, range, errors


def quantize_tensors(tensors: dict[str, torch.Tensor], stats, cfg, opts: QuantizeOptions,
                     progress: bool = True) -> QuantResult:
    """Smooth every group of every layer and make its int8 tensors (in place on `tensors`)."""
    from tqdm import tqdm

    res = QuantResult(tensors, {})
    for i in tqdm(range(cfg.num_hidden_layers), desc="smooth+quantize", unit="layer", disable=not progress):
        q, ch = quantize_layer(tensors, i, stats, cfg, opts)
        res.quant_tensors.update(q)
        res.choices.update(ch)
    return res


def quantize_layer(tensors: dict[str, torch.Tensor], i: int, stats, cfg,
                   opts: QuantizeOptions) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]]]:
    """Decoder layer i: per group (in ORDER) the smoothing strength and range by measured output error,
    folded into `tensors` in place; returns (the layer's int8 artifact tensors, its choices by group key).
    Reads only layer i's tensors and statistics, so the streamed pipeline calls it one layer at a time."""
    quant: dict[str, torch.Tensor] = {}
    choices: dict[str, dict[str, Any]] = {}
    for g in ORDER:
        key_suffix, parts = GROUPS[g]
        key = f"model.layers.{i}.{key_suffix}"
        st = stats[key]
        names = [f"model.layers.{i}.{p}" for p in parts]
        w = torch.cat([tensors[f"{n}.weight"].float() for n in names], 0)
        gqa = (cfg.num_attention_heads, cfg.num_key_value_heads) if g == "o" else None
        rows, wts = st.weighted_rows() if hasattr(st, "weighted_rows") else (st.rows, None)
        had = hadamard_block_of(opts, w.shape[1]) if g == "down" else None
        pow2_head = cfg.head_dim & (cfg.head_dim - 1) == 0  # Hadamard blocks are powers of two
        head_rot = cfg.head_dim if g == "o" and opts.rotate_o and pow2_head else None
        mode = "dynamic" if g in (opts.dynamic_groups or ()) else opts.act_method
        ch: GroupChoice = search_group(rows, w, st.ch_min, st.ch_max, mode, opts.alphas,
                                       opts.range_search, gqa, wts, had or head_rot)
        if ch.scales is not None:
            fold_group(tensors, i, g, ch.scales, cfg.num_attention_heads, cfg.num_key_value_heads)
        if head_rot:
            fold_head_rotation(tensors, i, cfg.head_dim)
        if mode == "static":
            sc, off = qmath.act_params(ch.lo, ch.hi)
        h = None
        if opts.gptq and getattr(st, "xtx", None) is not None:
            # the smoothed input is X / s: its Hessian is H / (s s^T)
            h = st.xtx.double() if ch.scales is None else \
                st.xtx.double() / (ch.scales.double()[:, None] * ch.scales.double()[None, :])
            if had:  # the rotated input's Hessian: R^T H R
                h = qmath.hadamard(qmath.hadamard(h, had).t(), had).double()
        for n in names:
            wt = tensors[f"{n}.weight"] if not had else qmath.hadamard_offline(tensors[f"{n}.weight"], had)
            if h is not None:
                q, ws = gptq_quantize(wt, h)
            else:
                q, ws = qmath.quantize_weight(wt)
            if had:
                quant[f"{n}.input_hadamard"] = torch.tensor([had], dtype=torch.int32)
            quant[f"{n}.quant_weight"] = q
            quant[f"{n}.weight_scale"] = ws
            if mode == "static":
                quant[f"{n}.input_scale"] = torch.tensor([sc], dtype=torch.float32)
                quant[f"{n}.input_offset"] = torch.tensor([off], dtype=torch.float32)
                quant[f"{n}.deq_scale"] = (ws * sc).float()
            quant[f"{n}.fp_bias"] = torch.zeros(q.shape[0], dtype=torch.float32)
        raw_range = float(torch.maximum(st.ch_max.abs(), st.ch_min.abs()).max())
        choices[key] = {"group": list(parts), "alpha": ch.alpha, "range": [ch.lo, ch.hi],
                         "rel_err": ch.err, "rel_err_minmax": ch.err_minmax, "act_absmax": raw_range,
                         "weights": "gptq" if h is not None else "rtn", "hadamard": had or 0,
                         "act_method": mode}
    return quant, choices


def hadamard_block_of(opts: QuantizeOptions, in_features: int) -> int | None:
    """The rotation block of a down_proj with `in_features` inputs under `opts` (None: no rotation)."""
    if opts.hadamard_down == 0:
        return None
    b = opts.hadamard_down or qmath.hadamard_block(in_features)
    if in_features % b:
        raise UserError(f"--hadamard-block {b} does not divide the intermediate size {in_features}: "
                        f"use {qmath.hadamard_block(in_features)} or smaller")
    return b


def gptq_fits(cfg, budget_bytes: int = 2 << 30) -> bool:
    """Whether the float32 input Hessians of every group (q/k/v, o, gate/up: hidden^2; down:
    intermediate^2) fit in `budget_bytes` held at once (SmolLM2-135M: 0.4 GB; LLaMA-2-7B: 19 GB)."""
    per_layer = 3 * cfg.hidden_size ** 2 + cfg.intermediate_size ** 2
    return 4 * per_layer * cfg.num_hidden_layers <= budget_bytes


def module_names(cfg) -> list[str]:
    return [f"model.layers.{i}.{p}" for i in range(cfg.num_hidden_layers) for g in ORDER for p in GROUPS[g][1]]


def reference_model(cfg, res: QuantResult, split_parts: bool):
    from runtime.binding import binder_for
    from runtime.model import Llama

    from .memsource import DictSource, DictTensors

    b = binder_for(DictSource(cfg, res.float_tensors), tensors=DictTensors(res.quant_tensors), reference=True,
                   split_parts=split_parts)
    return Llama(cfg, b).eval()


def range_scores(res: QuantResult, unit: str) -> dict[str, float]:
    from .sensitivity import unit_of

    out: dict[str, float] = {}
    for key, c in res.choices.items():
        for part in c["group"]:
            layer = key.split(".")[2]
            u = unit_of(f"model.layers.{layer}.{part}", unit)
            out[u] = max(out.get(u, 0.0), c["act_absmax"])
    return out


def keep_only(res: QuantResult, float_modules: set[str]) -> dict[str, torch.Tensor]:
    """Artifact tensors without the float-fallback modules."""
    return {k: v for k, v in res.quant_tensors.items() if k.rsplit(".", 1)[0] not in float_modules}


def float_modules_of(units: list[str], unit: str, cfg) -> set[str]:
    from .sensitivity import unit_of

    us = set(units)
    return {n for n in module_names(cfg) if unit_of(n, unit) in us}


def source_checksum(hf_dir: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(list(hf_dir.glob("*.safetensors")) + list(hf_dir.glob("pytorch_model*.bin"))):
        h.update(f.name.encode())
        h.update(bytes.fromhex(sha256_file(f)))
    return h.hexdigest()


def _group_key(module: str) -> str:
    """'model.layers.3.self_attn.k_proj' -> 'model.layers.3.self_attn.q_proj' (its group's key)."""
    from runtime.topology import group_of_part

    pre, part = module.rsplit(".", 1)
    return f"{pre}.{group_of_part(part).parts[0]}"


def scheme_names(cfg, art_tensors, fmods: set[str], fallback_weights: str) -> dict[str, str]:
    """The manifest's `schemes`: every decoder linear's scheme (runtime/schemes). art_tensors: the artifact's
    tensor names (a dict of them or a set)."""
    def one(n: str) -> str:
        if n in fmods:
            return "w8a16" if fallback_weights == "int8" else "float"
        return "w8a8-static" if f"{n}.input_scale" in art_tensors else "w8a8-dynamic"

    return {n: one(n) for n in module_names(cfg)}


def run_quantize(hf_dir: Path, model_name: str, tokenizer, out: Path, calib_path: Path, opts: QuantizeOptions,
                 overwrite: bool = False, progress: bool = True, log=print, after_layer=None) -> dict[str, Any]:
    """The whole stage, streamed layer by layer (compress/stream); returns the manifest written to
    `out`/artifact.json. A killed run resumes from its last finished layer when run again (after_layer:
    see stream_quantize)."""
    from calibration.data import build_calibration, describe_sources
    from runtime.atomic import atomic_dir, check_out
    from runtime.loaders import open_source

    from .sensitivity import choose
    from .stream.assemble import layer_float_weights, link_anti_weight, write_kind_files
    from .stream.pipeline import SCORE, stream_quantize
    from .stream.workdir import WorkDir

    opts.check()
    t0 = time.time()
    out = check_out(out, overwrite)  # before the work: a refusal after an hour of calibration helps nobody
    src = open_source(hf_dir)
    cfg = src.config
    n_units = cfg.num_hidden_layers if opts.fallback_unit == "layer" else 7 * cfg.num_hidden_layers
    if opts.disable_level > n_units:
        raise UserError(f"--disable-level L{opts.disable_level} exceeds the {n_units} {opts.fallback_unit} units")
    from .checks import check_calibration, check_float_units

    check_float_units(opts.float_units, opts.fallback_unit, cfg)
    if opts.kv_prefix and not all(0 <= t < cfg.vocab_size for t in opts.kv_prefix):
        raise UserError(f"--kv-prefix {','.join(map(str, opts.kv_prefix))}: token ids must lie in "
                        f"0..{cfg.vocab_size - 1} (the model's vocabulary)")
    check_calibration(opts.calib_samples, opts.calib_seq_len, cfg)
    if opts.gptq is None:
        opts.gptq = gptq_fits(cfg)
    from .preflight import preflight_quantize  # tokenizer, output, disk, RAM: before the heavy work

    preflight_quantize(cfg, src.get("model.norm.weight").element_size(), out, tokenizer, opts, log=log)

    log(f"[1/4] calibration set: {opts.calib_samples} x {opts.calib_seq_len} tokens from "
        f"{describe_sources(calib_path)}")
    calib = build_calibration(calib_path, tokenizer, opts.calib_samples, opts.calib_seq_len, opts.seed)
    src_dtype = src.get("model.norm.weight").dtype
    src_sha = source_checksum(hf_dir)
    fingerprint = {"source_sha256": src_sha, "tokens_sha256": calib.tokens_sha256,
                   # an option left unset (None) is not recorded: a later release adding an option, unset by
                   # default, then still resumes an earlier release's partial run of the same command
                   "options": {k: v for k, v in asdict(opts).items() if k != "skip_memory_check" and v is not None},
                   "producer": Producer.current().to_dict()}
    work = WorkDir(out, json.loads(json.dumps(fingerprint, default=list)), log=lambda s: log("    " + s))
    fixed = {int(u) for u in opts.float_units} if opts.float_units is not None and opts.fallback_unit == "layer" \
        else set()
    log("[2/4] layer by layer: float statistics, smoothing + int8 (per group: strength and range by measured "
        "output error), int8 outputs feed the next layer")
    try:
        res = stream_quantize(src, cfg, calib.samples, opts, work, fixed, progress, log, after_layer)
    except KeyboardInterrupt:
        raise UserError(f"interrupted: the finished layers are kept in {work.path}; run the same command again "
                        "to continue from the last finished layer") from None
    cfg = res.config
    rotation = res.rotation
    if res.seconds:
        log("    seconds in this process: " + ", ".join(f"{k} {v:.0f}" for k, v in res.seconds.items())
            + (f" (resumed at layer {res.resumed_from})" if res.resumed_from else ""))
    log(f"[3/4] float fallback: {opts.fallback_unit} units, disable level L{opts.disable_level}")
    scores: dict[str, float] = res.scores
    if opts.rank_by == "range":
        scores = range_scores(QuantResult({}, {}, res.choices), opts.fallback_unit)
    if opts.float_units is not None:
        float_units = sorted(set(str(u) for u in opts.float_units), key=lambda u: (len(u), u))
    else:
        float_units = choose(scores, opts.disable_level)
    fmods = float_modules_of(float_units, opts.fallback_unit, cfg)
    extra: dict[str, torch.Tensor] = {}
    if opts.fallback_weights == "int8":  # W8A16 float-fallback units: int8 weights of the float weight, and
        # down_proj's online rotation where the method has one (its outlier weights need it as much as W8A8's)
        had_down = hadamard_block_of(opts, cfg.intermediate_size)
        for n, w in layer_float_weights(work, sorted(fmods)).items():
            had = had_down if n.endswith(".mlp.down_proj") else None
            extra.update(w8a16_tensors(n, w, had))
    # the names scheme_names reads: static W8A8 modules are those with an input_scale
    art_kinds = {f"{m}.input_scale" for m in module_names(cfg)
                 if m not in fmods and res.choices[_group_key(m)]["act_method"] == "static"}
    log(f"[4/4] writing {out}")
    manifest = {
        "format": {"name": FORMAT_NAME, "version": FORMAT_VERSION},
        "producer": Producer.current().to_dict(),
        "source": {"name": model_name, "path": str(hf_dir), "sha256": src_sha,
                   "config": src.config.to_hf(), "dtype": str(src_dtype).removeprefix("torch.")},
        "method": {
            "name": "anti-outlier-w8a8",
            "weights": "int8 symmetric per output channel" + (", GPTQ rounding (damp 0.01, block 128)"
                                                               if opts.gptq else ", round to nearest"),
            "gptq": bool(opts.gptq),
            "act_method": opts.act_method,
            "activations": ("int8 asymmetric per tensor, static (input_scale, input_offset)"
                            if opts.act_method == "static" else "int8 symmetric per token, dynamic")
            + (f"; per token for the {', '.join(opts.dynamic_groups)} inputs" if opts.dynamic_groups
               and opts.act_method == "static" else ""),
            "smoothing": {"alphas_tried": list(opts.alphas), "fold": "rmsnorm (qkv, gate_up), up_proj (down), "
                          "v_proj (o, GQA-shared)"},
            "range_search": opts.range_search,
            "channel_shift": False,
            "rotate_o": "per-head Hadamard folded into v_proj / o_proj"
            if opts.rotate_o and cfg.head_dim & (cfg.head_dim - 1) == 0 else "off",
            "rotate_residual": rotation.describe(opts.seed) if rotation is not None else "off",
            "hadamard_down": ("online block Hadamard of the down_proj input, block "
                              f"{hadamard_block_of(opts, cfg.intermediate_size)} (tensor input_hadamard)")
            if opts.hadamard_down != 0 else "off",
            "lm_head": "float",
            "groups": {k: {kk: vv for kk, vv in v.items()} for k, v in sorted(res.choices.items())},
            "pipeline": "layer-streamed: each layer calibrated on the int8 outputs of the layers before it",
        },
        "calibration": {"kind": calib.source, "path": calib.path, "files_sha256": calib.sha256,
                        "tokens_sha256": calib.tokens_sha256, "samples": opts.calib_samples,
                        "seq_len": opts.calib_seq_len, "seed": opts.seed, "rows_per_group": opts.max_rows},
        "fallback": {"unit": opts.fallback_unit, "disable_level": f"L{len(float_units)}",
                     "float_units": [int(u) if u.isdigit() else u for u in float_units],
                     "chosen_by": "manual" if opts.float_units is not None else opts.rank_by,
                     "score": SCORE[opts.fallback_unit].format(n=max(1, min(opts.sens_samples, opts.calib_samples)))
                     if opts.rank_by == "error" else "max |activation| of the unit's inputs",
                     "scores": {u: scores[u] for u in sorted(scores, key=lambda u: (len(u), u))},
                     "weights": "float" if opts.fallback_weights == "float" else
                     "int8 per output channel, float activations (scheme w8a16)"},
        "modules": {n: ("float" if n in fmods else "int8") for n in module_names(cfg)},
        "schemes": scheme_names(cfg, art_kinds, fmods, opts.fallback_weights),
        "tensor_parallel": None,
    }
    if opts.kv_prefix:  # format 1.3: every sequence starts with these float keys/values (runtime/kv_prefix.py)
        from runtime.kv_prefix import manifest_entry

        manifest["kv_prefix"] = manifest_entry(list(opts.kv_prefix), cfg.num_hidden_layers)
    from runtime.format.manifest import artifact_version

    manifest["format"]["version"] = artifact_version(manifest)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        if link_anti_weight(work, cfg, src_dtype, tokenizer, tmp / ANTI_DIR):
            log("    this file system has no hard links: anti_weight/ was copied from the work directory")
        log("    int8 tensor files, then the sha256 of every file")
        write_kind_files(tmp, work, cfg.num_hidden_layers, fmods, extra)
        manifest = write_manifest(tmp, manifest)
    work.remove()
    size = sum(f["bytes"] for f in manifest["files"].values())
    manifest["_summary"] = {"seconds": time.time() - t0, "bytes": size,
                            "int8_modules": sum(1 for v in manifest["modules"].values() if v == "int8"),
                            "modules": len(manifest["modules"])}
    return manifest
