"""Model shapes without weights: true LLaMA-2 / TinyLlama shapes filled with random values.

Speed does not depend on the values, only on the shapes and dtypes, so `--shape llama2-7b` measures
what a real 7B model would take (per layer) without the weights being present on this machine.
"""
from __future__ import annotations

import dataclasses
import zlib

import torch

from ..config import ModelConfig
from ..errors import UserError
from ..loaders.random_weights import RandomSource
from ..presets import find_preset

# Shapes not shipped as presets in configs/ (TinyLlama-1.1B: GQA with 4 kv heads, 22 layers).
EXTRA_SHAPES: dict[str, dict] = {
    "tinyllama-1.1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                           num_attention_heads=32, num_key_value_heads=4, vocab_size=32000,
                           max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
                           tie_word_embeddings=False, bos_token_id=1, eos_token_id=2),
}
PRESET_SHAPES = ("llama2-7b", "llama2-13b")
SHAPE_NAMES = PRESET_SHAPES + tuple(EXTRA_SHAPES)


def shape_config(name: str, layers: int | None = None) -> ModelConfig:
    """The architecture of shape `name`, cut to its first `layers` layers if given."""
    if name in EXTRA_SHAPES:
        cfg = ModelConfig.from_hf({"model_type": "llama", **EXTRA_SHAPES[name]})
    elif name in PRESET_SHAPES:
        preset = find_preset(name)
        if preset is None:
            raise UserError(f"configs/{name}.json is missing from this checkout: reinstall llama-compress")
        cfg = preset.config
    else:
        raise UserError(f"--shape {name!r} is not one of {', '.join(SHAPE_NAMES)}")
    if layers is not None:
        if not 1 <= layers <= cfg.num_hidden_layers:
            raise UserError(f"--layers {layers} must be between 1 and {cfg.num_hidden_layers} for {name}")
        cfg = dataclasses.replace(cfg, num_hidden_layers=layers)
    return cfg


class FastRandomSource(RandomSource):
    """RandomSource that builds 7B-shaped weights in seconds instead of minutes.

    Drawing 1.6 G normals per 8 layers costs ~10 s of single-threaded RNG. Instead one pool of
    random values is drawn once, in the target dtype, and each tensor is a fresh allocation filled
    from that pool starting at its own (name-seeded) offset. Values repeat across tensors, which
    speed does not care about; memory does: every tensor is distinct, so a decode step reads each
    layer's weights from DRAM exactly as a real checkpoint would.
    """

    POOL = 1 << 22  # 4 M values: larger than L2, drawn once

    def _pool(self) -> torch.Tensor:
        if getattr(self, "_pool_t", None) is None:
            g = torch.Generator().manual_seed(self.seed)
            self._pool_t = torch.empty(2 * self.POOL, dtype=self.dtype).uniform_(-1.0, 1.0, generator=g)
        return self._pool_t

    def _load(self, name: str) -> torch.Tensor:
        shape = self._shapes[name]
        if len(shape) == 1:
            return torch.ones(shape, dtype=self.dtype)
        # uniform(-a, a) with a = std*sqrt(3) has the std of the normal draws RandomSource makes
        a = (1.0 if "embed" in name else 0.02) * 3 ** 0.5
        pool = self._pool()
        off = zlib.crc32(f"{self.seed}:{name}".encode()) % self.POOL
        out = torch.empty(shape, dtype=self.dtype)
        flat = out.view(-1)
        for i in range(0, flat.numel(), self.POOL):
            n = min(self.POOL, flat.numel() - i)
            torch.mul(pool[off:off + n], a, out=flat[i:i + n])
        return out


def random_shape_source(name: str, layers: int | None = None, dtype: torch.dtype = torch.bfloat16,
                        seed: int = 0) -> FastRandomSource:
    return FastRandomSource(shape_config(name, layers), seed, dtype)
