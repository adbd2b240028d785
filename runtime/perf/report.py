"""The matrix's outputs: the CSV the guide names, its summary line, and a PNG of the latencies."""
from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path

from ..atomic import atomic_write_bytes, atomic_write_text


@dataclass
class PerfRow:
    batch: int
    seq_in: int
    seq_out: int
    first_token_ms: float = math.nan
    next_token_ms: float = math.nan  # mean over the decode steps
    total_s: float = math.nan
    tokens_per_s: float = math.nan  # generated tokens of the whole batch per second, prefill included
    decode_tokens_per_s: float = math.nan  # batch / next_token_ms
    peak_memory_gb: float = math.nan
    weight_dtype: str = ""
    decode_bytes_gb: float = math.nan  # bytes a mean decode step must read (weights + KV cache)
    floor_ms: float = math.nan  # decode_bytes / measured bandwidth
    roofline_pct: float = math.nan  # floor_ms / next_token_ms: 100 = at the memory-bandwidth limit
    status: str = "ok"  # "ok" or "skipped: <reason>"
    decode_path: str = ""  # which kernels the decode step's linears ran (runtime/kernels/paths.py)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.batch, self.seq_in, self.seq_out)


COLUMNS = [f.name for f in fields(PerfRow)]


def file_stem(model_name: str, device: str) -> str:
    safe = lambda s: re.sub(r"[^A-Za-z0-9._-]+", "", s.replace(":", ""))  # noqa: E731  cuda:0 -> cuda0
    return f"multibatch_performance_{safe(model_name)}_{safe(device)}"


def _fmt(v) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"  # 6 significant digits: enough for any timer
    return str(v)


def write_csv(rows: list[PerfRow], path: Path) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_fmt(getattr(r, c)) for c in COLUMNS])
    atomic_write_text(path, buf.getvalue())


def read_csv(path: Path) -> list[PerfRow]:
    out = []
    with open(path, newline="") as f:
        for d in csv.DictReader(f):
            kw = {}
            for fl in fields(PerfRow):
                v = d[fl.name]
                kw[fl.name] = (int(v) if fl.type == "int" else (float(v) if v else math.nan) if fl.type == "float" else v)
            out.append(PerfRow(**kw))
    return out


@dataclass
class Summary:
    """The guide's summary: batch 1, mean over its cases."""

    batch: int
    cases: int
    first_token_ms: float
    next_token_ms: float
    roofline_pct: float

    def line(self) -> str:
        return (f"summary (batch {self.batch}, mean over {self.cases} cases): first token latency "
                f"{self.first_token_ms:.2f} ms, non-first token latency {self.next_token_ms:.2f} ms, "
                f"roofline {self.roofline_pct:.1f}%")


def summarize(rows: list[PerfRow], batch: int = 1) -> Summary | None:
    """Mean over the completed cases of `batch` (the smallest batch run when it has none)."""
    done = [r for r in rows if r.ok]
    if not done:
        return None
    if not any(r.batch == batch for r in done):
        batch = min(r.batch for r in done)
    sel = [r for r in done if r.batch == batch]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    nxt = [r.next_token_ms for r in sel if not math.isnan(r.next_token_ms)]
    roof = [r.roofline_pct for r in sel if not math.isnan(r.roofline_pct)]
    return Summary(batch, len(sel), mean([r.first_token_ms for r in sel]),
                   mean(nxt) if nxt else math.nan, mean(roof) if roof else math.nan)


def write_plot(rows: list[PerfRow], path: Path, title: str) -> bool:
    """Next-token latency vs batch (one line per length pair), first-token latency vs seq_in (one per batch)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on CI or servers
    import matplotlib.pyplot as plt

    done = [r for r in rows if r.ok]
    if not done:
        return False
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    pairs = sorted({(r.seq_in, r.seq_out) for r in done})
    for p in pairs:
        pts = sorted((r.batch, r.next_token_ms) for r in done if (r.seq_in, r.seq_out) == p)
        a1.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=f"{p[0]}:{p[1]}")
    a1.set_xlabel("batch")
    a1.set_ylabel("next-token latency (ms)")
    a1.set_xscale("log", base=2)
    a1.set_title("decode step")
    if len(pairs) <= 12:
        a1.legend(fontsize=7, title="seq_in:seq_out")
    for b in sorted({r.batch for r in done}):
        by_in: dict[int, list[float]] = {}
        for r in done:
            if r.batch == b:
                by_in.setdefault(r.seq_in, []).append(r.first_token_ms)
        xs = sorted(by_in)
        a2.plot(xs, [sum(by_in[x]) / len(by_in[x]) for x in xs], marker="o", label=f"batch {b}")
    a2.set_xlabel("seq_in (tokens)")
    a2.set_ylabel("first-token latency (ms)")
    a2.set_xscale("log", base=2)
    a2.set_title("prefill (mean over seq_out)")
    a2.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return True
