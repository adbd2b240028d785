"""`compress verify DIR`: re-check an artifact's format version and every file's sha256."""
from __future__ import annotations

from pathlib import Path

import typer

from runtime.commands import user_errors


def register(app: typer.Typer) -> None:
    @app.command("verify")
    @user_errors
    def verify(artifact: Path = typer.Argument(..., help="artifact directory")) -> None:
        """Exit 0 when intact; otherwise list every missing, altered or unlisted file and exit 1."""
        from runtime.quant.artifact import read_manifest, verify as verify_files

        m = read_manifest(artifact)
        problems = verify_files(artifact, m)
        if problems:
            for p in problems:
                typer.secho(f"  {p}", fg="red", err=True)
            typer.secho(f"{artifact}: {len(problems)} problem(s): copy the artifact again or re-run compress quantize",
                        fg="red", err=True)
            raise typer.Exit(1)
        typer.echo(f"{artifact}: OK ({m['format']['name']} {m['format']['version']}, {len(m['files'])} files, "
                   f"float units {m.get('fallback', {}).get('float_units')})")
