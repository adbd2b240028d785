"""`compress sparse --model 7b --sparsity 0.5 [--pattern unstructured|2:4] [--disable-level Lk]`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from compress.sparse.defaults import RECONSTRUCT_EPOCHS, RECONSTRUCT_LR
from runtime.commands import apply_threads, user_errors


def register(app: typer.Typer) -> None:
    @app.command("sparse")
    @user_errors
    def sparse(
        model: Optional[str] = typer.Option(None, help="preset (7b, 13b, smollm2-135m, stories260k) or a path"),
        weights: Optional[str] = typer.Option(None, help="override a preset's weights path"),
        tokenizer: Optional[str] = typer.Option(None, help="tokenizer, if the checkpoint has none"),
        out: Optional[Path] = typer.Option(None, help="artifact directory (default: <model>-sparse-<pattern>-<level>)"),
        sparsity: float = typer.Option(0.5, help="fraction of weights set to zero in every pruned linear"),
        pattern: str = typer.Option("unstructured", help="unstructured (per output row) or N:M, e.g. 2:4"),
        method: str = typer.Option("wanda", help="wanda (|W|·‖X‖), magnitude (|W|) or sparsegpt (OBS update)"),
        disable_level: Optional[str] = typer.Option(None, help="Lk: k decoder layers stay dense and float "
                                                     "(chosen by measured pruning error; default: the preset's)"),
        float_layers: Optional[str] = typer.Option(None, help="comma-separated layers kept dense and float, by hand"),
        dense_layers: Optional[str] = typer.Option(None, help="extra layers kept dense but int8 (sensitive layers)"),
        reconstruct_epochs: int = typer.Option(RECONSTRUCT_EPOCHS, help="block reconstruction after pruning: Adam "
                                               "epochs per layer fitting the pruned layer to the dense model's "
                                               "output, mask frozen (0 = off; costs ~3 training passes "
                                               "over the calibration set: hours for 7B on a small CPU)"),
        reconstruct_lr: float = typer.Option(RECONSTRUCT_LR, help="block reconstruction learning rate"),
        static_down: bool = typer.Option(False, help="quantize down_proj's input with one static range too (the "
                                         "guide's all-static format; default: per token, see README)"),
        act_method: Optional[str] = typer.Option(None, help="static (per-tensor, the guide's) or dynamic (per-token)"),
        smooth: bool = typer.Option(True, help="anti-outlier smoothing (--no-smooth: plain W8A8)"),
        calib_data: Optional[Path] = typer.Option(None, help="C-Eval directory or text files (default: preset's)"),
        calib_samples: Optional[int] = typer.Option(None, help="calibration sequences"),
        calib_seq_len: Optional[int] = typer.Option(None, help="tokens per calibration sequence"),
        seed: Optional[int] = typer.Option(None),
        threads: Optional[int] = typer.Option(None, help="CPU threads"),
        force: bool = typer.Option(False, help="replace an existing --out"),
        skip_memory_check: bool = typer.Option(False, help="run even where the RAM estimate exceeds MemAvailable"),
    ) -> None:
        """Prune (calibration-aware), then anti-outlier W8A8: an artifact of the same format as compress quantize."""
        import torch

        from compress.quantize import QuantizeOptions
        from compress.recipe import QuantizeRecipe, apply_common
        from compress.sparse.driver import PruneConfig
        from compress.sparse.stage import run_sparse
        from runtime.errors import UserError
        from runtime.loaders import open_source
        from runtime.loading import imported_dir, tokenizer_for
        from runtime.presets import resolve_model

        apply_threads(threads)

        def ints(s: str, what: str) -> list[int]:
            try:
                return [int(u) for u in s.split(",") if u.strip()]
            except ValueError:
                raise UserError(f"--{what} {s!r}: give layer numbers like 0,1,29") from None

        ref = resolve_model(model, weights, tokenizer)
        opts = QuantizeOptions()
        if not smooth:
            opts.alphas = (0.0,)
        calib = apply_common(opts, QuantizeRecipe.of(ref), disable_level=disable_level, act_method=act_method,
                             calib_samples=calib_samples, calib_seq_len=calib_seq_len, seed=seed,
                             calib_data=calib_data,
                             float_units=None if float_layers is None else
                             [str(i) for i in ints(float_layers, "float-layers")])
        opts.skip_memory_check = skip_memory_check
        pcfg = PruneConfig(sparsity, pattern, method, tuple(ints(dense_layers, "dense-layers")) if dense_layers else (),
                           reconstruct_epochs=reconstruct_epochs, reconstruct_lr=reconstruct_lr)
        if static_down:
            opts.dynamic_groups = ()
        hf_dir = imported_dir(ref)
        tok = tokenizer_for(ref, open_source(hf_dir))
        out = out or Path(f"{ref.name}-sparse-{pattern.replace(':', 'of')}-L{opts.disable_level}")
        m = run_sparse(hf_dir, ref.name, tok, out, calib, opts, pcfg, overwrite=force, progress=True, log=typer.echo)
        s, sp = m["_summary"], m["sparsity"]
        typer.echo(f"\nwrote {out}: {sp['method']} {sp['pattern']} sparsity {sp['achieved_mean']:.4f} (target "
                   f"{sp['target']:g}) in every pruned linear; dense+float layers {sp['float_layers']}, dense int8 "
                   f"layers {sorted(set(sp['dense_layers']) - set(sp['float_layers']))}; {s['bytes'] / 2**20:.1f} MiB, "
                   f"{s['seconds']:.0f} s")
        typer.echo(f"pack it with: compress pack {out}    run it with: runtime run --quant {out}")
