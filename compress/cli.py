"""`compress`: the pipeline's stages. Each subcommand lives in its own module under compress/commands."""
from __future__ import annotations

import typer

from .commands import register_all

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)
register_all(app)


@app.callback()
def main() -> None:
    """Compress LLaMA-family models: import, quantize, sparse, pack, cut, verify, export."""


if __name__ == "__main__":
    app()
