"""MMLU in its original layout: `dev/`, `val/`, `test/` CSVs with no header, plus `mapping.json`.

Rows are `question, A, B, C, D, answer`. Fields are CSV-quoted, some span lines, and files mix CRLF and
LF endings as upstream does, so they go through the csv module (newline='') and never through split().
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

LETTERS = ("A", "B", "C", "D")
CATEGORIES = ("STEM", "Humanities", "Social Sciences", "Other")


@dataclass(frozen=True)
class Question:
    subject: str
    index: int  # row number in the subject's CSV, from 0
    question: str
    choices: tuple[str, str, str, str]
    answer: str  # one of LETTERS


def default_data_dir() -> Path:
    from ..presets import shared_dir

    return shared_dir() / "data" / "mmlu"


def read_csv(path: Path, subject: str) -> list[Question]:
    """Every row of one MMLU CSV, checked: six fields and an answer in A-D."""
    out: list[Question] = []
    with open(path, newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.reader(f)):
            if len(row) != 6:
                raise UserError(f"{path}: row {i + 1} has {len(row)} fields, expected 6 "
                                "(question, A, B, C, D, answer, no header): is this an MMLU CSV?")
            ans = row[5].strip()
            if ans not in LETTERS:
                raise UserError(f"{path}: row {i + 1} has answer {row[5]!r}, expected one of A, B, C, D")
            out.append(Question(subject, i, row[0], (row[1], row[2], row[3], row[4]), ans))
    if not out:
        raise UserError(f"{path} holds no questions: check the MMLU data directory")
    return out


def split_path(data_dir: Path, split: str, subject: str) -> Path:
    return Path(data_dir) / split / f"{subject}_{split}.csv"


def list_subjects(data_dir: Path) -> list[str]:
    """Subjects with a test CSV, sorted as hendrycks/test sorts them."""
    d = Path(data_dir)
    if not (d / "test").is_dir() or not (d / "dev").is_dir():
        raise UserError(f"{d} is not an MMLU data directory (expected dev/ and test/ folders of CSVs): "
                        "pass the folder of the original data.tar layout with --data")
    subs = sorted(p.name[: -len("_test.csv")] for p in (d / "test").glob("*_test.csv"))
    if not subs:
        raise UserError(f"{d / 'test'} holds no *_test.csv files: pass the MMLU data folder with --data")
    return subs


def load_mapping(data_dir: Path) -> dict[str, str]:
    """subject -> category (STEM / Humanities / Social Sciences / Other) from mapping.json."""
    p = Path(data_dir) / "mapping.json"
    if not p.exists():
        raise UserError(f"{p} is missing: the category summary needs the subject->category mapping.json "
                        "that ships beside the MMLU CSVs")
    raw = json.loads(p.read_text(encoding="utf-8"))
    return {s: v["category"] for s, v in raw.items()}


def select_subjects(data_dir: Path, subjects: list[str] | None) -> list[str]:
    """The requested subjects (all when None), in the canonical order; unknown names are an error."""
    allsubs = list_subjects(data_dir)
    if not subjects:
        return allsubs
    unknown = [s for s in subjects if s not in allsubs]
    if unknown:
        raise UserError(f"unknown MMLU subject(s) {', '.join(unknown)}: choose from {', '.join(allsubs)}")
    want = set(subjects)
    return [s for s in allsubs if s in want]
