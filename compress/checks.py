"""Checks of stage options against the model, made before any work (calibration can take an hour)."""
from __future__ import annotations

from runtime.errors import UserError


def check_float_units(units: list[str] | None, unit: str, cfg, option: str = "--float-layers") -> None:
    """Refuse a float unit the model does not have: it would be recorded in the manifest while every
    linear stays int8 (an artifact that says one thing and does another)."""
    if units is None:
        return
    from .quantize import module_names

    n = cfg.num_hidden_layers
    names = set(module_names(cfg))
    for u in units:
        s = str(u).strip()
        if unit == "layer":
            if not s.isdigit():
                raise UserError(f"{option} {s!r}: give decoder layer numbers 0..{n - 1}, comma-separated, e.g. 0,1")
            if int(s) >= n:
                raise UserError(f"{option} {s}: the model has {n} decoder layers (0..{n - 1}); pick layers in range")
        elif s not in names:
            raise UserError(f"{option} {s!r}: with --fallback-unit linear give module names such as "
                            f"model.layers.0.mlp.down_proj (layers 0..{n - 1})")


def check_layers(layers, cfg, option: str) -> None:
    n = cfg.num_hidden_layers
    bad = [int(i) for i in layers if not 0 <= int(i) < n]
    if bad:
        raise UserError(f"{option} {bad}: the model has {n} decoder layers (0..{n - 1}); pick layers in range")


def check_calibration(samples: int, seq_len: int, cfg) -> None:
    """Positive sizes, and sequences no longer than the model's positions (longer ones run for minutes and
    calibrate on positions the model was never trained for)."""
    if samples < 1:
        raise UserError(f"--calib-samples {samples}: give at least 1 calibration sequence (64 is usual)")
    if seq_len < 2:
        raise UserError(f"--calib-seq-len {seq_len}: give at least 2 tokens per sequence (512 is usual)")
    if seq_len > cfg.max_position_embeddings:
        raise UserError(f"--calib-seq-len {seq_len} exceeds the model's {cfg.max_position_embeddings} positions "
                        f"(max_position_embeddings): use at most {cfg.max_position_embeddings}")
