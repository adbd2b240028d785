"""The streamed W8A8 pass: one decoder layer at a time, calibrated on the already-quantized layers' outputs.

Per layer i (inputs X: the calibration activations after layers 0..i-1 as the runtime runs them in int8):
  1. read layer i's tensors from the source (mmap), rotate them (the residual rotation, if on);
  2. run the float layer over X with hooks: activation statistics of its four linear groups;
  3. smoothing / range search / int8 rounding per group (compress/quantize.py quantize_layer);
  4. run the int8 layer over X (the runtime's own kernels): its outputs are layer i+1's inputs, and on the
     first `sens_samples` sequences it starts layer i's perturbed stream (see below);
  5. save the layer's tensors, choices and scores, then the new activations (the resume point).
Sensitivity (layer units): beside the calibration stream, the float model's stream on the first
`sens_samples` sequences and one stream per finished layer u in which only u ran in int8; every float
layer carries them all one layer further, so at the end each gives KL(float || only u in int8) at the
logits: the end-to-end score of the old whole-model pass, at L^2/2 small forwards and without a second
model in memory. Linear units score each linear by its layer's local output error instead.
Held at once: one layer (source dtype, plus its float and int8 runtime copies), the activations in and
out (samples x seq x hidden in the compute dtype, twice), the scoring streams (layers x sens_samples x seq x hidden
in the compute dtype) and one layer's statistics.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F

from calibration.stats import StatsCollector
from runtime.config import ModelConfig
from runtime.memory import heap_for_layer_loops, release_free_memory

from .layers import StreamRunner, compute_dtype, float_layer, int8_layer, layer_names, observe_inputs
from .prefix import open_prefix
from .workdir import WorkDir

# what the manifest says the unit score is (fallback.score), by unit
SCORE = {"layer": "mean KL(float || only this layer in int8) of the next-token distributions over {n} calibration "
                  "sequences, computed in the streamed pass (one perturbed stream per layer, carried by the float "
                  "layers after it)",
         "linear": "relative error of its decoder layer's output with only this linear in int8, on the layer's own "
                   "(quantized-stream) inputs: sum ||y_int8 - y_float||^2 / sum ||y_float - x||^2 over {n} "
                   "calibration sequences"}


@dataclass
class StreamResult:
    config: ModelConfig  # the artifact's config (embeddings untied by the residual rotation)
    rotation: Any  # compress.rotate.ResidualRotation or None
    choices: dict[str, dict[str, Any]] = field(default_factory=dict)  # group key -> choice (all layers)
    scores: dict[str, float] = field(default_factory=dict)  # unit -> sensitivity score
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> seconds (this process only)
    resumed_from: int = 0


def _rel_err(y: torch.Tensor, ref: torch.Tensor, x: torch.Tensor) -> float:
    y, ref, x = y.double(), ref.double(), x.double()  # the differences of bf16 activations, exactly
    return float((y - ref).pow(2).sum() / (ref - x).pow(2).sum().clamp(min=1e-30))


def _layer_seed(seed: int, i: int) -> int:
    return (seed * 1_000_003 + i) % (2**63)  # per layer, so a resumed run draws the same rows


def head_tensors(src, cfg: ModelConfig, rotation) -> dict[str, torch.Tensor]:
    """Embedding, final norm and lm_head as the artifact holds them (rotated: lm_head untied)."""
    names = ["model.embed_tokens.weight", "model.norm.weight"] + ([] if cfg.tie_word_embeddings else ["lm_head.weight"])
    t = {n: src.get(n).clone() for n in names}
    if rotation is not None:
        from ..rotate import rotate_ends

        rotate_ends(t, rotation, t.__setitem__)
    return t


def stream_quantize(src, cfg: ModelConfig, samples: list[torch.Tensor], opts, work: WorkDir,
                    fixed_float: set[int], progress: bool = True, log=print,
                    after_layer: Callable[[int], None] | None = None) -> StreamResult:
    """Run the per-layer pass over every layer not yet in `work` (see the module docstring).

    fixed_float: layers the user keeps in float (--float-layers): their float output feeds the next layer.
    after_layer(i) is called once layer i is saved (tests interrupt a run there)."""
    import dataclasses

    from tqdm import tqdm

    from ..quantize import quantize_layer

    # the search's temporaries reuse the heap instead of fresh pages; the trims at each phase boundary below
    # keep the resident size from climbing by layer (measured ~130 MB per layer without them at 7B width)
    heap_for_layer_loops()
    rotation = None
    if opts.rotate_residual:
        from ..rotate import make_rotation

        rotation = make_rotation(cfg.hidden_size, opts.seed)
    out_cfg = dataclasses.replace(cfg, tie_word_embeddings=False) if rotation is not None else cfg
    res = StreamResult(out_cfg, rotation)
    L = cfg.num_hidden_layers
    start = work.open()
    res.resumed_from = start
    if start:
        log(f"    resuming from layer {start} of {L} ({work.path})")
        x = work.load_stream().to(compute_dtype(cfg))
        prefix = open_prefix(opts.kv_prefix, work, start, None)
    else:
        head = head_tensors(src, cfg, rotation)
        if hasattr(src, "release"):
            src.release()
        work.save_head(head)
        ids = torch.cat([s.reshape(1, -1) for s in samples], 0)
        x = F.embedding(ids, head["model.embed_tokens.weight"]).to(compute_dtype(cfg))
        prefix = open_prefix(opts.kv_prefix, work, 0, head["model.embed_tokens.weight"])  # None without one
        del head
    dtype = compute_dtype(cfg)
    runner = StreamRunner(out_cfg, x.shape[1], dtype, offset=prefix.length if prefix is not None else 0)
    n_sens = max(1, min(opts.sens_samples, x.shape[0]))
    by_layer = opts.fallback_unit == "layer"
    # layer units: the float model's stream on the scoring sequences, and one stream per finished layer u
    # with ONLY layer u in int8 (float before and after): at the end each gives KL(float || u in int8)
    if by_layer:
        ref, pert = (work.load_scoring() if start else (x[:n_sens].clone(), {}))
    gptq = bool(opts.gptq)
    bar = tqdm(total=L, initial=start, desc="quantize layers", unit="layer", disable=not progress)
    for i in range(start, L):
        t0 = time.time()
        lt = {n: src.get(n).clone() for n in layer_names(i)}
        if hasattr(src, "release"):
            src.release()  # the source's pages of this layer need not stay mapped
        if rotation is not None:
            from ..rotate import rotate_layer

            rotate_layer(lt, i, rotation, lt.__setitem__)
        # 2. float layer + statistics
        col = StatsCollector(opts.max_rows, _layer_seed(opts.seed, i), hessian=gptq)
        layer = float_layer(out_cfg, i, lt, dtype)
        if prefix is not None:  # the KV prefix in every sequence's attention, never in a statistic (prefix.py)
            runner.kv = prefix.keys_values(layer, out_cfg, dtype)
        hooks = observe_inputs(layer, i, col.observe)
        try:
            y_float = runner.run(layer, x, keep=n_sens)
        finally:
            for h in hooks:
                h.remove()
        if by_layer:  # the float layer carries every perturbed stream, and the float one, one layer further
            pert = {u: runner.run(layer, s) for u, s in pert.items()}
            ref_out = runner.run(layer, ref)
        del layer
        release_free_memory()
        t1 = time.time()
        # 3. smoothing, ranges, int8 (folds into lt)
        quant, choices = quantize_layer(lt, i, col.stats, out_cfg, opts)
        del col
        release_free_memory()
        t2 = time.time()
        # 4. the next layer's inputs, and the scores
        fixed = i in fixed_float
        if prefix is not None:  # the prefix after smoothing's folds: what the int8 layer and the artifact use
            runner.kv = prefix.keys_values(float_layer(out_cfg, i, lt, dtype), out_cfg, dtype, advance=True)
        q_layer = int8_layer(out_cfg, i, lt, quant, dtype)
        y = runner.run(float_layer(out_cfg, i, lt, dtype) if fixed else q_layer, x)
        scores: dict[str, float] = {}
        if by_layer:
            pert[str(i)] = runner.run(q_layer, ref)
            ref = ref_out
        else:  # linear units: each linear's local effect on its layer's output
            for mod in sorted({k.rsplit(".", 1)[0] for k in quant}):
                only = {k: v for k, v in quant.items() if k.rsplit(".", 1)[0] == mod}
                scores[mod] = _rel_err(runner.run(int8_layer(out_cfg, i, lt, only, dtype), x[:n_sens]), y_float,
                                       x[:n_sens])
        del q_layer
        release_free_memory()
        t3 = time.time()
        # 5. save: the layer, then the streams (the resume point)
        secs = {"float+stats": t1 - t0, "search+int8": t2 - t1, "int8 forward+scores": t3 - t2}
        work.save_layer(i, lt, {**quant, **(prefix.tensors(i, *runner.kv) if prefix is not None else {})},
                        {"choices": choices, "scores": scores})
        if prefix is not None:
            prefix.save(work, i + 1)
        work.save_stream(y, i + 1, {"ref": ref, **{f"pert.{u}": t for u, t in pert.items()}} if by_layer else {})
        x = y
        release_free_memory()
        for k, v in secs.items():
            res.seconds[k] = res.seconds.get(k, 0.0) + v
        bar.update(1)
        bar.set_postfix_str(f"stats {t1 - t0:.0f}s search {t2 - t1:.0f}s int8 {t3 - t2:.0f}s")
        if after_layer is not None:
            after_layer(i)
    bar.close()
    for i in range(L):  # the record of every layer, this run's or a resumed run's
        info = work.layer_info(i)
        res.choices.update(info["choices"])
        res.scores.update(info["scores"])
    if by_layer:
        res.scores.update(output_kl(work, out_cfg, ref, pert))
    return res


@torch.inference_mode()
def output_kl(work: WorkDir, cfg: ModelConfig, ref: torch.Tensor, pert: dict[str, torch.Tensor]) -> dict[str, float]:
    """unit -> mean KL(p_float || p_unit) of the next-token distributions over every scoring token, from the
    final hidden states: the float model's (`ref`) and each one-unit-in-int8 model's (`pert`)."""
    from safetensors import safe_open

    with safe_open(str(work.head_file), framework="pt") as f:
        head = f.get_tensor("lm_head.weight" if "lm_head.weight" in f.keys() else "model.embed_tokens.weight")
        g = f.get_tensor("model.norm.weight")
    head, g = head.float(), g.float()

    def logp(h: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(F.rms_norm(h.float(), g.shape, g, cfg.rms_norm_eps) @ head.t(), -1)

    out = {}
    for u in sorted(pert, key=int):
        kl = 0.0
        for j in range(ref.shape[0]):  # one sequence at a time: T x vocab float32 logits
            lp, lq = logp(ref[j]), logp(pert[u][j])
            kl += float((lp.exp() * (lp - lq)).sum(-1).mean())
        out[u] = kl / ref.shape[0]
    return out
