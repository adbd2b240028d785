"""`runtime eval-mmlu`: MMLU k-shot accuracy of a float model or a compressed artifact, and `--compare`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import UserError
from . import apply_threads, user_errors


def register(app: typer.Typer) -> None:
    @app.command("eval-mmlu")
    @user_errors
    def eval_mmlu(
        model: Optional[str] = typer.Option(None, help="preset (smollm2-135m, 7b, ...) or a path; default smollm2-135m"),
        weights: Optional[str] = typer.Option(None, help="override a preset's weights path"),
        tokenizer: Optional[str] = typer.Option(None, help="tokenizer.model / HF dir / .gguf, if the model has none"),
        quant: Optional[Path] = typer.Option(None, help="evaluate a compressed artifact directory instead"),
        data: Optional[Path] = typer.Option(None, help="MMLU folder (dev/, test/, mapping.json); default ../shared/data/mmlu"),
        out: Optional[Path] = typer.Option(None, help="output directory (test_result/ goes inside); reused to resume"),
        shots: int = typer.Option(5, help="dev examples before each question (fewer when the prompt is too long)"),
        batch: int = typer.Option(1, help="questions scored together (sorted by length, so little padding)"),
        subjects: Optional[list[str]] = typer.Option(None, "--subjects", help="repeat to pick subjects; default all 57"),
        limit: Optional[int] = typer.Option(None, help="first N test questions per subject"),
        fmt: str = typer.Option("hendrycks", "--format", help="hendrycks (the guide's protocol) or lm-eval"),
        prefix_cache: bool = typer.Option(True, help="compute each subject's shots once and reuse their KV cache"),
        max_seq_len: int = typer.Option(2048, help="longest prompt; longer ones drop shots until they fit"),
        dtype: str = typer.Option("fp32", help="fp32, bf16 or fp16"),
        device: str = typer.Option("cpu", help="cpu, cuda or npu"),
        threads: Optional[int] = typer.Option(None, help="CPU threads (default: all cores)"),
        restart: bool = typer.Option(False, "--restart", help="discard the run kept in --out and start over"),
        compare: Optional[tuple[Path, Path]] = typer.Option(None, help="DIR_A DIR_B: print per-subject and overall deltas of two runs"),
    ) -> None:
        """MMLU k-shot (hendrycks/test protocol): writes test_result/cache.csv and the accuracy summaries."""
        from ..mmlu import compare_runs, format_compare, run_mmlu

        if compare:
            a, b = compare
            typer.echo(format_compare(compare_runs(a, b), a.name or str(a), b.name or str(b)))
            return
        if out is None:
            raise UserError("--out DIR is required: the directory that receives test_result/ (and resumes from it)")
        apply_threads(threads)
        from .run import load_for_run

        from ..fingerprint import model_fingerprint

        engine, tok, desc = load_for_run(model, weights, tokenizer, quant, dtype, device, max_seq_len)
        typer.echo(f"model: {desc}")
        fp = model_fingerprint(model, weights, tokenizer, quant, dtype, device, tok)
        res = run_mmlu(engine, tok, data, out, shots=shots, batch=batch, subjects=subjects, limit=limit, fmt=fmt,
                       prefix_cache=prefix_cache, model_desc=desc, fingerprint=fp, restart=restart)
        typer.echo(json.dumps({k: res[k] for k in res if k not in ("subjects",)}, indent=1))
        o = res["overall"]
        typer.echo(f"MMLU {shots}-shot: micro {100 * o['micro_acc']:.2f}%  macro {100 * o['macro_acc']:.2f}%  "
                   f"({o['correct']} of {o['total']} questions right, {o['subjects']} subjects) -> {out / 'test_result'}")
