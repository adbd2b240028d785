"""Residual-stream rotation (QuaRot-style), folded offline into the weights: exact in float.

With Q orthogonal, a model whose residual stream carries x Q instead of x computes the same logits if
  - every RMSNorm's weight g is folded into the linears that read it (W -> W diag(g), g -> 1): RMSNorm
    without a weight commutes with Q (it only divides by the RMS, which Q preserves);
  - every linear reading the residual (q/k/v, gate/up, lm_head) becomes W Q, the embedding rows e Q;
  - every linear writing it (o_proj, down_proj) becomes Q^T W.
Why: the residual stream of LLaMA-family models has a few outlier channels (and massive-activation
tokens); after the rotation every channel of a normalized token carries a similar share of its energy,
so one static per-tensor int8 range fits the q/k/v and gate/up inputs of all tokens.

Q = diag(signs) blockdiag(H_b, ...) with H_b the normalized Hadamard matrix of the largest power-of-two
block dividing the hidden size and seeded random signs. Tied embeddings are untied (lm_head becomes
E diag(g_final) Q while the embedding is E Q).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from runtime.quant import qmath
from runtime.topology import GROUPS


@dataclasses.dataclass(frozen=True)
class ResidualRotation:
    signs: torch.Tensor  # [hidden] of +-1
    block: int

    def right(self, w: torch.Tensor) -> torch.Tensor:
        """w Q for rows of w living in the residual space (float32)."""
        return qmath.hadamard_offline(w.float() * self.signs, self.block)

    def left_t(self, w: torch.Tensor) -> torch.Tensor:
        """Q^T w for a weight [hidden, in] whose OUTPUT is the residual."""
        return self.right(w.float().t()).t().contiguous()

    def describe(self, seed: int) -> dict:
        return {"kind": "random-sign block Hadamard, folded into the weights", "block": self.block, "seed": seed}


def make_rotation(hidden: int, seed: int = 0) -> ResidualRotation:
    g = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (hidden,), generator=g).float() * 2 - 1
    return ResidualRotation(signs, qmath.hadamard_block(hidden, cap=hidden))


def rotate_residual(tensors: dict[str, torch.Tensor], cfg, seed: int = 0,
                    store: Callable[[str, torch.Tensor], None] | None = None):
    """Rotate the weights in `tensors` (every weight of `cfg`, weight_names) IN PLACE, one tensor at a
    time, so memory grows by one tensor, not by a model (LLaMA-2-7B must fit in 24 GiB). `store(name, t)`
    receives each result (default: tensors[name] = t). Returns (tensors, the config with untied
    embeddings, the rotation). Results keep their source dtype (computed in float32): exact for float32
    checkpoints, a rounding far below int8's for 16-bit ones."""
    if store is None:
        store = tensors.__setitem__
    rot = make_rotation(cfg.hidden_size, seed)
    rotate_ends(tensors, rot, store)
    for i in range(cfg.num_hidden_layers):
        rotate_layer(tensors, i, rot, store)
    return tensors, dataclasses.replace(cfg, tie_word_embeddings=False), rot


def rotate_ends(tensors: dict[str, torch.Tensor], rot: ResidualRotation,
                store: Callable[[str, torch.Tensor], None]) -> None:
    """The embedding (E Q), the final norm folded into lm_head (W diag(g) Q, untied) and set to 1."""
    emb = tensors["model.embed_tokens.weight"]
    g_final = tensors["model.norm.weight"]
    head = tensors.get("lm_head.weight", emb)
    store("lm_head.weight", rot.right(head.float() * g_final.float()).to(head.dtype))
    store("model.embed_tokens.weight", rot.right(emb.float()).to(emb.dtype))
    store("model.norm.weight", torch.ones_like(g_final))


def rotate_layer(tensors: dict[str, torch.Tensor], i: int, rot: ResidualRotation,
                 store: Callable[[str, torch.Tensor], None]) -> None:
    """Decoder layer i: norms folded into the residual readers (W diag(g) Q), the writers become Q^T W.
    Only layer i's tensors are read, so the streamed pipeline rotates one layer at a time."""
    p = f"model.layers.{i}"
    for norm, readers in ((g.input_norm, g.part_paths()) for g in GROUPS if g.input_norm):
        g = tensors[f"{p}.{norm}.weight"]
        for r in readers:
            w = tensors[f"{p}.{r}.weight"]
            store(f"{p}.{r}.weight", rot.right(w.float() * g.float()).to(w.dtype))
        store(f"{p}.{norm}.weight", torch.ones_like(g))
    for w in (pp for g in GROUPS if g.parallel == "row" for pp in g.part_paths()):  # the residual writers
        t = tensors[f"{p}.{w}.weight"]
        store(f"{p}.{w}.weight", rot.left_t(t).to(t.dtype))


def rotate_hf_in_place(hf_model, cfg, seed: int = 0) -> None:
    """The same rotation applied to a transformers LlamaForCausalLM's own parameters (lm_head untied),
    parameter by parameter: statistics are then collected on the rotated model without a second copy."""
    hf_model.config.tie_word_embeddings = False
    params = {n: p.data for n, p in hf_model.named_parameters()}

    def store(name: str, t: torch.Tensor) -> None:
        if name == "lm_head.weight":  # a new parameter: unties it from the embedding
            hf_model.lm_head.weight = torch.nn.Parameter(t, requires_grad=False)
        else:
            hf_model.get_parameter(name).data = t
        params[name] = t

    rotate_residual(params, cfg, seed, store)
