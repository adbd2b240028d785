"""The engine: batching with left padding, the KV cache, prefill and decode steps, and timing.

`run`, the performance matrix and the MMLU mode are all thin clients of Engine.

A model with a fixed KV prefix (runtime/kv_prefix.py, artifact format 1.3) has its keys/values at cache
positions 0..P-1 of every row: every entry point here fills them first and runs the caller's tokens at
positions P.., with every mask extended by P always-visible columns. `max_seq_len` counts the P positions.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch

from .errors import UserError
from .kv_prefix import prefix_length
from .model import KVCache, Llama
from .rope import rope_tables
from .sampling import SamplingParams, next_tokens


@dataclass
class Generation:
    output_ids: torch.Tensor  # [B, OUT] int64: generated ids only, pad_id after a row's EOS
    lengths: list[int]  # generated tokens per row, its EOS included
    first_token_ms: float
    next_token_ms: float  # mean over decode steps (nan when only one token was made)
    step_ms: list[float] = field(default_factory=list)


@dataclass
class Batch:
    """Prompts left-aligned to the right edge: pad on the left, real tokens end together."""

    ids: torch.Tensor  # [B, S]
    valid: torch.Tensor  # [B, S] bool
    positions: torch.Tensor  # [B, S] int64
    padded: bool


@dataclass
class PrefixCache:
    """Keys/values of a shared prompt prefix, replicated for `batch` rows (Engine.prefill_prefix)."""

    cache: KVCache
    length: int
    batch: int

    def rows(self, n: int) -> KVCache:
        """A view of the first n rows (a last, smaller batch) that writes into the same storage."""
        if n == self.batch:
            return self.cache
        view = copy.copy(self.cache)
        view.k = [t[:n] for t in self.cache.k]
        view.v = [t[:n] for t in self.cache.v]
        return view


def check_generate_args(max_new_tokens, sampling: SamplingParams) -> None:
    """Arguments a caller of the Python API can get wrong; each gets its own message, not a traceback."""
    import math
    import numbers

    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral):
        raise UserError(f"max_new_tokens must be a whole number of tokens, got {max_new_tokens!r}")
    if max_new_tokens < 1:
        raise UserError("max_new_tokens must be at least 1")
    if not isinstance(sampling, SamplingParams):
        raise UserError(f"sampling must be a SamplingParams, got {type(sampling).__name__}")
    t, k, p = sampling.temperature, sampling.top_k, sampling.top_p
    if not isinstance(t, numbers.Real) or not math.isfinite(t) or t < 0:
        raise UserError(f"temperature {t!r}: give a finite number >= 0 (0 = greedy)")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 0:
        raise UserError(f"top_k {k!r}: give a whole number >= 0 (0 = off)")
    if not isinstance(p, numbers.Real) or not 0 < p <= 1:  # NaN fails this too
        raise UserError(f"top_p {p!r}: give a number in (0, 1] (1 = off)")
    if isinstance(sampling.seed, bool) or not isinstance(sampling.seed, numbers.Integral):
        raise UserError(f"seed {sampling.seed!r}: give a whole number")


class Engine:
    def __init__(self, model: Llama, max_seq_len: int = 2048, pad_id: int | None = None,
                 eos_ids: list[int] | None = None):
        self.model = model
        self.cfg = model.config
        self.max_seq_len = max_seq_len
        self.eos_ids = list(self.cfg.eos_ids if eos_ids is None else eos_ids)
        self.pad_id = pad_id if pad_id is not None else (self.cfg.pad_token_id if self.cfg.pad_token_id is not None
                                                         else (self.eos_ids[0] if self.eos_ids else 0))
        self.device = model.device
        self.cos, self.sin = rope_tables(self.cfg, max_seq_len, model.dtype, model.device)
        self.prefix = getattr(model, "kv_prefix", None)  # fixed keys/values every sequence starts with
        self.P = prefix_length(model)
        if self.P >= max_seq_len:
            raise UserError(f"max_seq_len {max_seq_len} leaves no room after the artifact's {self.P}-token KV "
                            "prefix: raise --max-seq-len")
        self._cache: KVCache | None = None
        self._cache_shape: tuple[int, int] | None = None

    # ---- input handling -------------------------------------------------------------------------
    def _check_ids(self, input_ids: torch.Tensor) -> None:
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise UserError("input_ids must be an INT64 tensor of shape [BATCH, SEQ_LEN]")
        if input_ids.dtype != torch.int64:
            raise UserError(f"input_ids must be INT64, got {input_ids.dtype}")
        if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
            raise UserError(f"input_ids has shape {tuple(input_ids.shape)}: give at least one row of at least "
                            "one token ([BATCH >= 1, SEQ_LEN >= 1])")
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= self.cfg.vocab_size):
            bad = int(input_ids.max()) if int(input_ids.max()) >= self.cfg.vocab_size else int(input_ids.min())
            raise UserError(f"token id {bad} is out of range: the model's vocabulary has {self.cfg.vocab_size} "
                            f"ids (0..{self.cfg.vocab_size - 1}); was the prompt tokenized for another model?")

    def prepare(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Batch:
        """Normalize a batch: accepts a [B,S] 0/1 mask (any padding side) or the guide's [B,1,S,S] float mask."""
        self._check_ids(input_ids)
        B, S = input_ids.shape
        if attention_mask is None:
            valid = torch.ones(B, S, dtype=torch.bool)
        elif attention_mask.dim() == 2:
            if tuple(attention_mask.shape) != (B, S):
                raise UserError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(B, S)}")
            valid = attention_mask.bool().cpu()
        elif attention_mask.dim() == 4:
            if tuple(attention_mask.shape) != (B, 1, S, S):
                raise UserError(f"a 4-D attention_mask must be [B,1,S,S] = {(B, 1, S, S)}, got {tuple(attention_mask.shape)}")
            # additive mask: the last query row sees exactly the real tokens
            valid = (attention_mask[:, 0, -1, :] > -1e4).cpu()
        else:
            raise UserError("attention_mask must be [BATCH, SEQ_LEN] of 0/1 or [BATCH, 1, SEQ_LEN, SEQ_LEN] additive")
        lens = valid.sum(1)
        if int(lens.min()) == 0:
            raise UserError("a row of the batch has no tokens (its attention_mask is all zeros)")
        ids = input_ids.cpu()
        if not bool(valid.all()):
            S2 = int(lens.max())
            packed = torch.full((B, S2), self.pad_id, dtype=torch.int64)
            v2 = torch.zeros(B, S2, dtype=torch.bool)
            for b in range(B):
                row = ids[b][valid[b]]
                packed[b, S2 - len(row):] = row
                v2[b, S2 - len(row):] = True
            ids, valid = packed, v2
        pos = (valid.long().cumsum(1) - 1).clamp(min=0) + self.P  # after the fixed prefix, if any
        return Batch(ids.to(self.device), valid.to(self.device), pos.to(self.device), not bool(valid.all()))

    def _rope(self, positions: torch.Tensor):
        return self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)

    def _get_cache(self, batch: int, length: int) -> KVCache:
        if self._cache is None or self._cache_shape[0] != batch or self._cache_shape[1] < length:
            self._cache = None  # free the old one before allocating
            self._cache = self.model.new_cache(batch, length)
            self._cache_shape = (batch, length)
            if self.prefix is not None:  # positions 0..P-1; the caller's tokens never overwrite them
                self.prefix.fill(self._cache)
        return self._cache

    def _with_prefix(self, valid: torch.Tensor) -> torch.Tensor:
        """[B, S] validity of the caller's tokens -> [B, P + S]: the prefix columns are always visible."""
        if not self.P:
            return valid
        return torch.cat([torch.ones(valid.shape[0], self.P, dtype=torch.bool, device=valid.device), valid], 1)

    def _prefix_mask(self, valid: torch.Tensor) -> torch.Tensor:
        """The prefill mask [B, 1, S, P + S] of padded rows after the prefix."""
        return self._with_prefix_rows(self._prefill_mask(valid)).unsqueeze(1)

    def _with_prefix_rows(self, m: torch.Tensor) -> torch.Tensor:
        if not self.P:
            return m
        B, S, _ = m.shape
        return torch.cat([torch.ones(B, S, self.P, dtype=torch.bool, device=m.device), m], -1)

    def _budget(self) -> str:
        return f" ({self.P} of them taken by the artifact's KV prefix)" if self.P else ""

    def release_cache(self) -> None:
        self._cache, self._cache_shape = None, None

    @staticmethod
    def _prefill_mask(valid: torch.Tensor) -> torch.Tensor:
        B, S = valid.shape
        causal = torch.ones(S, S, dtype=torch.bool, device=valid.device).tril()
        eye = torch.eye(S, dtype=torch.bool, device=valid.device)  # pad rows see themselves: no NaN rows
        return (causal & valid[:, None, :]) | eye

    # ---- scoring --------------------------------------------------------------------------------
    @torch.inference_mode()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               last_only: bool = False) -> torch.Tensor:
        """Float32 logits for every position (or the last) of a batch, no cache; rows are returned
        in the caller's padding layout only when no padding was given (else right-aligned)."""
        b = self.prepare(input_ids, attention_mask)
        if b.ids.shape[1] + self.P > self.max_seq_len:
            raise UserError(f"sequence of {b.ids.shape[1]} tokens exceeds max_seq_len {self.max_seq_len}"
                            f"{self._budget()}")
        cos, sin = self._rope(b.positions)
        if not self.P:
            mask = self._prefill_mask(b.valid).unsqueeze(1) if b.padded else None
            return self.model(b.ids, cos, sin, None, 0, mask, last_only=last_only)
        # the prefix lives in a cache: the tokens run as a chunk after it (causal among themselves)
        cache = self._get_cache(b.ids.shape[0], self.P + b.ids.shape[1])
        mask = self._prefix_mask(b.valid) if b.padded else None
        return self.model(b.ids, cos, sin, cache, self.P, mask, last_only=last_only)

    # ---- scoring after a shared prefix (MMLU's few-shot header is common to a subject's questions) --
    @torch.inference_mode()
    def prefill_prefix(self, prefix_ids: list[int], batch: int, room: int) -> "PrefixCache":
        """Run a prefix shared by many prompts once; keep its keys/values for `batch` rows with `room`
        free positions after it for each row's own tokens (see `logits_after_prefix`)."""
        L, P = len(prefix_ids), self.P
        if L < 1 or batch < 1 or room < 1:
            raise UserError("prefill_prefix needs a non-empty prefix, batch >= 1 and room >= 1")
        if P + L + room > self.max_seq_len:
            raise UserError(f"prefix of {L} tokens + {room} more exceeds max_seq_len {self.max_seq_len}"
                            f"{self._budget()}: raise --max-seq-len")
        ids = torch.tensor([prefix_ids], dtype=torch.int64)
        self._check_ids(ids)
        one = self.model.new_cache(1, P + L)
        if self.prefix is not None:
            self.prefix.fill(one)
        cos, sin = self._rope(torch.arange(P, P + L, device=self.device)[None])
        self.model(ids.to(self.device), cos, sin, one, P, None, last_only=True)
        cache = self.model.new_cache(batch, P + L + room)
        for dst, src in zip(cache.k + cache.v, one.k + one.v):
            dst[:, :, :P + L] = src  # the same (fixed prefix +) shared prefix for every row
        return PrefixCache(cache, P + L, batch)

    @torch.inference_mode()
    def logits_after_prefix(self, prefix: "PrefixCache", suffixes: list[list[int]]) -> torch.Tensor:
        """Float32 logits [n, V] of the last token of prefix + suffixes[i], computing only the suffixes.

        Rows are left-padded among themselves: the pads sit between the prefix and a row's tokens, are
        masked out and skipped by the positions, so every row sees exactly the prefix and its own tokens.
        The prefix's keys/values are never overwritten, so one PrefixCache serves any number of calls.
        """
        n, L = len(suffixes), prefix.length
        if not 1 <= n <= prefix.batch:
            raise UserError(f"{n} suffixes for a prefix cache of {prefix.batch} rows")
        if min(len(s) for s in suffixes) == 0:
            raise UserError("every suffix needs at least one token (the one whose logits are returned)")
        T = max(len(s) for s in suffixes)
        if L + T > prefix.cache.max_len:
            raise UserError(f"prefix {L} + suffix {T} tokens exceed the {prefix.cache.max_len} positions "
                            "the prefix cache was made with (its `room`)")
        ids = torch.full((n, T), self.pad_id, dtype=torch.int64)
        valid = torch.zeros(n, T, dtype=torch.bool)
        for i, s in enumerate(suffixes):
            ids[i, T - len(s):] = torch.tensor(s, dtype=torch.int64)
            valid[i, T - len(s):] = True
        self._check_ids(ids)
        pos = L + (valid.long().cumsum(1) - 1).clamp(min=0)
        mask = None  # equal lengths: the model's own causal mask over the cached prefix is right
        if not bool(valid.all()):
            own = self._prefill_mask(valid)  # [n, T, T]
            mask = torch.cat([torch.ones(n, T, L, dtype=torch.bool), own], -1).unsqueeze(1).to(self.device)
        cos, sin = self._rope(pos.to(self.device))
        return self.model(ids.to(self.device), cos, sin, prefix.rows(n), L, mask, last_only=True)[:, -1]

    # ---- generation -----------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 max_new_tokens: int = 32, sampling: SamplingParams | None = None,
                 ignore_eos: bool = False) -> Generation:
        sampling = sampling or SamplingParams()
        check_generate_args(max_new_tokens, sampling)
        b = self.prepare(input_ids, attention_mask)
        B, S = b.ids.shape
        total = S + max_new_tokens
        if self.P + total > self.max_seq_len:
            raise UserError(f"prompt of {S} tokens + {max_new_tokens} new tokens = {total} exceeds max_seq_len "
                            f"{self.max_seq_len}{self._budget()}: shorten the prompt, lower --max-new-tokens or "
                            "raise --max-seq-len")
        P = self.P
        gen = torch.Generator(device="cpu").manual_seed(sampling.seed) if sampling.temperature > 0 else None
        cache = self._get_cache(B, P + total)
        eos = torch.tensor(self.eos_ids or [-1], device=self.device)
        out = torch.full((B, max_new_tokens), self.pad_id, dtype=torch.int64, device=self.device)
        done = torch.zeros(B, dtype=torch.bool, device=self.device)
        lengths = [max_new_tokens] * B
        valid = self._with_prefix(b.valid)  # [B, P + S]: the cache columns a decode step may see
        step_ms: list[float] = []

        t0 = time.perf_counter()
        cos, sin = self._rope(b.positions)
        mask = self._prefix_mask(b.valid) if b.padded else None
        logits = self.model(b.ids, cos, sin, cache, P, mask, last_only=True)[:, -1]
        pos = b.positions[:, -1]
        tok = next_tokens(logits, sampling, gen).to(self.device)
        first_ms = (time.perf_counter() - t0) * 1e3
        for t in range(max_new_tokens):
            if t > 0:
                t1 = time.perf_counter()
                pos = pos + 1
                cos, sin = self._rope(pos[:, None])
                if b.padded:  # only padded batches need a mask; unpadded ones skip building it per step
                    valid = torch.cat([valid, torch.ones(B, 1, dtype=torch.bool, device=self.device)], 1)
                    mask = valid[:, None, None, :]
                logits = self.model(tok[:, None], cos, sin, cache, P + S + t - 1, mask)[:, -1]
                tok = next_tokens(logits, sampling, gen).to(self.device)
                step_ms.append((time.perf_counter() - t1) * 1e3)
            if not ignore_eos:  # with EOS ignored no row is ever done
                tok = torch.where(done, torch.full_like(tok, self.pad_id), tok)
            out[:, t] = tok
            if not ignore_eos:
                hit = torch.isin(tok, eos) & ~done
                for r in hit.nonzero().flatten().tolist():
                    lengths[r] = t + 1
                done |= hit
                if bool(done.all()):
                    out = out[:, : t + 1]
                    break
        nxt = sum(step_ms) / len(step_ms) if step_ms else float("nan")
        return Generation(out.cpu(), lengths, first_ms, nxt, step_ms)
