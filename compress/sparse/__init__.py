"""Calibration-aware pruning: Wanda (|W|·‖X‖) and magnitude scores, unstructured and N:M masks, SparseGPT update."""
from .masks import check_pattern, nm_mask, parse_pattern, row_mask
from .scores import magnitude_score, wanda_score

__all__ = ["check_pattern", "nm_mask", "parse_pattern", "row_mask", "magnitude_score", "wanda_score"]
