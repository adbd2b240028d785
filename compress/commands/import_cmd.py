"""`compress import SRC --out DIR`: any supported checkpoint to an HF-format directory."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from runtime.commands import user_errors


def register(app: typer.Typer) -> None:
    @app.command("import")
    @user_errors
    def import_(
        src: str = typer.Argument(..., help="HF directory, .gguf file, llama2.c .bin, or a preset name"),
        out: Path = typer.Option(..., help="output HF directory (safetensors + tokenizer files)"),
        tokenizer: Optional[str] = typer.Option(None, help="tokenizer for checkpoints that carry none (llama2.c)"),
        dtype: str = typer.Option("fp32", help="dtype of the written tensors: fp32, bf16, fp16"),
        force: bool = typer.Option(False, help="replace an existing --out"),
    ) -> None:
        """Write an HF Llama directory that every later stage and transformers itself can load."""
        from runtime.atomic import check_out
        from runtime.device import parse_dtype
        from runtime.hf_export import export_hf_dir
        from runtime.import_marker import write_import_marker
        from runtime.loaders import open_source
        from runtime.loading import tokenizer_for
        from runtime.presets import resolve_model

        check_out(out, force)
        dt = parse_dtype(dtype)
        ref = resolve_model(src, tokenizer=tokenizer)
        source = open_source(ref.path)
        tok = tokenizer_for(ref, source)
        export_hf_dir(source, tok, out, dtype=dt, overwrite=force, progress=True)
        write_import_marker(out, str(ref.path))
        c = source.config
        typer.echo(f"wrote {out}: {c.num_hidden_layers} layers, hidden {c.hidden_size}, heads {c.num_attention_heads}/"
                   f"{c.num_key_value_heads}, vocab {c.vocab_size}")
