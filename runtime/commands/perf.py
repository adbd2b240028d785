"""`runtime perf`: the guide's latency matrix (run.sh --performance) on a real model or a random-weight shape."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import apply_threads, user_errors


def build_engine(model: Optional[str], weights: Optional[str], quant: Optional[Path], shape: Optional[str],
                 layers: Optional[int], dtype: str, device: str, max_seq_len: int, scheme: Optional[str] = None):
    """(engine, model_name) for a preset/path, a compressed artifact, or random weights of a named shape
    (in `scheme`: bf16, w8a8, w8a8-sparse50, w8a8-sparse24; see runtime/perf/random_schemes.py)."""
    from ..device import parse_dtype, resolve_device
    from ..engine import Engine
    from ..errors import UserError

    if shape is not None:
        if model is not None or quant is not None:
            raise UserError("--shape builds random weights: give it without --model/--quant")
        from ..loading import build_model
        from ..perf.shapes import random_shape_source

        dt, dev = parse_dtype(dtype), resolve_device(device)
        src = random_shape_source(shape, layers, dt)
        name = shape + (f"-{layers}L" if layers else "")
        binder = None
        if scheme is not None:
            from ..perf.random_schemes import RandomSchemeBinder, check_scheme

            check_scheme(scheme)
            if scheme != "bf16" and dev.type != "cpu":
                raise UserError(f"--scheme {scheme} runs the CPU int8 kernels: use --device cpu")
            binder = RandomSchemeBinder(src, scheme, dt, dev)
            name += f"-{scheme}"
        return Engine(build_model(src, dt, dev, binder), max_seq_len=max_seq_len), name
    if scheme is not None:
        raise UserError("--scheme fills a random --shape with weights in that scheme: give --shape too "
                        "(a real artifact's scheme comes from --quant)")
    if layers is not None:
        raise UserError("--layers cuts a random --shape; real models run at full depth")
    from .run import load_for_run

    engine, _tok, desc = load_for_run(model, weights, None, quant, dtype, device, max_seq_len)
    name = (quant.name if quant is not None else desc.split(" ")[0]) + f"-{dtype}"
    return engine, name


def register(app: typer.Typer) -> None:
    @app.command("perf")
    @user_errors
    def perf(
        model: Optional[str] = typer.Option(None, help="preset or path (default smollm2-135m); see also --shape"),
        weights: Optional[str] = typer.Option(None, help="override a preset's weights path"),
        quant: Optional[Path] = typer.Option(None, help="a compressed artifact directory"),
        shape: Optional[str] = typer.Option(None, help="random weights with true shapes: llama2-7b, llama2-13b, tinyllama-1.1b"),
        layers: Optional[int] = typer.Option(None, help="with --shape: keep only the first K layers (quick runs)"),
        scheme: Optional[str] = typer.Option(None, help="with --shape: random weights in bf16, w8a8, w8a8-sparse50 or w8a8-sparse24"),
        dtype: str = typer.Option("bf16", help="fp32, bf16 or fp16"),
        device: str = typer.Option("cpu", help="cpu, cuda or npu"),
        batch_sizes: str = typer.Option("1,4,8,16,32", help="batch sizes of the matrix"),
        batch: Optional[int] = typer.Option(None, help="single case: batch size (with --seq-in/--seq-out)"),
        seq_in: Optional[int] = typer.Option(None, help="single case: prompt tokens"),
        seq_out: Optional[int] = typer.Option(None, help="single case: generated tokens"),
        seq_in_range: str = typer.Option("5,11", help="power-of-two grid: prompt lengths 2**LO .. 2**(HI-1)"),
        seq_out_range: str = typer.Option("5,11", help="power-of-two grid: output lengths 2**LO .. 2**(HI-1)"),
        pairs: Optional[str] = typer.Option(None, help="explicit SEQ_IN:SEQ_OUT pairs instead of the grid, e.g. 256:64,512:512"),
        max_seq_len: int = typer.Option(2048, help="KV-cache length; longer cases are skipped with the reason"),
        threads: Optional[int] = typer.Option(None, help="CPU threads (default: all cores)"),
        out: Optional[Path] = typer.Option(None, help="directory for the CSV, PNG and summary (default: ./perf_out)"),
        restart: bool = typer.Option(False, "--restart", help="discard rows kept from an interrupted run and start over"),
        plot: bool = typer.Option(True, "--plot/--no-plot", help="write the PNG of the latencies"),
    ) -> None:
        """The latency matrix: first-token and next-token latency per (batch, seq_in, seq_out), with a roofline column."""
        from ..errors import UserError
        from ..perf.cases import build_cases, grid_pairs, parse_int_list, parse_pairs, parse_range
        from ..perf.runner import run_performance

        apply_threads(threads)
        single = (batch, seq_in, seq_out)
        if any(v is not None for v in single):
            if any(v is None for v in single):
                raise UserError("a single case needs all of --batch, --seq-in and --seq-out")
            if min(single) < 1:
                raise UserError("--batch, --seq-in and --seq-out must be positive")
            bs, prs = [batch], [(seq_in, seq_out)]
        else:
            bs = parse_int_list(batch_sizes, "--batch-sizes")
            prs = parse_pairs(pairs) if pairs else grid_pairs(parse_range(seq_in_range, "--seq-in-range"),
                                                             parse_range(seq_out_range, "--seq-out-range"))
        if max_seq_len < 2:
            raise UserError(f"--max-seq-len {max_seq_len}: give at least 2 positions")
        cases = build_cases(bs, prs)
        where = f"{out}/" if out is not None else f"{Path.cwd() / 'perf_out'}/ (the default --out, in the current directory)"
        typer.echo(f"performance matrix: {len(cases)} cases (batch sizes {','.join(map(str, bs))} x {len(prs)} "
                   f"seq_in:seq_out pairs, longest {max(i for i, _ in prs)}:{max(o for _, o in prs)}) -> {where}")
        out = out if out is not None else Path("perf_out")
        engine, name = build_engine(model, weights, quant, shape, layers, dtype, device, max_seq_len, scheme)
        if shape is not None:
            fp = {"weights": {"kind": "random", "shape": shape, "layers": layers, "scheme": scheme}, "dtype": dtype,
                  "device": device}
        else:
            from ..fingerprint import model_fingerprint

            fp = model_fingerprint(model, weights, None, quant, dtype, device)
        res = run_performance(engine, cases, out, name, device_name=device, resume=not restart,
                              plot=plot, echo=typer.echo, fingerprint=fp)
        for r in res.rows:
            if not r.ok:
                typer.echo(f"  {r.batch}x{r.seq_in}:{r.seq_out} {r.status}")
        typer.echo(f"wrote {res.csv_path}" + (f" and {res.png_path}" if res.png_path else ""))
