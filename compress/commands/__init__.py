"""Subcommands of `compress`. Each module defines `register(app)`; add new ones to MODULES."""
from __future__ import annotations

import importlib

import typer

MODULES = ["import_cmd", "cut", "quantize_cmd", "verify_cmd", "sparse", "pack", "export_cmd"]


def register_all(app: typer.Typer) -> None:
    for m in MODULES:
        importlib.import_module(f"{__name__}.{m}").register(app)
