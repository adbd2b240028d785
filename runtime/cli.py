"""`runtime`: run a float model or a compressed artifact. Each subcommand lives in its own module."""
from __future__ import annotations

import typer

from .commands import register_all

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="The llama-compress runtime: generate, measure latency, evaluate accuracy.")
register_all(app)


@app.callback()
def main() -> None:
    """The llama-compress runtime: generate, measure latency, evaluate accuracy."""

if __name__ == "__main__":
    app()
