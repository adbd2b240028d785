"""`compress quantize --model 7b --disable-level L6 [--out DIR]`: anti-outlier W8A8 artifact."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from runtime.commands import apply_threads, user_errors


def register(app: typer.Typer) -> None:
    @app.command("quantize")
    @user_errors
    def quantize(
        model: Optional[str] = typer.Option(None, help="preset (7b, 13b, smollm2-135m, stories260k) or a path"),
        weights: Optional[str] = typer.Option(None, help="override a preset's weights path"),
        tokenizer: Optional[str] = typer.Option(None, help="tokenizer, if the checkpoint has none"),
        out: Optional[Path] = typer.Option(None, help="artifact directory (default: <model>-w8a8-<level>)"),
        disable_level: Optional[str] = typer.Option(None, help="Lk: leave k units in float (default: the preset's)"),
        fallback_unit: Optional[str] = typer.Option(None, help="layer (whole decoder layers) or linear "
                                                    "(default: the preset's, else layer)"),
        float_layers: Optional[str] = typer.Option(None, help="comma-separated units to keep in float, by hand"),
        fallback_weights: Optional[str] = typer.Option(None, help="weights of the float-fallback units: float "
                                                       "(default), or int8 (W8A16: int8 per output channel, "
                                                       "activations stay float)"),
        rank_by: str = typer.Option("error", help="error (measured KL, default) or range (activation range)"),
        act_method: Optional[str] = typer.Option(None, help="static (per-tensor, the guide's) or dynamic (per-token)"),
        smooth: bool = typer.Option(True, help="anti-outlier smoothing and rotations (--no-smooth: plain W8A8)"),
        alphas: Optional[str] = typer.Option(None, help="smoothing strengths to try, e.g. 0,0.5,0.8"),
        range_search: str = typer.Option("mse", help="mse (searched activation range) or minmax"),
        hadamard_block: Optional[int] = typer.Option(None, help="online Hadamard rotation of the down_proj input: "
                                                     "block size (a power of two; 0 = off; default: the largest "
                                                     "power of two <= 512 dividing the intermediate size)"),
        rotate_o: bool = typer.Option(True, help="per-head Hadamard folded into v_proj/o_proj (exact in float)"),
        rotate_residual: bool = typer.Option(True, help="Hadamard rotation of the residual stream folded into "
                                             "every weight (exact in float; unties tied embeddings)"),
        calib_data: Optional[List[Path]] = typer.Option(None, help="C-Eval or MMLU directory, or text files "
                                                        "(default: the preset's); given more than once, the "
                                                        "sources share the samples equally"),
        calib_samples: Optional[int] = typer.Option(None, help="calibration sequences"),
        calib_seq_len: Optional[int] = typer.Option(None, help="tokens per calibration sequence"),
        sens_samples: int = typer.Option(4, help="calibration sequences used to score units"),
        max_rows: int = typer.Option(512, help="sampled activation rows per group for the smoothing and range "
                                     "searches (plus the rows of largest magnitude, counted exactly)"),
        dynamic_groups: Optional[str] = typer.Option(None, help="groups whose inputs are quantized per token at "
                                                     "run time even with static activations: comma-separated "
                                                     "from qkv, o, gate_up, down"),
        gptq: Optional[bool] = typer.Option(None, "--gptq/--no-gptq",
                                            help="GPTQ weight rounding (default: the preset's, else off)"),
        kv_prefix: Optional[str] = typer.Option(None, help="attention-sink KV prefix: comma-separated token ids "
                                                "whose float keys/values every sequence starts with (calibrated "
                                                "with them in attention, out of every activation range; format "
                                                "1.3), or none (default: the preset's, else none)"),
        seed: Optional[int] = typer.Option(None),
        threads: Optional[int] = typer.Option(None, help="CPU threads"),
        force: bool = typer.Option(False, help="replace an existing --out"),
        skip_memory_check: bool = typer.Option(False, help="run even where the RAM estimate exceeds MemAvailable"),
    ) -> None:
        """Calibrate, smooth, quantize to int8 and write a verified, versioned artifact."""
        import torch

        from compress.quantize import QuantizeOptions, run_quantize
        from compress.recipe import QuantizeRecipe, apply_common
        from runtime.errors import UserError
        from runtime.loaders import open_source
        from runtime.loading import imported_dir, tokenizer_for
        from runtime.presets import resolve_model

        apply_threads(threads)
        ref = resolve_model(model, weights, tokenizer)
        recipe = QuantizeRecipe.of(ref)  # the preset's recipe, typed; unknown keys are refused
        opts = QuantizeOptions()
        fallback_unit = fallback_unit or recipe.fallback_unit
        opts.fallback_unit = fallback_unit
        opts.gptq = gptq if gptq is not None else recipe.gptq
        opts.rank_by = rank_by
        opts.fallback_weights = fallback_weights or recipe.fallback_weights
        opts.range_search = range_search
        opts.hadamard_down = hadamard_block if hadamard_block is not None else recipe.hadamard_block
        opts.rotate_o, opts.rotate_residual = rotate_o, rotate_residual
        if alphas is not None:
            try:
                opts.alphas = tuple(float(a) for a in alphas.split(","))
            except ValueError:
                raise UserError(f"--alphas {alphas!r}: give numbers like 0,0.5,0.8") from None
        if not smooth:  # plain W8A8: no anti-outlier stage at all
            opts.alphas = (0.0,)
            opts.hadamard_down, opts.rotate_o, opts.rotate_residual = (hadamard_block or 0), False, False
        opts.sens_samples = sens_samples
        if max_rows < 16:
            raise UserError(f"--max-rows {max_rows}: use at least 16 rows per group")
        opts.max_rows = max_rows
        if dynamic_groups is not None:
            opts.dynamic_groups = tuple(g.strip() for g in dynamic_groups.split(",") if g.strip())
        units = None if float_layers is None else [u.strip() for u in float_layers.split(",") if u.strip()]
        calib = apply_common(opts, recipe, disable_level=disable_level, act_method=act_method,
                             calib_samples=calib_samples, calib_seq_len=calib_seq_len, seed=seed,
                             calib_data=calib_data or None, float_units=units, fallback_unit=fallback_unit)
        opts.skip_memory_check = skip_memory_check
        from compress.stream.prefix import parse_prefix

        opts.kv_prefix = parse_prefix(kv_prefix if kv_prefix is not None else recipe.kv_prefix)
        hf_dir = imported_dir(ref)
        tok = tokenizer_for(ref, open_source(hf_dir))
        out = out or Path(f"{ref.name}-w8a8-L{opts.disable_level}")
        m = run_quantize(hf_dir, ref.name, tok, out, calib, opts, overwrite=force, progress=True, log=typer.echo)
        s = m["_summary"]
        typer.echo(f"\nwrote {out}: {s['int8_modules']}/{s['modules']} linears int8 "
                   f"({m['method']['act_method']} activations), float {m['fallback']['unit']}s "
                   f"{m['fallback']['float_units']} (disable level {m['fallback']['disable_level']}, chosen by "
                   f"{m['fallback']['chosen_by']}), {s['bytes'] / 2**20:.1f} MiB, {s['seconds']:.0f} s")
        if m.get("kv_prefix"):
            typer.echo(f"KV prefix {m['kv_prefix']['token_ids']} (format {m['format']['version']}): every sequence "
                       "starts with its float keys/values")
        typer.echo(f"check it with: compress verify {out}    run it with: runtime run --quant {out}")
