"""The interface every checkpoint reader implements, and the names/shapes a Llama must have."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import torch

from ..config import ModelConfig
from ..errors import UserError


def weight_names(cfg: ModelConfig) -> list[str]:
    """HF names of every tensor a Llama checkpoint for `cfg` holds."""
    names = ["model.embed_tokens.weight", "model.norm.weight"]
    if not cfg.tie_word_embeddings:
        names.append("lm_head.weight")
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}"
        names += [f"{p}.input_layernorm.weight", f"{p}.post_attention_layernorm.weight"]
        names += [f"{p}.self_attn.{n}.weight" for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
        names += [f"{p}.mlp.{n}.weight" for n in ("gate_proj", "up_proj", "down_proj")]
    return names


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    d, f, hd = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    q, kv = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    per = {
        "input_layernorm": (d,), "post_attention_layernorm": (d,),
        "self_attn.q_proj": (q, d), "self_attn.k_proj": (kv, d), "self_attn.v_proj": (kv, d),
        "self_attn.o_proj": (d, q), "mlp.gate_proj": (f, d), "mlp.up_proj": (f, d), "mlp.down_proj": (d, f),
    }
    out: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (cfg.vocab_size, d), "model.norm.weight": (d,),
                                       "lm_head.weight": (cfg.vocab_size, d)}
    for i in range(cfg.num_hidden_layers):
        for k, s in per.items():
            out[f"model.layers.{i}.{k}.weight"] = s
    return out


class TensorSource(ABC):
    """HF-named tensors of one model, loaded lazily so a 7B model is never held twice in RAM."""

    config: ModelConfig
    path: Path

    @abstractmethod
    def names(self) -> list[str]: ...

    @abstractmethod
    def _load(self, name: str) -> torch.Tensor: ...

    def tokenizer_path(self) -> Path | None:
        """Where this model's own tokenizer lives, if it carries one."""
        return None

    def get(self, name: str) -> torch.Tensor:
        """The tensor `name`, checked against the shape the config implies."""
        if name == "lm_head.weight" and self.config.tie_word_embeddings:
            name = "model.embed_tokens.weight"
        if name not in self._name_set():
            raise UserError(
                f"{self.path}: tensor {name!r} is missing; the checkpoint does not match its config "
                f"({self.config.num_hidden_layers} layers). Re-export the checkpoint or fix config.json"
            )
        t = self._load(name)
        want = expected_shapes(self.config).get(name)
        if want is not None and tuple(t.shape) != want:
            raise UserError(
                f"{self.path}: tensor {name!r} has shape {tuple(t.shape)} but config.json implies {want}; "
                "the checkpoint does not match its config"
            )
        return t

    def _name_set(self) -> set[str]:
        if not hasattr(self, "_names_cache"):
            self._names_cache = set(self.names())
        return self._names_cache

    def check(self) -> None:
        """Fail early, with every missing tensor named, if the checkpoint and config disagree."""
        missing = [n for n in weight_names(self.config) if n not in self._name_set()]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise UserError(
                f"{self.path}: checkpoint does not match its config: missing {', '.join(missing[:3])}{more}. "
                "Check that config.json belongs to these weights"
            )


def interleaved_to_half(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder Q/K rows from the adjacent-pair RoPE layout (llama2.c, GGUF) to HF's rotate-half layout."""
    out, inp = w.shape
    return w.reshape(n_heads, out // n_heads // 2, 2, inp).transpose(1, 2).reshape(out, inp)
