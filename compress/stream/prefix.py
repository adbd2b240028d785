"""The attention-sink KV prefix in the streamed pass (`compress quantize --kv-prefix IDS`).

A few fixed tokens (e.g. SmolLM2's <|endoftext|>) are carried through the layers IN FLOAT as their own
tiny stream: per layer, the float layer runs on the prefix's hidden states at positions 0..P-1 and its
post-RoPE keys/values are kept. Every calibration (and scoring) sequence then runs at positions P.. with
those keys/values in its attention cache, the way the runtime will run it (runtime/kv_prefix.py), but the
prefix positions never pass through a hooked linear: no activation statistic, hence no static range,
sees the sink tokens. The keys/values go into the layer's saved tensors (`...self_attn.k_prefix` /
`v_prefix`, float32 [n_kv, P, head_dim]) and from there into `k_prefix.safetensors` / `v_prefix.safetensors`.

Resume: the prefix's hidden states entering layer i are saved as `prefix-0000i.safetensors` in the work
directory before the stream that names layer i (workdir.py) is, so a resumed run continues both together.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F

from runtime.config import ModelConfig
from runtime.errors import UserError
from runtime.format import save_tensors
from runtime.kv_prefix import tensor_name
from runtime.model import DecoderLayer
from runtime.rope import rope_for_layers, rope_tables

from .workdir import WorkDir, _replace_write


def parse_prefix(text: str | None, vocab_size: int | None = None) -> tuple[int, ...] | None:
    """`--kv-prefix`: "none" (or empty) -> None, "0" or "0,198" -> token ids."""
    if text is None or str(text).strip().lower() in ("", "none", "off"):
        return None
    try:
        ids = tuple(int(t) for t in str(text).split(",") if t.strip())
    except ValueError:
        raise UserError(f"--kv-prefix {text!r}: give comma-separated token ids (e.g. 0 for SmolLM2's "
                        "<|endoftext|>) or none") from None
    if not ids or len(ids) > 64:
        raise UserError(f"--kv-prefix {text!r}: give 1 to 64 token ids, or none")
    if vocab_size is not None and any(not 0 <= t < vocab_size for t in ids):
        raise UserError(f"--kv-prefix {text!r}: token ids must lie in 0..{vocab_size - 1} (the model's vocabulary)")
    return ids


def layer_cache(i: int, k: torch.Tensor, v: torch.Tensor) -> SimpleNamespace:
    """A KV cache for decoder layer i alone (the runtime's Attention indexes cache.k[layer])."""
    return SimpleNamespace(k={i: k}, v={i: v}, max_len=k.shape[2])


class PrefixStream:
    """The prefix tokens' hidden states [1, P, hidden] (float32), one layer at a time."""

    def __init__(self, ids: tuple[int, ...], h: torch.Tensor):
        self.ids, self.h = tuple(ids), h

    @property
    def length(self) -> int:
        return len(self.ids)

    @classmethod
    def begin(cls, ids: tuple[int, ...], embed: torch.Tensor) -> "PrefixStream":
        return cls(ids, F.embedding(torch.tensor([list(ids)]), embed).float())

    @torch.inference_mode()
    def keys_values(self, layer: DecoderLayer, cfg: ModelConfig, dtype: torch.dtype,
                    advance: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Run a FLOAT layer on the prefix (positions 0..P-1); its keys/values [1, n_kv, P, hd] (post-RoPE,
        in `dtype`). Call it before any statistics hook is on the layer. Twice per layer: on the layer the
        statistics pass runs (advance=False), and on the layer after smoothing's folds (advance=True: the
        per-head rotation rotate_o folds into v_proj, so the values the int8 layer's o_proj reads, the ones
        the artifact stores, are that layer's; this call also moves the hidden states one layer on)."""
        P, i = self.length, layer.self_attn.layer
        n_kv, hd = layer.self_attn.n_kv, layer.self_attn.head_dim
        cos, sin = rope_tables(cfg, P, dtype, "cpu")
        cos, sin = rope_for_layers(cos[None, None], sin[None, None])
        cache = layer_cache(i, torch.zeros(1, n_kv, P, hd, dtype=dtype), torch.zeros(1, n_kv, P, hd, dtype=dtype))
        h = layer(self.h.to(dtype), cos, sin, cache, 0, None).float()
        if advance:
            self.h = h
        return cache.k[i], cache.v[i]

    # --- the layer's artifact tensors and the resume point -----------------------------------------
    @staticmethod
    def tensors(i: int, k: torch.Tensor, v: torch.Tensor) -> dict[str, torch.Tensor]:
        return {tensor_name(i, "k_prefix"): k[0].float().contiguous(),
                tensor_name(i, "v_prefix"): v[0].float().contiguous()}

    @staticmethod
    def _file(work: WorkDir, layer: int):
        return work.path / f"prefix-{layer:05d}.safetensors"

    def save(self, work: WorkDir, next_layer: int) -> None:
        """The hidden states entering `next_layer` (before work.save_stream names that layer)."""
        h = self.h.contiguous()
        _replace_write(self._file(work, next_layer), lambda p: save_tensors(p, {"h": h}))

    @classmethod
    def resume(cls, ids: tuple[int, ...], work: WorkDir, layer: int) -> "PrefixStream":
        from safetensors import safe_open

        p = cls._file(work, layer)
        if not p.is_file():
            raise UserError(f"{work.path} has no saved KV-prefix state for layer {layer}: the partial run is "
                            f"damaged; delete {work.path} and run the command again")
        with safe_open(str(p), framework="pt") as f:
            return cls(ids, f.get_tensor("h"))


def open_prefix(ids: tuple[int, ...] | None, work: WorkDir, start: int,
                embed: torch.Tensor | None) -> PrefixStream | None:
    """The prefix stream of a fresh run (from the rotated embedding) or a resumed one (from its file)."""
    if not ids:
        return None
    return PrefixStream.begin(ids, embed) if start == 0 else PrefixStream.resume(ids, work, start)
