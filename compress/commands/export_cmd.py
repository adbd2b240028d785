"""`compress export --format compressed-tensors|msmodelslim ART --out DIR`: hand an artifact to a serving engine."""
from __future__ import annotations

from pathlib import Path

import typer

from runtime.commands import user_errors


def register(app: typer.Typer) -> None:
    @app.command("export")
    @user_errors
    def export(
        artifact: Path = typer.Argument(..., help="artifact directory (compress quantize / sparse --out)"),
        format: str = typer.Option(..., "--format", help="compressed-tensors (transformers, vLLM) or msmodelslim "
                                   "(MindIE / ATB, vLLM-Ascend)"),
        out: Path = typer.Option(..., help="output directory, written whole or not at all"),
        force: bool = typer.Option(False, help="replace an existing --out"),
    ) -> None:
        """Convert a static W8A8 artifact (no online Hadamard, not packed, not cut) to a serving format."""
        from compress.export import export_artifact

        s = export_artifact(artifact, format, out, overwrite=force)
        typer.echo(f"wrote {out}: {s['format']}, {s['int8_modules']} int8 linears, files {', '.join(s['files'])}")
        if s["format"] == "compressed-tensors":
            typer.echo(f"load it with: AutoModelForCausalLM.from_pretrained({str(out)!r})  "
                       "(needs pip install 'llama-compress[export]')")
