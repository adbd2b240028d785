"""One decoder layer of the runtime's own model (runtime/model.py), built from one layer's tensors and run
over the calibration stream: the float layer (statistics) and the int8 layer as the runtime runs it
(quantized-input propagation). No second model implementation, and nothing outside the layer is held.
"""
from __future__ import annotations

from typing import Callable

import torch

from runtime import topology
from runtime.config import ModelConfig
from runtime.linear import FloatBinder
from runtime.model import DecoderLayer
from runtime.rope import rope_for_layers, rope_tables

from ..memsource import DictSource, DictTensors

LAYER_PARTS = ("input_layernorm", "post_attention_layernorm") + topology.PART_PATHS


def layer_names(i: int) -> list[str]:
    """The HF tensor names of decoder layer i."""
    return [f"model.layers.{i}.{p}.weight" for p in LAYER_PARTS]


def compute_dtype(cfg: ModelConfig) -> torch.dtype:
    """bf16 from LLaMA-2-7B's width up (AMX / AVX512-BF16 matmuls: 5x fp32 on the Xeon here), float32 below,
    where it costs little and keeps the statistics exact. By width alone, so that a checkpoint cut to a few
    layers (the 2-vs-4-layer memory check) computes exactly as the full model does."""
    return torch.bfloat16 if cfg.hidden_size >= 4096 else torch.float32


def float_layer(cfg: ModelConfig, i: int, tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> DecoderLayer:
    return DecoderLayer(cfg, i, FloatBinder(DictSource(cfg, tensors), dtype, "cpu")).eval()


def int8_layer(cfg: ModelConfig, i: int, tensors: dict[str, torch.Tensor], quant: dict[str, torch.Tensor],
               dtype: torch.dtype) -> DecoderLayer:
    """The layer as `runtime run --quant` builds it: every module with int8 tensors in `quant` by its W8A8
    scheme (inferred from the tensors), the others float."""
    from runtime.quant.binder import QuantBinder

    return DecoderLayer(cfg, i, QuantBinder(DictSource(cfg, tensors), DictTensors(quant), dtype, "cpu")).eval()


class StreamRunner:
    """Runs a decoder layer over [N, T, hidden] activations, `batch` sequences per call.

    The activations are kept in the compute dtype: the layer reads its input in that dtype and computes its
    output (residual add included) in it, so storing them wider holds no more information, only twice the
    bytes (64 x 512 x 4096 activations: 256 MB in bf16 against 512 MB in float32, twice: in and out)."""

    def __init__(self, cfg: ModelConfig, seq_len: int, dtype: torch.dtype, batch: int = 4, offset: int = 0):
        # offset = P with a KV prefix (compress/stream/prefix.py): the sequences sit at positions P..P+seq_len-1
        cos, sin = rope_tables(cfg, offset + seq_len, dtype, "cpu")
        self.cos, self.sin = rope_for_layers(cos[None, None, offset:], sin[None, None, offset:])
        self.dtype = dtype
        self.batch = batch
        self.offset = offset
        self.kv: tuple[torch.Tensor, torch.Tensor] | None = None  # the current layer's prefix keys/values

    def _cache(self, layer: DecoderLayer, b: int, t: int):
        """None, or a cache for `b` sequences of `t` tokens holding the prefix at positions 0..P-1."""
        if self.kv is None:
            return None
        from .prefix import layer_cache

        k, v = self.kv
        P = k.shape[2]
        ck = torch.empty(b, k.shape[1], P + t, k.shape[3], dtype=self.dtype)
        cv = torch.empty_like(ck)
        ck[:, :, :P], cv[:, :, :P] = k, v
        return layer_cache(layer.self_attn.layer, ck, cv)

    @torch.inference_mode()
    def run(self, layer: DecoderLayer, xs: torch.Tensor, keep: int | None = None,
            on_batch: Callable[[int], None] | None = None) -> torch.Tensor:
        """The layer's outputs (compute dtype) for every sequence of `xs`, or for the first `keep` only (the
        others are still run: their statistics are what the hooks collect)."""
        n = xs.shape[0]
        out = torch.empty((n if keep is None else min(keep, n), *xs.shape[1:]), dtype=self.dtype)
        for j in range(0, n, self.batch):
            xb = xs[j:j + self.batch].to(self.dtype)
            cache = self._cache(layer, xb.shape[0], xb.shape[1])
            y = layer(xb, self.cos, self.sin, cache, self.offset if cache is not None else 0, None)
            if keep is None:
                out[j:j + y.shape[0]] = y
            elif j < keep:
                out[j:min(keep, j + y.shape[0])] = y[: keep - j]
            if on_batch is not None:
                on_batch(y.shape[0])
        return out


def group_modules(layer: DecoderLayer) -> dict[str, torch.nn.Module]:
    """Group key suffix ("self_attn.q_proj", ...) -> the runtime module that reads the group's input."""
    return {g.key: getattr(getattr(layer, g.block), g.attr) for g in topology.GROUPS}


def observe_inputs(layer: DecoderLayer, i: int, observe: Callable[[str, torch.Tensor], None]) -> list:
    """Forward pre-hooks that pass every group input to observe("model.layers.i.<key>", x); returns the handles."""
    return [m.register_forward_pre_hook(lambda _m, args, key=f"model.layers.{i}.{k}": observe(key, args[0]))
            for k, m in group_modules(layer).items()]
