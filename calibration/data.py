"""Calibration samples: C-Eval prompts (question + choices, the original guide's set), MMLU prompts, plain
text, or a mix of several such sources.

A C-Eval directory has the layout of ../shared/data/ceval: <split>/<subject>_<split>.csv with a header
`id,question,A,B,C,D[,answer[,explanation]]`. An MMLU directory (../shared/data/mmlu, the original
release) has the same layout without a header: `question,A,B,C,D,answer`; its val and dev splits are read
(never test, MMLU's evaluation split). Any other directory (or file) is read as plain text (*.txt, *.raw).
Samples are made by a seeded shuffle of the prompts, packed back to back into sequences of exactly
`seq_len` tokens, so every sample carries the same number of tokens. Several sources share the samples
equally (the first ones take the remainder), interleaved source by source.
"""
from __future__ import annotations

import csv
import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from runtime.errors import UserError


@dataclass
class CalibrationSet:
    samples: list[torch.Tensor]  # each [1, seq_len] int64
    source: str  # "ceval", "mmlu" or "text"; a mix: the kinds joined by "+", e.g. "ceval+mmlu"
    path: str
    sha256: str  # of the files read (sorted by name), so a changed set is noticed
    tokens_sha256: str  # of the chosen token ids: identical samples <=> identical hash

    @property
    def n_tokens(self) -> int:
        return sum(s.numel() for s in self.samples)


def _split_csvs(p: Path) -> list[Path]:
    return sorted(p.glob("*/*_val.csv")) + sorted(p.glob("*/*_dev.csv")) if p.is_dir() else []


def is_mmlu_dir(p: Path) -> bool:
    """The MMLU layout: split CSVs whose first line is a question, not C-Eval's `id,question,...` header."""
    files = _split_csvs(p)
    if not files:
        return False
    with open(files[0], encoding="utf-8", newline="") as f:
        first = next(csv.reader(f), [])
    return len(first) == 6 and first[:2] != ["id", "question"]


def is_ceval_dir(p: Path) -> bool:
    return bool(_split_csvs(p)) and not is_mmlu_dir(p)


def ceval_prompts(root: Path, splits: tuple[str, ...] = ("val", "dev")) -> tuple[list[str], list[Path]]:
    """One prompt per question: the question, its four choices and (when known) the answer."""
    from datasets import load_dataset
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    files = sorted(f for s in splits for f in (root / s).glob(f"*_{s}.csv"))
    if not files:
        raise UserError(f"{root} holds no C-Eval CSVs (<split>/<subject>_val.csv): pass a C-Eval directory "
                        "or a directory of .txt files with --calib-data")
    # datasets labels its copy of local files "Downloading data": a user behind a firewall reads that as
    # going online. Nothing is fetched (local paths only); its bars are silenced for this read.
    was_off = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        ds = load_dataset("csv", data_files=[str(f) for f in files], split="train",
                          keep_in_memory=True, cache_dir=None)
    finally:
        if not was_off:
            enable_progress_bars()
    prompts = []
    for r in ds:
        p = f"{r['question']}\nA. {r['A']}\nB. {r['B']}\nC. {r['C']}\nD. {r['D']}\n答案："
        if r.get("answer"):
            p += f"{r['answer']}\n\n"
        prompts.append(p)
    return prompts, files


def mmlu_prompts(root: Path, splits: tuple[str, ...] = ("val", "dev")) -> tuple[list[str], list[Path]]:
    """One prompt per MMLU question (val and dev splits: the test split is MMLU's evaluation), written as
    C-Eval's are: the question, its four choices and the answer."""
    files = sorted(f for s in splits for f in (root / s).glob(f"*_{s}.csv"))
    prompts = []
    for f in files:
        with open(f, encoding="utf-8", newline="") as fh:
            for row in csv.reader(fh):
                if len(row) != 6:
                    raise UserError(f"{f}: a row with {len(row)} fields, MMLU rows have 6 (question, A, B, C, D, "
                                    "answer): pass the original MMLU CSVs")
                q, a, b, c, d, ans = row
                prompts.append(f"{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer: {ans}\n\n")
    return prompts, files


def text_prompts(root: Path) -> tuple[list[str], list[Path]]:
    """Paragraphs (blank-line separated) of every .txt/.raw file under root, or of the file itself."""
    files = [root] if root.is_file() else sorted(f for ext in ("*.txt", "*.raw") for f in root.rglob(ext))
    if not files:
        raise UserError(f"{root}: no .txt or .raw files to calibrate on; pass a C-Eval directory or text files")
    prompts = []
    for f in files:
        paras = re.split(r"\n\s*\n", f.read_text(encoding="utf-8"))
        prompts += [p.strip() + "\n\n" for p in paras if p.strip()]
    return prompts, files


def files_sha256(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def _source_samples(path: Path, tokenizer, n_samples: int, seq_len: int,
                    seed: int) -> tuple[list[torch.Tensor], str, list[Path]]:
    """(samples, kind, files read) of one source."""
    if not path.exists():
        raise UserError(f"calibration data {path} not found: pass --calib-data DIR (C-Eval or MMLU layout, or "
                        "text files)")
    kind = "mmlu" if is_mmlu_dir(path) else "ceval" if is_ceval_dir(path) else "text"
    prompts, files = {"mmlu": mmlu_prompts, "ceval": ceval_prompts, "text": text_prompts}[kind](path)
    order = list(range(len(prompts)))
    random.Random(seed).shuffle(order)
    samples: list[torch.Tensor] = []
    buf: list[int] = []
    for i in order:
        buf += tokenizer.encode(prompts[i], add_special=not buf)
        while len(buf) >= seq_len and len(samples) < n_samples:
            samples.append(torch.tensor([buf[:seq_len]], dtype=torch.int64))
            buf = buf[seq_len:]
        if len(samples) >= n_samples:
            break
    if len(samples) < n_samples:
        raise UserError(f"{path} holds only enough text for {len(samples)} samples of {seq_len} tokens: lower "
                        "--calib-samples or --calib-seq-len")
    return samples, kind, files


def describe_sources(path: Path | Sequence[Path]) -> str:
    """The calibration source(s) as a log line names them: "A" or "A + B"."""
    return str(path) if isinstance(path, (str, Path)) else " + ".join(str(p) for p in path)


def build_calibration(path: Path | Sequence[Path], tokenizer, n_samples: int, seq_len: int,
                      seed: int = 0) -> CalibrationSet:
    """`n_samples` sequences of `seq_len` tokens from a seeded shuffle of the prompts; several paths share
    them equally (the first ones take the remainder), interleaved: source 1, source 2, ..., source 1, ..."""
    paths = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
    if not paths:
        raise UserError("no calibration data given: pass --calib-data DIR")
    if n_samples < len(paths) or seq_len < 2:
        raise UserError(f"--calib-samples must be >= 1 per calibration source ({len(paths)}) and "
                        "--calib-seq-len >= 2")
    per = [n_samples // len(paths) + (j < n_samples % len(paths)) for j in range(len(paths))]
    parts = [_source_samples(p, tokenizer, n, seq_len, seed) for p, n in zip(paths, per)]
    samples = [part[0][k] for k in range(max(per)) for part in parts if k < len(part[0])]
    files = [f for part in parts for f in part[2]]
    th = hashlib.sha256(b"".join(s.numpy().tobytes() for s in samples)).hexdigest()
    return CalibrationSet(samples, "+".join(part[1] for part in parts), describe_sources(paths),
                          files_sha256(files), th)
