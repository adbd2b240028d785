"""KL divergence and top-1 agreement of a model against a float reference, over perplexity windows.

What llama.cpp's `llama-perplexity --kl-divergence` reports, on this project's windows (every token of a
window but the first is scored; see perplexity.py): for each scored position, the reference's next-token
distribution P and the model's Q give KL(P || Q) = sum_v P(v) (log P(v) - log Q(v)) and whether both put
their highest probability on the same token. The reference comes from a float model run in the same pass
(`LiveReference`) or from a file written by an earlier run (`CachedReference`, llama.cpp's
`--kl-divergence-base`).

Cache file: b"LCKLD\\n", an 8-byte little-endian header length, a JSON header (format version, vocab,
the windows' fingerprint, per-window scored counts), then per window: int32 top-1 ids [n], float32 NLL
of the true next token [n], float16 log-probabilities [n, vocab]. Top-1 and NLL are stored from the
float32 logits so that ppl_float and agreement are exact; float16 log-probs change a KL by ~1e-6.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UserError
from .kv_prefix import prefix_length

MAGIC = b"LCKLD\n"
CACHE_VERSION = 1
Windows = list[tuple[torch.Tensor, int]]


@dataclass
class TokenReference:
    """The reference's view of one window's scored positions."""
    logprobs: torch.Tensor  # [n, vocab] float32 log-softmax
    top1: torch.Tensor      # [n] int64
    nll: torch.Tensor       # [n] float64, of the true next token


@dataclass
class KLResult:
    ppl: float
    ppl_float: float
    kld_mean: float
    kld_median: float
    kld_p99: float
    kld_max: float
    kld_mean_stderr: float
    top1_agreement: float
    windows: int
    tokens: int

    def as_dict(self) -> dict:
        return asdict(self)


def windows_fingerprint(windows: Windows) -> str:
    """sha256 over every window's ids and first scored position: a cache serves only the windows it was made on."""
    h = hashlib.sha256()
    for ids, first in windows:
        h.update(struct.pack("<qq", first, ids.shape[1]))
        h.update(ids.to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()


def token_stats(ref: TokenReference, logits: torch.Tensor, target: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(KL(P_ref || Q) per position, same top token per position, the model's NLL per position)."""
    logq = F.log_softmax(logits.float(), dim=-1)
    logp = ref.logprobs.float()
    # xlogy-style: a reference probability of exactly 0 contributes 0, whatever log Q is
    p = logp.exp()
    kl = torch.where(p > 0, p * (logp - logq), torch.zeros_like(p)).sum(-1).double()
    same = logq.argmax(-1) == ref.top1
    nll = -logq.gather(-1, target[:, None])[:, 0].double()
    return kl.clamp_min(0.0), same, nll


def reference_of(logits: torch.Tensor, target: torch.Tensor) -> TokenReference:
    logp = F.log_softmax(logits.float(), dim=-1)
    return TokenReference(logp, logp.argmax(-1), -logp.gather(-1, target[:, None])[:, 0].double())


class LiveReference:
    """The reference computed window by window from a float model (a runtime Llama)."""

    def __init__(self, model, windows: Windows, desc: str = ""):
        from .engine import Engine

        self.engine = Engine(model, max_seq_len=max(w.shape[1] for w, _ in windows) + prefix_length(model))
        self.desc = desc

    def window(self, i: int, ids: torch.Tensor, first: int) -> TokenReference:
        logits = self.engine.logits(ids)[0, first - 1:-1]
        return reference_of(logits, ids[0, first:].to(logits.device))


class CachedReference:
    """A reference file written by `CacheWriter`; refuses one made on other windows or another vocabulary."""

    def __init__(self, path: Path, windows: Windows, vocab: int):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                if f.read(len(MAGIC)) != MAGIC:
                    raise ValueError("not a reference-logits file")
                (n,) = struct.unpack("<Q", f.read(8))
                self.header = json.loads(f.read(n))
                self.data_start = len(MAGIC) + 8 + n
        except (OSError, ValueError, struct.error) as e:
            raise UserError(f"{self.path} is not a reference-logits file written by `runtime ppl "
                            f"--kl-divergence-base` ({e}): remove it or pass another path") from None
        h = self.header
        if h.get("version") != CACHE_VERSION:
            raise UserError(f"{self.path} has cache version {h.get('version')}, this runtime reads {CACHE_VERSION}: "
                            "remove it so that it is recomputed")
        if h["vocab"] != vocab:
            raise UserError(f"{self.path} holds a {h['vocab']}-token vocabulary, the model has {vocab}: "
                            "it was made for another model; remove it or pass another --kl-divergence-base")
        if h["fingerprint"] != windows_fingerprint(windows):
            raise UserError(f"{self.path} was computed on other windows (text, --text-recipe, --window, --stride, "
                            "--windows or tokenizer differ): remove it so that it is recomputed, or pass the "
                            "options it was made with")
        self.desc = h.get("model", "")
        self.offsets, off = [], self.data_start
        for cnt in h["counts"]:
            self.offsets.append(off)
            off += cnt * (4 + 4 + 2 * vocab)
        if os.path.getsize(self.path) != off:
            raise UserError(f"{self.path} is truncated ({os.path.getsize(self.path)} bytes, expected {off}): "
                            "remove it so that it is recomputed")
        self.vocab = vocab

    def window(self, i: int, ids: torch.Tensor, first: int) -> TokenReference:
        n, V = self.header["counts"][i], self.vocab
        with open(self.path, "rb") as f:
            f.seek(self.offsets[i])
            top1 = np.fromfile(f, dtype="<i4", count=n)
            nll = np.fromfile(f, dtype="<f4", count=n)
            lp = np.fromfile(f, dtype="<f2", count=n * V).reshape(n, V)
        logp = torch.from_numpy(lp.astype(np.float32))
        # renormalise after float16 rounding, so that P sums to 1 and KL(P, P) stays 0 to rounding
        logp = torch.log_softmax(logp, dim=-1)
        return TokenReference(logp, torch.from_numpy(top1.astype(np.int64)), torch.from_numpy(nll.astype(np.float64)))


class CacheWriter:
    """Streams a reference to a temporary file beside `path`; `close()` renames it into place."""

    def __init__(self, path: Path, windows: Windows, vocab: int, desc: str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = json.dumps({"format": "llama-compress reference logits", "version": CACHE_VERSION,
                             "vocab": vocab, "model": desc, "fingerprint": windows_fingerprint(windows),
                             "counts": [int(ids.shape[1] - first) for ids, first in windows]}).encode()
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.tmp-", dir=self.path.parent)
        self.f = os.fdopen(fd, "wb")
        self.f.write(MAGIC + struct.pack("<Q", len(header)) + header)

    def add(self, ref: TokenReference) -> None:
        self.f.write(ref.top1.to(torch.int32).numpy().astype("<i4").tobytes())
        self.f.write(ref.nll.to(torch.float32).numpy().astype("<f4").tobytes())
        self.f.write(ref.logprobs.to(torch.float16).numpy().astype("<f2").tobytes())

    def close(self) -> None:
        self.f.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.f.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def summarize(kls: torch.Tensor, same: torch.Tensor, nll: torch.Tensor, nll_ref: torch.Tensor,
              windows: int) -> KLResult:
    """The figures llama.cpp prints: mean (with its standard error), median, 99th percentile and maximum KL,
    the share of positions with the same top token, and both perplexities."""
    n = kls.numel()
    k = kls.numpy()
    stderr = float(k.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return KLResult(ppl=math.exp(float(nll.mean())), ppl_float=math.exp(float(nll_ref.mean())),
                    kld_mean=float(k.mean()), kld_median=float(np.percentile(k, 50)),
                    kld_p99=float(np.percentile(k, 99)), kld_max=float(k.max()), kld_mean_stderr=stderr,
                    top1_agreement=float(same.double().mean()), windows=windows, tokens=n)


@dataclass
class TokenArrays:
    """Per scored position, in window order: KL, same top token, the model's and the reference's NLL."""
    kl: torch.Tensor
    same: torch.Tensor
    nll: torch.Tensor
    nll_ref: torch.Tensor
    counts: list[int]  # scored positions per window

    def summary(self, first_windows: int | None = None) -> KLResult:
        """The figures over all windows, or over the first `first_windows` of them."""
        w = len(self.counts) if first_windows is None else min(first_windows, len(self.counts))
        n = sum(self.counts[:w])
        return summarize(self.kl[:n], self.same[:n], self.nll[:n], self.nll_ref[:n], w)


@torch.inference_mode()
def kl_token_arrays(model, reference, windows: Windows, writer: CacheWriter | None = None,
                    progress: bool = False, desc: str = "kl-divergence") -> TokenArrays:
    """One pass over `windows`: the model's logits against the reference's at every scored position."""
    from tqdm import tqdm

    from .engine import Engine

    if not windows:
        raise UserError("no perplexity windows: the text is shorter than two tokens")
    engine = Engine(model, max_seq_len=max(w.shape[1] for w, _ in windows) + prefix_length(model))
    kls, sames, nlls, nll_refs = [], [], [], []
    try:
        for i, (ids, first) in enumerate(tqdm(windows, desc=desc, disable=not progress, unit="win")):
            ref = reference.window(i, ids, first)
            if writer is not None:
                writer.add(ref)
            logits = engine.logits(ids)[0, first - 1:-1]
            target = ids[0, first:].to(logits.device)
            kl, same, nll = token_stats(ref, logits, target)
            kls.append(kl.cpu())
            sames.append(same.cpu())
            nlls.append(nll.cpu())
            nll_refs.append(ref.nll.cpu())
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close()
    return TokenArrays(torch.cat(kls), torch.cat(sames), torch.cat(nlls), torch.cat(nll_refs),
                       [int(k.numel()) for k in kls])


def kl_perplexity(model, reference, windows: Windows, writer: CacheWriter | None = None,
                  progress: bool = False, desc: str = "kl-divergence") -> KLResult:
    """`kl_token_arrays` summarised over all windows."""
    return kl_token_arrays(model, reference, windows, writer, progress, desc).summary()


@torch.inference_mode()
def write_reference(model, windows: Windows, path: Path, desc: str = "", progress: bool = False) -> float:
    """Save a float model's reference for later `--kl-divergence` runs; returns its perplexity."""
    from tqdm import tqdm

    live = LiveReference(model, windows, desc)
    writer = CacheWriter(path, windows, model.config.vocab_size, desc)
    nll, n = 0.0, 0
    try:
        for i, (ids, first) in enumerate(tqdm(windows, desc="reference", disable=not progress, unit="win")):
            ref = live.window(i, ids, first)
            writer.add(ref)
            nll += float(ref.nll.sum())
            n += ref.nll.numel()
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return math.exp(nll / n)
