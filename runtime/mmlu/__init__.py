"""MMLU k-shot precision mode: hendrycks/test's protocol (or lm-eval's), scored through the Engine."""
from .compare import compare_runs, format_compare
from .run import run_mmlu

__all__ = ["run_mmlu", "compare_runs", "format_compare"]
