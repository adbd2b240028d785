"""`compress sparse`'s pruning half, one decoder layer at a time: the model is never held.

Per layer i: read its tensors from the source (safetensors mmap, the handles closed right after), build ONE
transformers `LlamaDecoderLayer` from the config with them (the same module, dtype and keyword arguments the
whole-model `prune_model` runs, so pruning and reconstruction are those of the in-memory path: tested equal,
tests/test_sparse_streamed.py), run the shared per-layer step (driver.prune_layer), write the pruned layer's
tensors to its own safetensors file in the pruned HF directory, and drop the layer. Held between layers:
only the calibration activations (samples x seq x hidden in the pruning dtype; a second stream, the dense
model's, with reconstruction). The embeddings are gathered from embed_tokens for the calibration ids.

The pruned directory is an HF checkpoint that transformers and every stage load: `head.safetensors`
(embedding, final norm, lm_head), `layer-00000.safetensors` ... and `model.safetensors.index.json`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from runtime.config import ModelConfig
from runtime.format.streamed import PendingTensor, save_tensors_streamed
from runtime.hf_export import INDEX, write_hf_metadata
from runtime.loaders import weight_names
from runtime.memory import heap_for_layer_loops, release_free_memory

from ..stream.layers import layer_names
from .driver import PruneConfig, PruneReport, prune_layer

HEAD_FILE = "head.safetensors"


def layer_file(i: int) -> str:
    return f"layer-{i:05d}.safetensors"


def prune_dtype(cfg: ModelConfig) -> torch.dtype:
    """The dtype the layers run in while pruning: bf16 from LLaMA-2-7B width on, float32 below. Scores,
    SparseGPT updates and reconstruction are float32 either way. By width, not size: a 7B checkpoint cut to 2
    or 4 layers (README "Real scale") then prunes exactly as the full model does, bf16 streams included.
    The quantize pass's own rule (compress/stream/layers.py), so the two halves compute alike."""
    from ..stream.layers import compute_dtype

    return compute_dtype(cfg)


def hf_config(hf_dir: Path):
    """The transformers config of the checkpoint, with the attention kernel from_pretrained picks on CPU
    (sdpa): the whole-model path and this one must run the same attention."""
    import transformers
    from transformers import LlamaConfig

    transformers.logging.set_verbosity_error()
    c = LlamaConfig.from_pretrained(str(hf_dir))
    c._attn_implementation = "sdpa"
    return c


def layer_kwargs(hf_cfg, seq_len: int, dtype: torch.dtype) -> dict:
    """The keyword arguments LlamaModel.forward passes each decoder layer for one unpadded sequence of
    `seq_len` tokens (rotary tables, causal mask, positions), computed as it computes them."""
    from transformers.masking_utils import create_causal_mask
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    x = torch.zeros(1, seq_len, hf_cfg.hidden_size, dtype=dtype)
    pos = torch.arange(seq_len).unsqueeze(0)
    mask = create_causal_mask(config=hf_cfg, inputs_embeds=x, attention_mask=None, cache=None, position_ids=pos)
    cos, sin = LlamaRotaryEmbedding(hf_cfg)(x, position_ids=pos)
    return {"attention_mask": mask, "position_embeddings": (cos, sin), "position_ids": pos, "cache": None,
            "use_cache": False}


def build_layer(hf_cfg, i: int, tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> nn.Module:
    """transformers' LlamaDecoderLayer i holding `tensors` (HF names) in `dtype`; built on the meta device
    so no random initialisation is allocated first."""
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    with torch.device("meta"):
        layer = LlamaDecoderLayer(hf_cfg, i)
    pre = f"model.layers.{i}."
    layer.load_state_dict({k.removeprefix(pre): v.to(dtype) for k, v in tensors.items()}, strict=True, assign=True)
    return layer.eval()


def _write(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_tensors_streamed(path, [PendingTensor(n, t.dtype, tuple(t.shape), lambda t=t: t) for n, t in tensors.items()])


@torch.no_grad()
def prune_streamed(src, hf_dir: Path, samples, cfg: PruneConfig, *, out_dir: Path | None = None, tokenizer=None,
                   dtype: torch.dtype | None = None, measure_only: bool = False, progress: bool = True,
                   log: Callable[[str], None] | None = None) -> PruneReport:
    """Prune the checkpoint `src` (a TensorSource over the HF directory `hf_dir`) layer by layer and write the
    pruned checkpoint to `out_dir` (in the embedding's dtype, with `tokenizer` if given). measure_only: write
    nothing and fill report.layer_error (driver.prune_layer). samples: [N, T] token ids or a list of [1, T]."""
    if isinstance(samples, (list, tuple)):
        samples = torch.cat(list(samples), 0)
    cfg.check()
    # as the streamed quantize pass does (compress/stream/pipeline.py): temporaries from the heap, trimmed per
    # layer, so neither fresh pages for every temporary nor a resident size that climbs by layer
    heap_for_layer_loops()
    mcfg = src.config
    dtype = dtype or prune_dtype(mcfg)
    hf_cfg = hf_config(hf_dir)
    emb = src.get("model.embed_tokens.weight")
    save_dtype = emb.dtype
    weight_map: dict[str, str] = {}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        head = {n: src.get(n).to(save_dtype) for n in weight_names(mcfg) if not n.startswith("model.layers.")}
        _write(out_dir / HEAD_FILE, head)
        weight_map.update(dict.fromkeys(head, HEAD_FILE))
        del head
    # the embedding rows of the calibration ids, cast as the model in `dtype` would hold them (exact either way)
    inps = [F.embedding(samples[j:j + 1], emb).to(dtype) for j in range(samples.shape[0])]
    del emb
    if hasattr(src, "release"):
        src.release()
    kws = [layer_kwargs(hf_cfg, samples.shape[1], dtype)] * samples.shape[0]  # the same for every sequence
    report = PruneReport()
    tune = cfg.reconstruct_epochs > 0 and not measure_only
    dense_inps = list(inps) if tune else None
    what = "measure pruning error" if measure_only else f"prune {cfg.method} {cfg.pattern} {cfg.sparsity:g}"
    bar = tqdm(range(mcfg.num_hidden_layers), desc=what, unit="layer", disable=not progress)
    for li in bar:
        t0 = time.time()
        lt = {n: src.get(n).clone() for n in layer_names(li)}
        if hasattr(src, "release"):
            src.release()  # the source's pages of this layer need not stay mapped
        layer = build_layer(hf_cfg, li, lt, dtype)
        norms = {n: t for n, t in lt.items() if not n.endswith("_proj.weight")}
        del lt  # the source's linears: the layer holds its own copy (or the same tensors)
        inps, dense_inps = prune_layer(layer, li, inps, kws, cfg, report, dense_inps, measure_only)
        if out_dir is not None:
            sd = layer.state_dict()
            # the pruned linears from the layer; the norms as the source holds them (never cast through `dtype`)
            out = {n: (norms[n] if n in norms else sd[n.removeprefix(f"model.layers.{li}.")]).to(save_dtype)
                   for n in layer_names(li)}
            _write(out_dir / layer_file(li), out)
            weight_map.update(dict.fromkeys(out, layer_file(li)))
            del sd, out
        del layer, norms
        release_free_memory()
        secs = time.time() - t0
        rec = report.reconstruction.get(li)
        bar.set_postfix_str(f"{secs:.0f}s" + (f" err {rec[0]:.3g}->{rec[1]:.3g}" if rec else ""))
        if log is not None:
            log(f"    {what}: layer {li} in {secs:.1f} s" + (f", reconstruction error {rec[0]:.4g} -> {rec[1]:.4g}"
                                                           if rec else ""))
    if out_dir is not None:
        write_hf_metadata(out_dir, mcfg, save_dtype, tokenizer, weight_map)
    return report
