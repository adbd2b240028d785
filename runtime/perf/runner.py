"""Run the latency matrix on one engine: warm-up, each case timed, rows with the roofline column.

`run_performance` is the plain function behind `runtime perf` and `runtime run --performance`.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ..engine import Engine
from ..errors import UserError
from .cases import Case
from .memory import available_bytes, case_bytes, peak_bytes, reset_peak
from .report import PerfRow, Summary, file_stem, summarize, write_csv, write_plot
from ..kernels.paths import describe_decode_paths
from .roofline import decode_bytes, measure_read_bandwidth

DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass
class PerfResult:
    rows: list[PerfRow]
    summary: Summary | None
    csv_path: Path
    png_path: Path | None
    bandwidth_gbs: float


def _work(c: Case) -> float:
    """Rough cost of a case in decode-step units, for an honest ETA: prefill tokens are cheaper than steps."""
    return c.seq_out * (1 + c.batch / 32) + 0.25 * c.batch * c.seq_in


def _prompt(batch: int, seq_in: int, vocab: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lo = min(3, vocab - 1)  # stay clear of the special ids 0..2
    return torch.randint(lo, vocab, (batch, seq_in), generator=g, dtype=torch.int64)


def skip_reason(engine: Engine, c: Case, headroom: float = 0.9) -> str | None:
    total = c.seq_in + c.seq_out
    if total + engine.P > engine.max_seq_len:
        extra = f" with the {engine.P}-token KV prefix" if engine.P else ""
        return f"seq_in+seq_out={total}{extra} exceeds max_seq_len {engine.max_seq_len} (raise --max-seq-len)"
    need = case_bytes(engine.model, c.batch, c.seq_in, c.seq_out)
    avail = available_bytes(engine.device)
    if avail is not None and need > headroom * avail:
        return f"needs ~{need / 1e9:.1f} GB (KV cache + activations) but only {avail / 1e9:.1f} GB is free"
    return None


def weight_dtype_name(model) -> str:
    kinds = sorted({type(m).__name__ for m in model.modules() if hasattr(m, "out_splits")})
    base = DTYPE_NAMES.get(model.dtype, str(model.dtype))
    other = [k for k in kinds if k not in ("FloatLinear", "PackedLinear")]
    return f"{base}+{'/'.join(other)}" if other else base


def run_case(engine: Engine, c: Case, floor_bw: float, weight_dtype: str, seed: int = 0,
             decode_path: str = "") -> PerfRow:
    """Time one case: a prompt of exactly seq_in tokens, exactly seq_out new tokens (EOS ignored)."""
    row = PerfRow(c.batch, c.seq_in, c.seq_out, weight_dtype=weight_dtype, decode_path=decode_path)
    reason = skip_reason(engine, c)
    if reason:
        row.status = f"skipped: {reason}"
        return row
    ids = _prompt(c.batch, c.seq_in, engine.cfg.vocab_size, seed)
    reset_peak(engine.device)
    try:
        g = engine.generate(ids, None, c.seq_out, ignore_eos=True)
    except (MemoryError, torch.OutOfMemoryError) as e:  # an estimate can be wrong: record, don't crash the matrix
        engine.release_cache()
        row.status = f"skipped: out of memory ({type(e).__name__})"
        return row
    row.first_token_ms = g.first_token_ms
    row.next_token_ms = g.next_token_ms
    row.total_s = (g.first_token_ms + sum(g.step_ms)) / 1e3
    row.tokens_per_s = c.batch * c.seq_out / row.total_s
    if g.step_ms:
        row.decode_tokens_per_s = c.batch * 1e3 / g.next_token_ms
    pk = peak_bytes(engine.device)
    row.peak_memory_gb = pk / 1e9 if pk is not None else math.nan
    nbytes = decode_bytes(engine.model, c.batch, c.seq_in, c.seq_out)
    row.decode_bytes_gb = nbytes / 1e9
    row.floor_ms = nbytes / floor_bw * 1e3
    if g.step_ms:
        row.roofline_pct = 100.0 * row.floor_ms / g.next_token_ms
    return row


def warm_up(engine: Engine, batch: int) -> float:
    """First calls build kernels and allocate; keep that out of every timed case. Returns a decode step's ms."""
    room = engine.max_seq_len - engine.P
    n = min(16, max(1, room - 4))
    g = engine.generate(_prompt(batch, n, engine.cfg.vocab_size, 1), None, max(1, min(3, room - n)),
                        ignore_eos=True)
    return g.step_ms[-1] if g.step_ms else g.first_token_ms


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else (f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h")


def run_settings(engine: Engine, model_name: str, device: str, weight_dtype: str, seed: int, warmup: bool,
                 fingerprint: dict | None) -> dict:
    """Everything that changes a latency row: the model (checksum), dtypes, threads, cache length, seed."""
    return {"model": model_name, "weight_dtype": weight_dtype, "dtype": DTYPE_NAMES.get(engine.model.dtype),
            "device": device, "threads": torch.get_num_threads(), "max_seq_len": engine.max_seq_len,
            "seed": seed, "warmup": warmup, "fingerprint": fingerprint}


def _resume_rows(partial: Path, settings: dict) -> dict[tuple, PerfRow]:
    lines = [json.loads(ln) for ln in partial.read_text().splitlines() if ln.strip().endswith("}")]
    old = lines[0].get("_settings") if lines else None
    if old != settings:
        if old is None:
            why = "it records no settings (an older version wrote it)"
        else:
            why = ", ".join(f"{k} was {old.get(k)!r}, now {settings[k]!r}" for k in settings
                            if old.get(k) != settings[k])
        raise UserError(f"{partial.parent} holds rows of an interrupted matrix measured with other settings ({why}): "
                        "they would mix with this run's. Resume with the same options, pass --restart to start "
                        "over, or choose another --out")
    done = {}
    for d in lines[1:]:
        d.pop("_model", None)
        r = PerfRow(**d)
        done[r.key] = r
    return done


def run_performance(engine: Engine, cases: list[Case], out_dir: str | Path, model_name: str,
                    device_name: str | None = None, bandwidth: float | None = None, warmup: bool = True,
                    progress: bool = True, plot: bool = True, resume: bool = True, seed: int = 0,
                    echo=print, fingerprint: dict | None = None) -> PerfResult:
    """Run `cases` on `engine`; write the CSV (+ PNG, summary JSON) under `out_dir`; return the rows.

    bandwidth: bytes/s for the roofline floor; measured here when not given. Completed rows are kept in a
    side file as they finish, so an interrupted matrix resumes where it stopped (resume=False starts over).
    The side file's first line records what the rows were measured with (`run_settings`); a resume with
    anything else (another model checksum, dtype, thread count, ...) is refused rather than mixed.
    """
    if not cases:
        raise UserError("no cases to run: give --batch-sizes and --pairs (or the ranges)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = device_name or str(engine.device)
    stem = file_stem(model_name, dev)
    csv_path, png_path = out / f"{stem}.csv", out / f"{stem}.png"
    partial = out / f".{stem}.partial.jsonl"
    bw = bandwidth or measure_read_bandwidth()
    wdt = weight_dtype_name(engine.model)
    settings = run_settings(engine, model_name, dev, wdt, seed, warmup, fingerprint)
    paths = describe_decode_paths(engine.model)
    done: dict[tuple, PerfRow] = {}
    if resume and partial.exists():
        done = _resume_rows(partial, settings)
    elif partial.exists():
        partial.unlink()
    if not partial.exists():
        with open(partial, "w") as f:
            f.write(json.dumps({"_settings": settings}, sort_keys=True) + "\n")
    echo(f"memory read bandwidth: {bw / 1e9:.1f} GB/s ({torch.get_num_threads()} threads); "
         f"{len(cases)} cases" + (f", {sum(1 for c in cases if (c.batch, c.seq_in, c.seq_out) in done)} resumed" if done else ""))
    echo(f"decode path: {paths}")

    rows: list[PerfRow] = []
    warmed: set[int] = set()
    bar = tqdm(total=sum(_work(c) for c in cases), disable=not progress, unit="step", desc="performance",
               bar_format="{l_bar}{bar}| {percentage:3.0f}% [{elapsed}<{remaining}] {postfix}")
    try:
        for c in cases:
            key = (c.batch, c.seq_in, c.seq_out)
            if key in done:
                rows.append(done[key])
                bar.update(_work(c))
                continue
            bar.set_postfix_str(c.name)
            if warmup and c.batch not in warmed and skip_reason(engine, c) is None:
                step = warm_up(engine, c.batch)
                if not warmed:  # an honest order of magnitude up front, before hours of measuring
                    left = sum(_work(x) for x in cases if (x.batch, x.seq_in, x.seq_out) not in done)
                    est = left * step / (1 + c.batch / 32) / 1e3
                    echo(f"estimated time: ~{_duration(est)} for {len(cases) - len(done)} cases (from a warm-up "
                         f"decode step of {step:.1f} ms; long sequences and big batches may take longer)")
                warmed.add(c.batch)
            if engine._cache_shape is not None and engine._cache_shape[0] != c.batch:
                engine.release_cache()  # free the last batch size's cache before measuring memory
            row = run_case(engine, c, bw, wdt, seed, paths)
            rows.append(row)
            with open(partial, "a") as f:
                f.write(json.dumps({**asdict(row), "_model": model_name}) + "\n")
            bar.update(_work(c))
    finally:
        bar.close()
    engine.release_cache()
    write_csv(rows, csv_path)
    summary = summarize(rows)
    if summary is not None:
        from ..atomic import atomic_write_text

        atomic_write_text(out / f"{stem}_summary.json",
                          json.dumps({**asdict(summary), "bandwidth_gbs": bw / 1e9, "line": summary.line()}, indent=1))
        echo(summary.line())
    png = png_path if plot and write_plot(rows, png_path, f"{model_name} on {dev} ({wdt})") else None
    partial.unlink(missing_ok=True)
    return PerfResult(rows, summary, csv_path, png, bw / 1e9)
