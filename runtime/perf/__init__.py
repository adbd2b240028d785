"""Performance mode: the guide's latency matrix (`runtime perf`, `runtime run --performance`).

    from runtime.perf import run_performance, build_cases
    rows = run_performance(engine, build_cases([1, 8], [(128, 128)]), "out/", "llama2-7b-8L").rows
"""
from .cases import Case, build_cases, grid_pairs, parse_int_list, parse_pairs, parse_range
from .report import PerfRow, Summary, read_csv, summarize
from .roofline import decode_bytes, measure_read_bandwidth, weight_bytes_per_token
from .runner import PerfResult, run_case, run_performance
from .shapes import SHAPE_NAMES, random_shape_source, shape_config

__all__ = ["Case", "build_cases", "grid_pairs", "parse_int_list", "parse_pairs", "parse_range", "PerfRow", "Summary",
           "read_csv", "summarize", "decode_bytes", "measure_read_bandwidth", "weight_bytes_per_token",
           "PerfResult", "run_case", "run_performance", "SHAPE_NAMES", "random_shape_source", "shape_config"]
