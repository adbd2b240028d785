"""Calibration samples: C-Eval prompts (question + choices, the original guide's set) or plain text.

A C-Eval directory has the layout of ../shared/data/ceval: <split>/<subject>_<split>.csv with a header
`id,question,A,B,C,D[,answer[,explanation]]`. Any other directory (or file) is read as plain text
(*.txt, *.raw). Samples are made by a seeded shuffle of the prompts, packed back to back into
sequences of exactly `seq_len` tokens, so every sample carries the same number of tokens.
"""
from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from runtime.errors import UserError


@dataclass
class CalibrationSet:
    samples: list[torch.Tensor]  # each [1, seq_len] int64
    source: str  # "ceval" or "text"
    path: str
    sha256: str  # of the files read (sorted by name), so a changed set is noticed
    tokens_sha256: str  # of the chosen token ids: identical samples <=> identical hash

    @property
    def n_tokens(self) -> int:
        return sum(s.numel() for s in self.samples)


def is_ceval_dir(p: Path) -> bool:
    return p.is_dir() and (any(p.glob("*/*_val.csv")) or any(p.glob("*/*_dev.csv")))


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


def build_calibration(path: Path, tokenizer, n_samples: int, seq_len: int, seed: int = 0) -> CalibrationSet:
    """`n_samples` sequences of `seq_len` tokens from a seeded shuffle of the prompts."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"calibration data {path} not found: pass --calib-data DIR (C-Eval layout or text files)")
    if n_samples < 1 or seq_len < 2:
        raise UserError("--calib-samples must be >= 1 and --calib-seq-len >= 2")
    kind = "ceval" if is_ceval_dir(path) else "text"
    prompts, files = ceval_prompts(path) if kind == "ceval" else text_prompts(path)
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
    th = hashlib.sha256(b"".join(s.numpy().tobytes() for s in samples)).hexdigest()
    return CalibrationSet(samples, kind, str(path), files_sha256(files), th)
