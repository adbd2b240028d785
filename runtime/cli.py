"""`runtime`: run a float model or a compressed artifact. Each subcommand lives in its own module."""
from __future__ import annotations

import sys

import typer

from .commands import register_all

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="The llama-compress runtime: generate, measure latency, evaluate accuracy.")
register_all(app)


@app.callback()
def _root() -> None:
    """The llama-compress runtime: generate, measure latency, evaluate accuracy."""

# The deployment guide's spelling: `run --performance` and `run --precision` are the perf and MMLU modes.
MODE_ALIASES = {"--performance": "perf", "--precision": "eval-mmlu"}


def main(argv: list[str] | None = None) -> None:
    """Console entry point: maps `runtime run --performance|--precision ...` onto its subcommand."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "run":
        modes = [a for a in args if a in MODE_ALIASES]
        if len(modes) > 1:
            raise SystemExit("error: choose one of --performance and --precision")
        if modes:
            args = [MODE_ALIASES[modes[0]]] + [a for a in args[1:] if a != modes[0]]
    app(args=args, prog_name="runtime")


if __name__ == "__main__":
    main()
