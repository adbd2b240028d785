"""Subcommands of `runtime`. Each module defines `register(app)`; add new ones to MODULES."""
from __future__ import annotations

import functools
import importlib
import sys

import typer

from ..errors import UserError

MODULES = ["run", "ppl", "mmlu", "perf"]


def user_errors(fn):
    """Print a UserError's message (it names the problem and the fix) without a traceback; exit 2."""

    @functools.wraps(fn)
    def wrapper(*a, **k):
        try:
            return fn(*a, **k)
        except UserError as e:
            typer.secho(f"error: {e}", fg="red", err=True)
            sys.exit(2)

    return wrapper


def register_all(app: typer.Typer) -> None:
    for m in MODULES:
        importlib.import_module(f"{__name__}.{m}").register(app)
