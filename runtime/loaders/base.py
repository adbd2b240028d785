"""The interface every checkpoint reader implements, and the names/shapes a Llama must have."""
from __future__ import annotations

import re
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


_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.")
_TOP = ("model.embed_tokens.", "model.norm.", "lm_head.")


def unused_known(names: set[str], cfg: ModelConfig) -> list[str]:
    """Tensors of the model's own namespaces (embeddings, norm, head, decoder layers) that `cfg` does not
    read: layers past num_hidden_layers, biases, ... Ignoring them would run another model than the
    checkpoint's. A tied model's saved copy of lm_head and RoPE buffers are not weights and pass."""
    want = set(weight_names(cfg))
    out = []
    for n in names:
        if n in want or n.endswith("rotary_emb.inv_freq") or (n == "lm_head.weight" and cfg.tie_word_embeddings):
            continue
        if _LAYER_RE.match(n) or n.startswith(_TOP):
            out.append(n)
    return sorted(out, key=lambda n: (len(n), n))


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
        unused = unused_known(self._name_set(), self.config)
        if unused:
            layers = sorted({int(m.group(1)) for n in unused if (m := _LAYER_RE.match(n))})
            deeper = [i for i in layers if i >= self.config.num_hidden_layers]
            why = (f"it holds decoder layers up to {deeper[-1]} but config.json declares "
                   f"{self.config.num_hidden_layers} (num_hidden_layers); the model would run truncated"
                   if deeper else "these tensors would be silently ignored and the model would compute "
                   "something else (biases or extra weights this runtime does not implement)")
            more = f" and {len(unused) - 3} more" if len(unused) > 3 else ""
            raise UserError(f"{self.path}: checkpoint holds tensors its config does not use ({', '.join(unused[:3])}"
                            f"{more}): {why}. Check that config.json belongs to these weights")


def interleaved_to_half(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder Q/K rows from the adjacent-pair RoPE layout (llama2.c, GGUF) to HF's rotate-half layout."""
    out, inp = w.shape
    return w.reshape(n_heads, out // n_heads // 2, 2, inp).transpose(1, 2).reshape(out, inp)
