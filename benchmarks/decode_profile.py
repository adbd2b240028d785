"""Where one decode step's time goes: torch.profiler over N decode steps of a model, ops by self CPU time.

    PYTHONPATH=. python benchmarks/decode_profile.py --model smollm2-135m [--steps 32] [--threads 2]

Also prints the step time with and without the profiler (its own overhead inflates small ops), so the
table reads as shares, not as absolute costs.
"""
from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, default=25)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from runtime.engine import Engine
    from runtime.loaders import open_source
    from runtime.loading import build_model, imported_dir
    from runtime.presets import resolve_model

    model = build_model(open_source(imported_dir(resolve_model(a.model))), torch.bfloat16, "cpu")
    eng = Engine(model, max_seq_len=16 + 3 * a.steps + 8)
    ids = torch.randint(100, 1000, (1, 16))
    with torch.inference_mode():
        g = eng.generate(ids, max_new_tokens=a.steps, ignore_eos=True)
        g = eng.generate(ids, max_new_tokens=a.steps, ignore_eos=True)
        print(f"decode step, no profiler: {g.next_token_ms:.2f} ms ({1e3 / g.next_token_ms:.1f} tok/s)")
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            g = eng.generate(ids, max_new_tokens=a.steps, ignore_eos=True)
        print(f"decode step, profiled: {g.next_token_ms:.2f} ms; whole generate {time.perf_counter() - t0:.2f} s")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.rows))


if __name__ == "__main__":
    main()
