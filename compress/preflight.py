"""Pre-flight checks for `compress quantize` / `compress sparse`: everything that can fail is tried first.

Before the calibration and smoothing (minutes to hours at 7B) we check that the tokenizer can be
written, that the output directory can be created, that the disk holds the artifact and that RAM
holds the plan. The estimates are computed from the model config and describe the CURRENT
(non-streamed) pipeline, which holds the model several times; they are upper-bound style
(measured peak RSS vs estimate: 4.35 vs 4.15 GiB for a 2-layer LLaMA-2-7B-shape --no-smooth run here; the
issue's 4-layer 7B run with sensitivity scores 12.96 GB vs 14.96 GB estimated).
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


def artifact_bytes(cfg: ModelConfig, src_bytes: int, untie: bool) -> int:
    """int8 linears + anti_weight/ (every tensor in the source dtype; a rotated tied model gets its own
    lm_head) + per-channel scales (fp32) + 2% and 16 MiB for headers, tokenizer, manifest."""
    pc = param_counts(cfg)
    head = pc.lm_head or (pc.embed if untie else 0)
    float_copy = (pc.embed + head + pc.linears + pc.norms) * src_bytes
    scales = cfg.num_hidden_layers * (cfg.num_attention_heads * cfg.head_dim * 2 + 2 * cfg.num_key_value_heads
                                      * cfg.head_dim + 2 * cfg.intermediate_size + cfg.hidden_size) * 4 * 2
    return int((pc.linears + float_copy + scales) * 1.02) + 16 * 2**20


def quantize_peak_bytes(cfg: ModelConfig, src_bytes: int, *, untie: bool, scoring: bool, gptq: bool,
                        calib_tokens: int) -> tuple[int, str]:
    """Peak resident bytes of today's run_quantize, and how it was reckoned.

    Phase 1 (statistics): the transformers model (bf16 from 7B width x 16 layers on, else fp32) plus the
    calibration activations of one layer and, with GPTQ, one in x in fp32 matrix per linear group.
    Phase 2 (smoothing, int8, sensitivity): the source tensors and the transformed float tensors (source
    dtype, both held), the int8 weights, and for the sensitivity scores a fp32 fake-quant reference
    model (float weight + fake-quant weight: 8 bytes per linear weight, 4 per other weight).
    """
    pc = param_counts(cfg)
    n = pc.total + (pc.embed if untie and not pc.lm_head else 0)
    big = cfg.hidden_size * cfg.num_hidden_layers > 4096 * 16
    hf_bytes = 2 if big else 4
    acts = calib_tokens * max(cfg.hidden_size, cfg.intermediate_size) * 4 * 4
    hess = cfg.num_hidden_layers * (3 * cfg.hidden_size**2 + cfg.intermediate_size**2) * 4 if gptq else 0
    phase1 = pc.total * hf_bytes + acts + hess
    phase2 = n * src_bytes * 2 + pc.linears + (pc.linears * 8 + (n - pc.linears) * 4 if scoring else 0) + hess
    peak = BASE_BYTES + int(max(phase1, phase2) * MARGIN)
    how = (f"{pc.total / 1e9:.2f} B params: statistics {fmt_bytes(phase1)} (model in "
           f"{'bf16' if hf_bytes == 2 else 'fp32'}), smoothing+int8{'+sensitivity' if scoring else ''} "
           f"{fmt_bytes(phase2)}; +10% and {fmt_bytes(BASE_BYTES)} for the process")
    return peak, how


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
                       log=print) -> dict[str, int]:
    """All of the checks (opts: QuantizeOptions); returns the estimates (bytes) for the log.

    sparse=True: `compress sparse`, which also holds the pruned tensors (source dtype) through its inner
    quantize run and writes them once more (a pruned HF copy in its temporary directory)."""
    from .quantize import gptq_fits

    scoring = not sparse and opts.rank_by == "error" and (opts.disable_level > 0 or opts.float_units is None)
    untie = not sparse and bool(opts.rotate_residual) and cfg.tie_word_embeddings
    gptq = opts.gptq if opts.gptq is not None else gptq_fits(cfg)
    what = "compress sparse" if sparse else "compress quantize"
    held = param_counts(cfg).total * src_bytes if sparse else 0
    check_writable_with_tokenizer(out, tokenizer)
    disk = artifact_bytes(cfg, src_bytes, untie) + held
    check_disk(out, disk, "the artifact (int8 linears + anti_weight/ in the source dtype"
               + (" + the pruned copy)" if sparse else ")"))
    peak, how = quantize_peak_bytes(cfg, src_bytes, untie=untie, scoring=scoring, gptq=bool(gptq),
                                    calib_tokens=opts.calib_samples * opts.calib_seq_len)
    if sparse:
        peak += int(held * MARGIN)
        how += f"; + {fmt_bytes(held)} of pruned tensors held by compress sparse"
    check_memory(peak, how, what, opts.skip_memory_check, log)
    log(f"pre-flight: artifact about {fmt_bytes(disk)} on disk, peak RAM about {fmt_bytes(peak)} ({how})")
    return {"disk": disk, "ram": peak}
