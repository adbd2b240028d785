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


def apply_threads(threads: int | None) -> None:
    """--threads N: a positive count (torch's own error for 0 or -3 is a bare traceback)."""
    if threads is None:
        return
    if threads < 1:
        raise UserError(f"--threads {threads}: give a positive number of CPU threads (or leave it out: all cores)")
    import torch

    torch.set_num_threads(threads)


def register_all(app: typer.Typer) -> None:
    for m in MODULES:
        importlib.import_module(f"{__name__}.{m}").register(app)
