"""GGUF files (llama architecture), dequantized to float with the `gguf` package."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import ModelConfig
from ..errors import UserError
from .base import TensorSource, interleaved_to_half

SUPPORTED = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K")

_PER_LAYER = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
              "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
              "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
              "ffn_down": "mlp.down_proj"}


def hf_name(gguf_name: str) -> str | None:
    top = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
           "output.weight": "lm_head.weight"}
    if gguf_name in top:
        return top[gguf_name]
    parts = gguf_name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in _PER_LAYER and parts[3] == "weight":
        return f"model.layers.{parts[1]}.{_PER_LAYER[parts[2]]}.weight"
    return None


class GGUFSource(TensorSource):
    def __init__(self, path: Path):
        import gguf

        self.path = Path(path)
        size = self.path.stat().st_size
        try:
            self._r = _bounded_reader(gguf)(str(self.path))
        except _PastEnd as e:
            raise UserError(f"{self.path} is truncated: it is {size:,} bytes but its contents run to at least "
                            f"{e.need:,} bytes (an interrupted download or copy?). Fetch or copy the file "
                            "again and compare its size with the original") from None
        except Exception as e:  # the gguf package raises plain ValueErrors on corrupt files
            raise UserError(f"{self.path} is not a readable GGUF file ({e}): it is damaged or not a GGUF; "
                            "fetch or copy it again") from None
        f = self._r.fields

        def meta(key: str, default=None):
            return f[key].contents() if key in f else default

        arch = meta("general.architecture")
        if arch != "llama":
            raise UserError(f"{self.path}: GGUF architecture {arch!r} is not supported; llama-compress reads 'llama'")
        self._tensors = {}
        for t in self._r.tensors:
            n = hf_name(t.name)
            if n is None:
                continue
            if t.tensor_type.name not in SUPPORTED:
                raise UserError(f"{self.path}: tensor {t.name} has GGUF type {t.tensor_type.name}, which is not "
                                f"supported (supported: {', '.join(SUPPORTED)}); re-export the model as F16 or Q8_0")
            self._tensors[n] = t
        emb = self._tensors.get("model.embed_tokens.weight")
        if emb is None:
            raise UserError(f"{self.path}: GGUF has no token_embd.weight; is this a complete model file?")
        d = int(meta("llama.embedding_length"))
        vocab = int(meta("llama.vocab_size", int(emb.shape[-1])))
        heads = int(meta("llama.attention.head_count"))
        toks = meta("tokenizer.ggml.tokens")
        if toks is not None:
            vocab = len(toks)
        self.config = ModelConfig(
            hidden_size=d, intermediate_size=int(meta("llama.feed_forward_length")),
            num_hidden_layers=int(meta("llama.block_count")), num_attention_heads=heads,
            num_key_value_heads=int(meta("llama.attention.head_count_kv", heads)), vocab_size=vocab,
            max_position_embeddings=int(meta("llama.context_length", 2048)),
            rms_norm_eps=float(meta("llama.attention.layer_norm_rms_epsilon", 1e-5)),
            rope_theta=float(meta("llama.rope.freq_base", 10000.0)),
            tie_word_embeddings="lm_head.weight" not in self._tensors,
            bos_token_id=_opt_id(meta("tokenizer.ggml.bos_token_id")),
            eos_token_id=_opt_id(meta("tokenizer.ggml.eos_token_id")),
            pad_token_id=_opt_id(meta("tokenizer.ggml.padding_token_id")),
        )
        self.check()

    def names(self) -> list[str]:
        return list(self._tensors)

    def _load(self, name: str) -> torch.Tensor:
        from gguf.quants import dequantize

        t = self._tensors[name]
        a = dequantize(t.data, t.tensor_type)
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))  # GGUF lists dims innermost first
        w = torch.from_numpy(np.array(a, dtype=np.float32).reshape(shape))  # a writable copy
        if name.endswith("q_proj.weight"):  # llama.cpp's converter permutes Q/K rows to adjacent pairs
            w = interleaved_to_half(w, self.config.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            w = interleaved_to_half(w, self.config.num_key_value_heads)
        return w

    def tokenizer_path(self) -> Path | None:
        return self.path


class _PastEnd(Exception):
    def __init__(self, need: int):
        self.need = need


def _bounded_reader(gguf):
    """GGUFReader whose every read is checked against the file's end: a truncated file then says so,
    instead of numpy's "cannot reshape array" from a short slice."""

    class Bounded(gguf.GGUFReader):
        def _get(self, offset, dtype, count=1, override_order=None):
            need = int(offset) + int(np.empty([], dtype=dtype).itemsize) * int(count)
            if need > len(self.data):
                raise _PastEnd(need)
            return super()._get(offset, dtype, count, override_order)

    return Bounded


def _opt_id(v) -> int | None:
    if v is None:
        return None
    v = int(v)
    return None if v >= 2**31 else v
