"""test_result/cache.csv: one row per scored question, the journal a killed run resumes from.

Columns: A subject, B question index, C expected, D predicted, then the four letters' probabilities
(softmax over the A-D logits, as hendrycks/test reports them) and the number of shots used.
While a run goes, each batch's rows are appended in one write and fsynced; a torn last line (a kill
mid-write) is dropped on resume. When the run ends the file is rewritten whole, sorted by subject and
index, keeping every row scored in this directory (the summaries cover the run's own selection).
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import UserError
from .data import LETTERS

HEADER = ["subject", "question", "expected", "predicted", "score_A", "score_B", "score_C", "score_D", "shots"]


@dataclass(frozen=True)
class Row:
    subject: str
    index: int
    expected: str
    predicted: str
    scores: tuple[float, float, float, float]
    shots: int

    @property
    def correct(self) -> bool:
        return self.expected == self.predicted

    def cells(self) -> list[str]:
        return [self.subject, str(self.index), self.expected, self.predicted,
                *(f"{s:.6f}" for s in self.scores), str(self.shots)]


def _lines(rows: list[Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for r in rows:
        w.writerow(r.cells())
    return buf.getvalue()


def read_cache(path: Path) -> dict[tuple[str, int], Row]:
    """Rows already scored, keyed by (subject, index); a torn trailing line is ignored."""
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # the kill came mid-line: that row is redone
    rows: dict[tuple[str, int], Row] = {}
    for n, cells in enumerate(csv.reader(io.StringIO(text, newline=""))):
        if n == 0 and cells == HEADER:
            continue
        try:
            if len(cells) != len(HEADER) or cells[2] not in LETTERS or cells[3] not in LETTERS:
                raise ValueError
            r = Row(cells[0], int(cells[1]), cells[2], cells[3], tuple(float(c) for c in cells[4:8]), int(cells[8]))
        except ValueError:
            raise UserError(f"{path} line {n + 1} is not a cache row ({cells!r}): remove the file (or that line) "
                            "to recompute, or choose another --out") from None
        rows[(r.subject, r.index)] = r
    return rows


class Journal:
    """Appends batches of rows to cache.csv so that a killed run loses at most the batch in flight."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.stat().st_size == 0:
            atomic_write_text(path, ",".join(HEADER) + "\n")
        elif not path.read_bytes().endswith(b"\n"):
            # drop the torn line now, so the next append starts on a fresh line
            keep = path.read_text(encoding="utf-8")
            atomic_write_text(path, keep[: keep.rfind("\n") + 1])

    def append(self, rows: list[Row]) -> None:
        with open(self.path, "a", encoding="utf-8", newline="") as f:
            f.write(_lines(rows))
            f.flush()
            os.fsync(f.fileno())


def write_final(path: Path, rows: list[Row]) -> None:
    """The finished cache.csv, whole, in the order the rows are given."""
    atomic_write_text(path, ",".join(HEADER) + "\n" + _lines(rows))
