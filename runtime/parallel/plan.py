"""Which slice of every tensor a tensor-parallel rank holds (Megatron-style), as pure functions.

Column-parallel (outputs split): q/k/v on head boundaries, gate/up on FFN rows, the LM head on
vocabulary rows (gathered after). Row-parallel (inputs split, all-reduced after): o_proj on the
columns of the rank's query heads, down_proj on its FFN columns.

The KV-head rule (GQA): the world size N must divide the attention heads and the FFN width. Rank r
holds query heads [r*H/N, (r+1)*H/N). When N divides the KV heads each rank holds KV/N whole KV
heads. Otherwise (N does not divide them, or N > KV heads) each rank holds a copy of every KV head
its query heads read: k_proj/v_proj rows and the KV cache are then replicated across ranks, and the
output is unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..config import ModelConfig
from ..errors import UserError
from ..quant.qmath import hadamard_block
from ..schemes import KIND_LAYOUT, Layout
from ..topology import COLUMN_PARTS, ROW_PARTS, VOCAB_PARTS



def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass(frozen=True)
class TPPlan:
    world: int
    n_heads: int
    n_kv: int
    head_dim: int
    hidden: int
    ffn: int
    vocab: int

    @classmethod
    def make(cls, cfg: ModelConfig, world: int) -> "TPPlan":
        if world < 1:
            raise UserError(f"tensor-parallel size {world} must be at least 1")
        H, F = cfg.num_attention_heads, cfg.intermediate_size
        common = [d for d in _divisors(H) if F % d == 0]
        if H % world:
            raise UserError(f"tensor-parallel size {world} does not divide the model's {H} attention heads: "
                            f"choose one of {common} (sizes that divide both the heads and the FFN width {F})")
        if F % world:
            raise UserError(f"tensor-parallel size {world} does not divide the model's FFN width "
                            f"(intermediate_size) {F}: choose one of {common}")
        return cls(world, H, cfg.num_key_value_heads, cfg.head_dim, cfg.hidden_size, F, cfg.vocab_size)

    # ---- what a rank holds ----------------------------------------------------------------------
    @property
    def heads_per_rank(self) -> int:
        return self.n_heads // self.world

    @property
    def kv_replicated(self) -> bool:
        return self.world > 1 and self.n_kv % self.world != 0

    def q_heads(self, rank: int) -> range:
        h = self.heads_per_rank
        return range(rank * h, (rank + 1) * h)

    def kv_heads(self, rank: int) -> list[int]:
        """The KV heads rank `rank` holds, in the order its query heads use them (see module doc)."""
        group = self.n_heads // self.n_kv
        needed = [h // group for h in self.q_heads(rank)]
        uniq = sorted(set(needed))
        rep = len(needed) // len(uniq)
        if len(needed) % len(uniq) == 0 and needed == [u for u in uniq for _ in range(rep)]:
            return uniq  # grouped query heads map onto these KV heads the way SDPA's enable_gqa does
        return needed  # misaligned groups: one KV copy per query head (plain MHA on this rank)

    def ffn_cols(self, rank: int) -> range:
        f = self.ffn // self.world
        return range(rank * f, (rank + 1) * f)

    @property
    def vocab_chunk(self) -> int:
        return math.ceil(self.vocab / self.world)

    def vocab_rows(self, rank: int) -> range:
        c = self.vocab_chunk
        return range(min(rank * c, self.vocab), min((rank + 1) * c, self.vocab))

    def local_out(self, part: str, rank: int) -> int:
        """Output rows of a column-parallel / vocab part on `rank`."""
        if part == "q_proj":
            return self.heads_per_rank * self.head_dim
        if part in ("k_proj", "v_proj"):
            return len(self.kv_heads(rank)) * self.head_dim
        if part in ("gate_proj", "up_proj"):
            return self.ffn // self.world
        if part == "lm_head":
            return len(self.vocab_rows(rank))
        raise ValueError(f"{part} is not column-parallel")

    def local_in(self, part: str) -> int:
        """Input columns of a row-parallel part."""
        if part == "o_proj":
            return self.heads_per_rank * self.head_dim
        if part == "down_proj":
            return self.ffn // self.world
        raise ValueError(f"{part} is not row-parallel")

    # ---- slicing --------------------------------------------------------------------------------
    def _rows(self, part: str, rank: int) -> torch.Tensor | range:
        hd = self.head_dim
        if part == "q_proj":
            return range(self.q_heads(rank).start * hd, self.q_heads(rank).stop * hd)
        if part in ("k_proj", "v_proj"):
            heads = self.kv_heads(rank)
            if heads == list(range(heads[0], heads[-1] + 1)):
                return range(heads[0] * hd, (heads[-1] + 1) * hd)
            return torch.cat([torch.arange(h * hd, (h + 1) * hd) for h in heads])
        if part in ("gate_proj", "up_proj"):
            return self.ffn_cols(rank)
        return self.vocab_rows(rank)

    def _full_out(self, part: str) -> int:
        return {"q_proj": self.n_heads * self.head_dim, "k_proj": self.n_kv * self.head_dim,
                "v_proj": self.n_kv * self.head_dim, "gate_proj": self.ffn, "up_proj": self.ffn,
                "lm_head": self.vocab}[part]

    def _cols(self, part: str, rank: int) -> range:
        if part == "o_proj":
            q = self.q_heads(rank)
            return range(q.start * self.head_dim, q.stop * self.head_dim)
        return self.ffn_cols(rank)

    def slice(self, name: str, t: torch.Tensor, rank: int) -> torch.Tensor:
        """Rank `rank`'s share of the checkpoint / artifact tensor `name` ("<module>.<kind>"), by the
        layout its kind registered (runtime/schemes Layout): the scheme, not the tensor's rank, decides."""
        if self.world == 1:
            return t
        module, _, kind = name.rpartition(".")
        part = module.rpartition(".")[2]
        if part not in COLUMN_PARTS and part not in VOCAB_PARTS and part not in ROW_PARTS:
            return t  # norms and embeddings are replicated
        layout = KIND_LAYOUT.get(kind)
        if layout is None:
            raise UserError(f"{name}: tensor kind {kind!r} has no tensor-parallel rule (no registered scheme "
                            "uses it): this runtime cannot cut it; upgrade llama-compress")
        if part in COLUMN_PARTS or part in VOCAB_PARTS:
            if layout in (Layout.PER_TENSOR, Layout.BLOCK):
                return t  # per-tensor values (input_scale, input_offset)
            if t.dim() == 0 or t.shape[0] != self._full_out(part):
                raise UserError(f"{name} has {tuple(t.shape)} rows, expected {self._full_out(part)}: "
                                "the checkpoint does not match its config")
            idx = self._rows(part, rank)
            if isinstance(idx, range):
                return t[idx.start:idx.stop].contiguous()
            return t.index_select(0, idx).contiguous()
        if layout == Layout.BLOCK:  # a block rotation stays rank-local only if blocks don't straddle ranks
            b, c = int(t.reshape(-1)[0]), self._cols(part, rank)
            if c.start % b or (c.stop - c.start) % b:
                raise UserError(f"{module} rotates its input in blocks of {b}, which do not align with this "
                                f"rank's {c.stop - c.start} input columns at TP={self.world}: re-quantize "
                                f"with --hadamard-block {hadamard_block(c.stop - c.start)}")
            return t
        if layout == Layout.WEIGHT:
            full_in = self.n_heads * self.head_dim if part == "o_proj" else self.ffn
            if t.dim() != 2 or t.shape[1] != full_in:
                raise UserError(f"{name} has shape {tuple(t.shape)}, expected {full_in} input columns: "
                                "the checkpoint does not match its config")
            c = self._cols(part, rank)
            return t[:, c.start:c.stop].contiguous()
        if layout == Layout.BIAS:
            return t if rank == 0 else torch.zeros_like(t)
        return t  # per output channel (weight_scale, deq_scale) or per tensor: whole on every rank

    def describe(self) -> dict:
        return {"world_size": self.world, "heads_per_rank": self.heads_per_rank,
                "kv_heads_per_rank": [self.kv_heads(r) for r in range(self.world)],
                "kv_replicated": self.kv_replicated, "ffn_per_rank": self.ffn // self.world,
                "vocab": "split", "vocab_rows": [[self.vocab_rows(r).start, self.vocab_rows(r).stop]
                                                 for r in range(self.world)]}
