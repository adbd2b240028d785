"""`runtime ppl`: WikiText-2 perplexity of a float model or a compressed artifact (--quant)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from . import apply_threads, user_errors


def register(app: typer.Typer) -> None:
    @app.command("ppl")
    @user_errors
    def ppl(
        model: Optional[str] = typer.Option(None, help="preset or path; default smollm2-135m"),
        weights: Optional[str] = typer.Option(None, help="override a preset's weights path"),
        tokenizer: Optional[str] = typer.Option(None, help="tokenizer, if the model has none"),
        quant: Optional[Path] = typer.Option(None, help="score a compressed artifact directory instead"),
        data: Optional[Path] = typer.Option(None, help="raw text file (default: shared wikitext-2-raw/wiki.test.raw)"),
        window: int = typer.Option(512, help="tokens per window"),
        stride: int = typer.Option(512, help="tokens between window starts (= window: no overlap)"),
        windows: Optional[int] = typer.Option(None, help="score only the first N windows (default: all)"),
        dtype: str = typer.Option("fp32", help="fp32, bf16 or fp16"),
        device: str = typer.Option("cpu"),
        threads: Optional[int] = typer.Option(None, help="CPU threads"),
        json_out: Optional[Path] = typer.Option(None, "--json", help="write the result here"),
    ) -> None:
        """Perplexity over 512-token windows, stride 512 (the usual WikiText-2 protocol)."""
        from ..perplexity import load_windows, perplexity
        from .run import load_for_run

        from ..atomic import atomic_write_text, check_out_file
        from ..errors import UserError

        if windows is not None and windows < 1:
            raise UserError(f"--windows {windows}: give a positive number of windows, or leave it out to score all")
        if window < 2 or stride < 1:
            raise UserError(f"--window {window} --stride {stride}: a window needs at least 2 tokens and the stride "
                            "must be positive (the usual protocol: 512 and 512)")
        if json_out is not None:
            check_out_file(json_out, "--json")
        apply_threads(threads)
        engine, tok, desc = load_for_run(model, weights, tokenizer, quant, dtype, device, window)
        wins = load_windows(tok, data, window, stride, windows)
        r = perplexity(engine.model, wins, progress=True)
        typer.echo(f"model: {desc}")
        typer.echo(f"perplexity {r.ppl:.4f} over {r.tokens} tokens in {r.windows} windows of {window} (stride {stride})")
        if json_out is not None:
            atomic_write_text(json_out, json.dumps({"ppl": r.ppl, "nll": r.nll, "tokens": r.tokens,
                                                    "windows": r.windows, "window": window, "stride": stride,
                                                    "model": desc}, indent=1))
