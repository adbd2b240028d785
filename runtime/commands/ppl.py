"""`runtime ppl`: WikiText-2 perplexity of a float model or a compressed artifact (--quant), and with
`--kl-divergence` its KL divergence and top-1 agreement against a float reference."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..atomic import atomic_write_text, check_out_file
from ..errors import UserError
from . import apply_threads, user_errors


def load_reference(base: Optional[str], quant: Optional[Path], dtype: str, device: str):
    """(float model, description) of the reference: `--base`, else the artifact's own float model. A W8A8
    artifact's anti_weight/ computes the source model's function (up to float rounding), so that is KL against
    the source; a sparse artifact's holds the pruned model: pass `--base SOURCE` to include the pruning loss."""
    from ..device import parse_dtype, resolve_device
    from ..loaders import open_source
    from ..loading import build_model, imported_dir
    from ..presets import resolve_model

    dt, dev = parse_dtype(dtype), resolve_device(device)
    if base is not None:
        ref = resolve_model(base)
        src = open_source(imported_dir(ref))
        return build_model(src, dt, dev), f"{ref.name} ({src.path}) {dtype}"
    if quant is not None:
        from ..quant.artifact import ANTI_DIR

        src = open_source(Path(quant) / ANTI_DIR)
        return build_model(src, dt, dev), f"{Path(quant) / ANTI_DIR} (the artifact's float model) {dtype}"
    raise UserError("--kl-divergence needs a float reference: pass --base MODEL, or --quant ART (its anti_weight/), "
                    "or an existing --kl-divergence-base FILE")


def register(app: typer.Typer) -> None:
    @app.command("ppl")
    @user_errors
    def ppl(
        model: Optional[str] = typer.Option(None, help="preset or path; default smollm2-135m"),
        weights: Optional[str] = typer.Option(None, help="override a preset's weights path"),
        tokenizer: Optional[str] = typer.Option(None, help="tokenizer, if the model has none"),
        quant: Optional[Path] = typer.Option(None, help="score a compressed artifact directory instead"),
        data: Optional[Path] = typer.Option(None, help="raw text file (default: shared wikitext-2-raw/wiki.test.raw)"),
        text_recipe: str = typer.Option("hf", help="hf: Hugging Face wikitext-2-raw-v1 rows joined with \"\\n\\n\" "
                                                   "(the field's figures); raw: the file as it is (llama.cpp)"),
        window: int = typer.Option(512, help="tokens per window"),
        stride: int = typer.Option(512, help="tokens between window starts (= window: no overlap)"),
        windows: Optional[int] = typer.Option(None, help="score only the first N windows (default: all)"),
        kl_divergence: bool = typer.Option(False, "--kl-divergence",
                                           help="also KL divergence and top-1 agreement against a float reference"),
        base: Optional[str] = typer.Option(None, help="the float reference (preset or path); "
                                                      "default with --quant: the artifact's anti_weight/"),
        kl_base: Optional[Path] = typer.Option(None, "--kl-divergence-base",
                                               help="reference logits file: read if it exists (with --kl-divergence), "
                                                    "else written (without --kl-divergence: the scored model's)"),
        dtype: str = typer.Option("fp32", help="fp32, bf16 or fp16"),
        device: str = typer.Option("cpu"),
        threads: Optional[int] = typer.Option(None, help="CPU threads"),
        json_out: Optional[Path] = typer.Option(None, "--json", help="write the result here"),
    ) -> None:
        """Perplexity over 512-token windows, stride 512 (the usual WikiText-2 protocol)."""
        from ..perplexity import RECIPES, load_windows, perplexity
        from .run import load_for_run

        if text_recipe not in RECIPES:  # before loading any model
            raise UserError(f"--text-recipe {text_recipe!r} is not known: use one of {', '.join(RECIPES)}")
        if windows is not None and windows < 1:
            raise UserError(f"--windows {windows}: give a positive number of windows, or leave it out to score all")
        if window < 2 or stride < 1:
            raise UserError(f"--window {window} --stride {stride}: a window needs at least 2 tokens and the stride "
                            "must be positive (the usual protocol: 512 and 512)")
        if json_out is not None:
            check_out_file(json_out, "--json")
        apply_threads(threads)
        if base is not None and not kl_divergence:
            raise UserError("--base names the reference of --kl-divergence: add --kl-divergence")
        engine, tok, desc = load_for_run(model, weights, tokenizer, quant, dtype, device, window)
        wins = load_windows(tok, data, window, stride, windows, text_recipe)
        common = {"windows": len(wins), "window": window, "stride": stride, "text_recipe": text_recipe,
                  "model": desc}
        typer.echo(f"model: {desc}")
        if not kl_divergence:
            if kl_base is not None:
                from ..kl_divergence import write_reference

                p = write_reference(engine.model, wins, kl_base, desc, progress=True)
                tokens = sum(int(w.shape[1] - f) for w, f in wins)
                out = {"ppl": p, "tokens": tokens, **common, "kl_divergence_base": str(kl_base)}
                typer.echo(f"perplexity {p:.4f} over {tokens} tokens in {len(wins)} windows of {window} "
                           f"(stride {stride}, recipe {text_recipe}); reference logits -> {kl_base}")
            else:
                r = perplexity(engine.model, wins, progress=True)
                out = {"ppl": r.ppl, "nll": r.nll, "tokens": r.tokens, **common}
                typer.echo(f"perplexity {r.ppl:.4f} over {r.tokens} tokens in {r.windows} windows of {window} "
                           f"(stride {stride}, recipe {text_recipe})")
        else:
            from ..kl_divergence import CachedReference, CacheWriter, LiveReference, kl_perplexity

            vocab = engine.model.config.vocab_size
            writer = None
            if kl_base is not None and kl_base.exists():
                if base is not None:
                    raise UserError(f"--kl-divergence-base {kl_base} exists and is the reference; --base would "
                                    "be ignored: drop one of them")
                ref = CachedReference(kl_base, wins, vocab)
            else:
                ref_model, ref_desc = load_reference(base, quant, "fp32", device)
                if ref_model.config.vocab_size != vocab:
                    raise UserError(f"the reference has {ref_model.config.vocab_size} vocabulary rows, the model "
                                    f"{vocab}: they do not share a tokenizer; pass the model's own float --base")
                ref = LiveReference(ref_model, wins, ref_desc)
                if kl_base is not None:
                    writer = CacheWriter(kl_base, wins, vocab, ref_desc)
            r = kl_perplexity(engine.model, ref, wins, writer, progress=True)
            out = {**r.as_dict(), **common, "reference": ref.desc}
            typer.echo(f"reference: {ref.desc}" + (f" (from {kl_base})" if isinstance(ref, CachedReference) else ""))
            typer.echo(f"perplexity {r.ppl:.4f}, reference {r.ppl_float:.4f} ({100 * (r.ppl / r.ppl_float - 1):+.2f}%) "
                       f"over {r.tokens} tokens in {r.windows} windows of {window} (stride {stride}, recipe {text_recipe})")
            typer.echo(f"KL divergence: mean {r.kld_mean:.6f} ± {r.kld_mean_stderr:.6f}, median {r.kld_median:.6f}, "
                       f"99% {r.kld_p99:.6f}, max {r.kld_max:.6f}")
            typer.echo(f"same top token: {100 * r.top1_agreement:.3f}%")
        if json_out is not None:
            atomic_write_text(json_out, json.dumps(out, indent=1))
