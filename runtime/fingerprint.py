"""What a resumable run (MMLU, the perf matrix) was computed on, so a resume over other inputs is refused.

A description string is not enough: two artifacts in the same directory name, or the same model in
another dtype, describe alike and score differently. The fingerprint holds checksums: an artifact's
`artifact.json` (it lists every file's sha256, and the loader has just verified them), a cut
directory's `cut.json`, or the sha256 of a float model's weight files, memoized per (path, size,
mtime) in the cache so a 7B checkpoint is hashed once, not at every resume.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

PROBE = "The following are multiple choice questions (with answers).\nAnswer: A B C D 0123 école 東京"


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def _memo_sha(path: Path) -> str:
    """sha256 of a large weight file, remembered per (path, size, mtime) under the cache directory."""
    from .atomic import atomic_write_text
    from .presets import cache_dir

    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:24]
    memo = cache_dir() / "checksums" / key
    if memo.is_file():
        v = memo.read_text().strip()
        if len(v) == 64:
            return v
    v = sha256_file(path)
    try:
        atomic_write_text(memo, v + "\n")
    except OSError:  # a read-only cache only costs the re-hash next time
        pass
    return v


def weights_sha256(root: Path) -> str:
    """One sha256 over a model's weight files (a directory's *.safetensors / *.bin, or a single file)."""
    root = Path(root)
    files = [root] if root.is_file() else sorted(
        [*root.glob("*.safetensors"), *root.glob("pytorch_model*.bin")])
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}\0{_memo_sha(f)}\n".encode())
    return h.hexdigest()


def tokenizer_sha256(tok) -> str:
    """A functional fingerprint: the ids of a fixed probe text and the vocabulary size."""
    ids = tok.encode(PROBE)
    return hashlib.sha256(json.dumps([tok.vocab_size, list(ids)]).encode()).hexdigest()


def model_fingerprint(model: str | None, weights: str | None, tokenizer: str | None, quant: Path | None,
                      dtype: str, device: str, tok=None) -> dict[str, Any]:
    """Every input that changes a score: the weights' checksum, the dtype and device, the tokenizer."""
    from .parallel.cutdir import MANIFEST as CUT_MANIFEST, is_cut_dir

    fp: dict[str, Any] = {"dtype": dtype, "device": device}
    if quant is not None:
        q = Path(quant)
        mf = q / CUT_MANIFEST if is_cut_dir(q) else q / "artifact.json"
        fp["weights"] = {"kind": "cut" if is_cut_dir(q) else "artifact", "sha256": sha256_file(mf)}
    elif model is not None and is_cut_dir(model):
        fp["weights"] = {"kind": "cut", "sha256": sha256_file(Path(model) / CUT_MANIFEST)}
    else:
        from .loading import imported_dir
        from .presets import resolve_model

        ref = resolve_model(model, weights, tokenizer)
        fp["weights"] = {"kind": "source", "sha256": weights_sha256(imported_dir(ref, progress=False))}
    if tok is not None:
        fp["tokenizer_sha256"] = tokenizer_sha256(tok)
    return fp
