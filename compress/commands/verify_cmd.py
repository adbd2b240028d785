"""`compress verify DIR`: re-check an artifact, a packed artifact or a cut directory: format version,
every file's sha256, and the manifest's claims against the tensors (runtime/format/verify.py)."""
from __future__ import annotations

from pathlib import Path

import typer

from runtime.commands import user_errors


def register(app: typer.Typer) -> None:
    @app.command("verify")
    @user_errors
    def verify(artifact: Path = typer.Argument(..., help="artifact, packed artifact or cut directory")) -> None:
        """Exit 0 when intact; otherwise list every missing, altered or unlisted file or false claim and exit 1."""
        from runtime.format.verify import verify_dir

        kind, m, problems = verify_dir(artifact)
        if problems:
            for p in problems:
                typer.secho(f"  {p}", fg="red", err=True)
            typer.secho(f"{artifact}: {len(problems)} problem(s): copy the directory again or re-run the compress "
                        "stage that wrote it", fg="red", err=True)
            raise typer.Exit(1)
        if kind == "cut":
            detail = f"{m['kind']} model cut for {m['world_size']} ranks"
        else:
            detail = f"float units {m.get('fallback', {}).get('float_units')}"
        typer.echo(f"{artifact}: OK ({kind}, {m['format']['name']} {m['format']['version']}, {len(m['files'])} files, "
                   f"{detail})")
