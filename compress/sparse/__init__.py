"""Calibration-aware pruning: Wanda (|W|·‖X‖) and magnitude scores, unstructured and N:M masks, SparseGPT update.

The names below are imported on first use (PEP 562): `compress --help` reads `defaults` without paying
for torch.
"""
from importlib import import_module

_WHERE = {"check_pattern": "masks", "nm_mask": "masks", "parse_pattern": "masks", "row_mask": "masks",
          "magnitude_score": "scores", "wanda_score": "scores"}

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
