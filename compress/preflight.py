"""Pre-flight checks for `compress quantize` / `compress sparse`: everything that can fail is tried first.

Before the calibration and smoothing (minutes to hours at 7B) we check that the tokenizer can be
written, that the output directory can be created, that the disk holds the artifact and that RAM
holds the plan. The estimates are computed from the model config and describe the CURRENT
pipelines: compress quantize streams one layer at a time (compress/stream), compress sparse prunes
one layer at a time too (compress/sparse/streamed.py), then quantizes as compress quantize does.
README "Real scale" compares them with measured peaks.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from runtime.config import ModelConfig
from runtime.errors import UserError
from runtime.memory import GiB, fmt_bytes, mem_available

BASE_BYTES = int(1.0 * GiB)  # python + torch + transformers imported, allocator slack (measured ~1 GiB)
MARGIN = 1.10  # allocator fragmentation and temporaries of one layer's work


@dataclass(frozen=True)
class ParamCounts:
    embed: int  # embed_tokens
    lm_head: int  # 0 when tied
    linears: int  # every decoder linear (q, k, v, o, gate, up, down)
    norms: int

    @property
    def total(self) -> int:
        return self.embed + self.lm_head + self.linears + self.norms


def param_counts(cfg: ModelConfig) -> ParamCounts:
    h, i, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    q = cfg.num_attention_heads * cfg.head_dim
    kv = cfg.num_key_value_heads * cfg.head_dim
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * i
    return ParamCounts(embed=cfg.vocab_size * h, lm_head=0 if cfg.tie_word_embeddings else cfg.vocab_size * h,
                       linears=L * per_layer, norms=(2 * L + 1) * h)


def artifact_parts(cfg: ModelConfig, src_bytes: int, untie: bool) -> tuple[int, int]:
    """(anti_weight/: every tensor in the source dtype, a rotated tied model getting its own lm_head;
    the int8 linears with their per-channel scales in fp32), each + 2%, the second + 16 MiB for headers,
    tokenizer and manifest."""
    pc = param_counts(cfg)
    head = pc.lm_head or (pc.embed if untie else 0)
    float_copy = (pc.embed + head + pc.linears + pc.norms) * src_bytes
    scales = cfg.num_hidden_layers * (cfg.num_attention_heads * cfg.head_dim * 2 + 2 * cfg.num_key_value_heads
                                      * cfg.head_dim + 2 * cfg.intermediate_size + cfg.hidden_size) * 4 * 2
    return int(float_copy * 1.02), int((pc.linears + scales) * 1.02) + 16 * 2**20


def artifact_bytes(cfg: ModelConfig, src_bytes: int, untie: bool) -> int:
    """The whole artifact's bytes on disk (artifact_parts summed)."""
    return sum(artifact_parts(cfg, src_bytes, untie))


def hard_links_work(directory: Path) -> bool:
    """Whether the file system under `directory` takes hard links (anti_weight/ is then linked, not copied)."""
    base = _existing_ancestor(directory)
    try:
        with tempfile.TemporaryDirectory(prefix=".llama-compress-link-", dir=base) as d:
            a = Path(d) / "a"
            a.write_bytes(b"")
            os.link(a, Path(d) / "b")
        return True
    except OSError:
        return False


def tree_bytes(path: Path) -> int:
    """Bytes of the files under `path` (0 if it does not exist)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def quantize_peak_bytes(cfg: ModelConfig, src_bytes: int, *, untie: bool, scoring: bool, gptq: bool,
                        calib_tokens: int, sens_tokens: int = 0) -> tuple[int, str]:
    """Peak resident bytes of the layer-streamed run_quantize (compress/stream), and how it was reckoned.

    Held at once: the calibration activations entering and leaving the current layer (compute dtype, twice), one
    decoder layer in the source dtype plus its runtime copy (compute dtype) and int8 copy (+ oneDNN's
    prepacked one), float32 temporaries of the widest linear group's search (about seven copies of its
    weights, the heap's retained ones included), one batch's forward temporaries and, with GPTQ, one
    layer's Hessians. The head phase (embedding and lm_head rotated in float32) and the final write (one
    anti_weight/ shard of at most 2 GiB) are bounded separately. `scoring` (layer units scored end to end) adds one stream of
    `sens_tokens` activations per layer.
    """
    from runtime.hf_export import SHARD_BYTES

    pc = param_counts(cfg)
    h, i, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    per_layer = pc.linears // L
    from .stream.layers import compute_dtype

    cb = compute_dtype(cfg).itemsize
    acts = 2 * calib_tokens * h * cb  # in and out, in the compute dtype (compress/stream/layers.py StreamRunner)
    widest = max(3 * h, 2 * i) * h * 4  # q/k/v or gate/up, float32
    # 7 float32 copies of the widest group: the search's own ~5, plus what the heap keeps of its freed
    # temporaries until the phase's trim (runtime/memory.py heap_for_layer_loops; measured at 7B: 2 layers
    # 5.61 GiB, full depth 6.42 GiB, where 5 copies estimated 5.08 / 6.11)
    layer = per_layer * (src_bytes + cb + 2) + 7 * widest + 4 * 512 * i * 4 * 4
    hess = (3 * h * h + i * i) * 4 * 2 if gptq else 0
    head = (pc.embed + (pc.lm_head or (pc.embed if untie else 0))) * (src_bytes + 8)
    write = min(SHARD_BYTES, (pc.total + pc.embed) * src_bytes) + widest
    # the only per-layer growth: one scoring stream per finished layer (pipeline.py; layer units), held and
    # once more while it is saved. The heap fragmentation that used to add ~130-375 MB per layer is gone
    # (runtime/memory.py heap_for_layer_loops / release_free_memory; README "Real scale").
    growth = 2 * L * sens_tokens * h * cb if scoring else 0
    work = max(acts + layer + hess + growth, acts + head, write)
    peak = BASE_BYTES + int(work * MARGIN)
    how = (f"{pc.total / 1e9:.2f} B params, streamed layer by layer: activations {fmt_bytes(acts)}, one layer's "
           f"work {fmt_bytes(layer + hess)}, scoring streams {fmt_bytes(growth)}; +10% and {fmt_bytes(BASE_BYTES)} "
           "for the process")
    return peak, how


def sparse_peak_bytes(cfg: ModelConfig, src_bytes: int, opts, prune) -> tuple[int, str]:
    """Peak resident bytes of `compress sparse`: its streamed pruning half (compress/sparse/memory.py), then the
    streamed quantize half on the pruned checkpoint (no rotation, so embeddings stay tied), one after the other.
    prune: the PruneConfig (reconstruction and SparseGPT change the pruning half)."""
    from .quantize import gptq_fits
    from .sparse.memory import prune_half_bytes

    work, how = prune_half_bytes(cfg, src_bytes, opts.calib_samples, opts.calib_seq_len,
                                 reconstruct=prune is None or prune.reconstruct_epochs > 0,
                                 sparsegpt=prune is not None and prune.method == "sparsegpt")
    prune_peak = BASE_BYTES + int(work * MARGIN)
    gptq = opts.gptq if opts.gptq is not None else gptq_fits(cfg)
    # the inner run carries the scoring streams as compress quantize does (layer units; sparse keeps layers)
    q_peak, q_how = quantize_peak_bytes(cfg, src_bytes, untie=False, scoring=opts.fallback_unit == "layer",
                                        gptq=bool(gptq), calib_tokens=opts.calib_samples * opts.calib_seq_len,
                                        sens_tokens=min(opts.sens_samples, opts.calib_samples) * opts.calib_seq_len)
    return max(prune_peak, q_peak), (f"{how}: {fmt_bytes(prune_peak)} with the process; then the quantize half "
                                     f"{fmt_bytes(q_peak)} ({q_how})")


def _existing_ancestor(p: Path) -> Path:
    while not p.exists():
        p = p.parent
    return p


def _writable(d: Path) -> bool:
    return os.access(d, os.W_OK | os.X_OK)


def check_writable_with_tokenizer(out: Path, tokenizer) -> None:
    """Create a scratch directory where `out` will be made and save the tokenizer into it (then remove it):
    a permission problem or a tokenizer that cannot be written fails now, not after the work."""
    base = _existing_ancestor(out.parent)
    if not _writable(base):
        raise UserError(f"cannot write {out}: {base} is not writable; choose another --out")
    try:
        d = Path(tempfile.mkdtemp(prefix=f".{out.name}.preflight-", dir=base))
    except OSError as e:
        raise UserError(f"cannot write {out}: creating a directory in {base} failed ({e}); choose another --out") \
            from None
    try:
        if tokenizer is not None:
            try:
                tokenizer.save(d)
            except Exception as e:  # any failure here would otherwise end a long run with nothing written
                raise UserError(f"the tokenizer cannot be saved into the output ({type(e).__name__}: {e}); fix "
                                "that first (e.g. install the missing package) or pass --tokenizer "
                                "with a tokenizer.model") from None
    finally:
        shutil.rmtree(d, ignore_errors=True)


def check_disk(out: Path, need: int, what: str) -> None:
    base = _existing_ancestor(out.parent)
    free = shutil.disk_usage(base).free
    if free < need:
        raise UserError(f"not enough disk for {what}: about {fmt_bytes(need)} needed, {fmt_bytes(free)} free at "
                        f"{base}; free space or choose another --out")


def check_memory(need: int, how: str, what: str, skip: bool, log=print) -> None:
    avail = mem_available()
    if avail is None:
        return
    if need > avail and not skip:
        raise UserError(
            f"{what} needs about {fmt_bytes(need)} of RAM ({how}) but only {fmt_bytes(avail)} is available "
            "(MemAvailable): close other programs, use a machine with more memory, or pass "
            "--skip-memory-check to try anyway (the run may then be killed by the OOM killer)")
    if need > avail:
        log(f"warning: --skip-memory-check: about {fmt_bytes(need)} of RAM needed, {fmt_bytes(avail)} available")


def preflight_quantize(cfg: ModelConfig, src_bytes: int, out: Path, tokenizer, opts, *, sparse: bool = False,
                       prune=None, log=print) -> dict[str, int]:
    """All of the checks (opts: QuantizeOptions); returns the estimates (bytes) for the log.

    sparse=True: `compress sparse` (prune: its PruneConfig), which writes the pruned checkpoint once more (a
    pruned HF copy in its temporary directory) before its inner quantize run."""
    from .quantize import gptq_fits

    untie = not sparse and bool(opts.rotate_residual) and cfg.tie_word_embeddings
    gptq = opts.gptq if opts.gptq is not None else gptq_fits(cfg)
    what = "compress sparse" if sparse else "compress quantize"
    held = param_counts(cfg).total * src_bytes if sparse else 0
    check_writable_with_tokenizer(out, tokenizer)
    float_art, int8_art = artifact_parts(cfg, src_bytes, untie)
    art = float_art + int8_art
    # the streamed run's working directory holds every layer's tensors until the artifact is written: its float
    # files become anti_weight/ as hard links, its int8 ones are copied into the tensor-kind files; plus the
    # activation streams it keeps for a resume. A partial run already on disk is part of that (or is discarded
    # as another command's, which frees as much)
    linked = hard_links_work(out.parent)
    from .stream.layers import compute_dtype
    from .stream.workdir import work_path

    act = compute_dtype(cfg).itemsize
    streams = (opts.calib_samples * opts.calib_seq_len + (cfg.num_hidden_layers + 1) * min(
        opts.sens_samples, opts.calib_samples) * opts.calib_seq_len) * cfg.hidden_size * act
    done = tree_bytes(work_path(out))
    disk = max(0, art + (int8_art if linked else art) + streams + held - done)
    how_disk = (f"artifact {fmt_bytes(art)} + the working copy of its int8 tensors"
                + ("" if linked else " and of anti_weight/ (no hard links here)")
                + f" and the activation streams{' + the pruned copy' if sparse else ''}"
                + (f", less {fmt_bytes(done)} a partial run has written" if done else ""))
    check_disk(out, disk, f"the artifact and, until it is written, its working copy ({how_disk})")
    if sparse:
        peak, how = sparse_peak_bytes(cfg, src_bytes, opts, prune)
    else:
        peak, how = quantize_peak_bytes(cfg, src_bytes, untie=untie, scoring=opts.fallback_unit == "layer",
                                        gptq=bool(gptq), calib_tokens=opts.calib_samples * opts.calib_seq_len,
                                        sens_tokens=min(opts.sens_samples, opts.calib_samples) * opts.calib_seq_len)
    check_memory(peak, how, what, opts.skip_memory_check, log)
    log(f"pre-flight: about {fmt_bytes(disk)} of disk ({how_disk}), peak RAM about {fmt_bytes(peak)} ({how})")
    return {"disk": disk, "ram": peak}
