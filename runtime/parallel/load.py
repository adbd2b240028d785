"""A tensor-parallel model for this rank: from an uncut checkpoint / artifact (sliced at load time) or
from a `compress cut` directory (this rank's unit)."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from ..config import ModelConfig
from ..errors import UserError
from ..model import Llama
from .cutdir import is_cut_dir, read_cut_manifest, unit_dir, verify_unit
from .dist import TPContext, init_from_env
from .plan import TPPlan
from .sources import CutUnitSource


def build_tp_model(source, ctx: TPContext, dtype: torch.dtype, quant_tensors=None, presliced: bool = False,
                   artifact_root: Path | None = None) -> Llama:
    """The rank's Llama. `source` holds float tensors (uncut, or this rank's unit when `presliced`);
    `quant_tensors`, when given, is an artifact reader (has/tensor) whose quantized linears are used.
    A packed artifact (compress pack) is recognised by its manifest: a cut unit is packed per rank and
    runs as it is; an uncut one is unpacked to dense int8 at load and sliced like any other."""
    from ..binding import binder_for

    if quant_tensors is not None and hasattr(quant_tensors, "root"):  # an opened artifact
        binder = binder_for(quant_tensors, tp=ctx, dtype=dtype, float_source=source, presliced=presliced)
    else:  # a float model, or artifact tensors held elsewhere
        binder = binder_for(source, tp=ctx, dtype=dtype, tensors=quant_tensors, presliced=presliced)
    model = Llama(source.config, binder).eval()
    manifest = getattr(quant_tensors, "manifest", None)
    if manifest is not None:  # the prefix is stored whole (a cut copies it): keep this rank's KV heads
        from ..kv_prefix import attach, load_kv_prefix

        prefix = load_kv_prefix(manifest, quant_tensors, source.config.num_hidden_layers)
        attach(model, prefix, TPPlan.make(source.config, ctx.world).kv_heads(ctx.rank) if prefix else None)
    return model


def _barrier(ctx: TPContext) -> None:
    if ctx.world > 1 and dist.is_initialized():
        dist.barrier(group=ctx.group)


def load_cut_unit(root: Path, ctx: TPContext, dtype: torch.dtype):
    """(model, unit dir holding the tokenizer, manifest) for this rank of a cut directory."""
    m = read_cut_manifest(root)
    if int(m["world_size"]) != ctx.world:
        raise UserError(f"{root} was cut for {m['world_size']} ranks but this run has {ctx.world}: launch "
                        f"torchrun with {m['world_size']} processes in all (--nnodes x --nproc-per-node), or re-cut "
                        f"with compress cut --tp {ctx.world}")
    if m["kind"] != "artifact":
        verify_unit(root, m, ctx.rank)
    unit = unit_dir(root, ctx.rank)
    if m["kind"] == "artifact":
        from ..quant.artifact import ANTI_DIR, open_artifact

        fdir = unit / ANTI_DIR
        plan = TPPlan.make(ModelConfig.load(fdir), ctx.world)
        art = open_artifact(unit)  # its own artifact.json is authoritative (compress pack rewrites it)
        model = build_tp_model(CutUnitSource(fdir, plan, ctx.rank), ctx, dtype, art, presliced=True,
                               artifact_root=unit)
        return model, fdir, m
    plan = TPPlan.make(ModelConfig.load(unit), ctx.world)
    return build_tp_model(CutUnitSource(unit, plan, ctx.rank), ctx, dtype, presliced=True), unit, m


def load_tp(model: str | None, weights: str | None, tokenizer: str | None, quant: Path | None,
            dtype: torch.dtype, device: torch.device):
    """(model, tokenizer, description) for this rank, inside torchrun (or a 1-rank cut directory)."""
    from ..loaders import open_source
    from ..loading import imported_dir, tokenizer_for
    from ..presets import resolve_model
    from ..tokenizer import load_tokenizer

    ctx = init_from_env(device)
    cut = quant if is_cut_dir(quant) else (Path(model) if is_cut_dir(model) else None)
    tag = f"TP {ctx.world} (backend {dist.get_backend() if dist.is_initialized() else 'none'})"
    if cut is not None:
        from ..kv_prefix import describe

        m, tok_dir, manifest = load_cut_unit(Path(cut), ctx, dtype)
        tok = load_tokenizer(tokenizer or tok_dir)
        extra = f"; {describe(m)}" if describe(m) else ""
        return m, tok, f"{manifest['source'].get('name', '?')} cut {cut} ({manifest['kind']}) {tag}{extra}"
    if quant is not None:
        from ..quant.artifact import ANTI_DIR, open_artifact

        art = open_artifact(Path(quant))
        src = open_source(Path(quant) / ANTI_DIR)
        tok = load_tokenizer(tokenizer or Path(quant) / ANTI_DIR)
        from ..kv_prefix import describe

        model = build_tp_model(src, ctx, dtype, art, artifact_root=Path(quant))
        extra = f"; {describe(model)}" if describe(model) else ""
        return model, tok, f"artifact {quant} sliced at load, {tag}{extra}"
    ref = resolve_model(model, weights, tokenizer)
    if ctx.rank != 0:  # rank 0 imports a GGUF / llama2.c checkpoint into the cache once, the others wait
        _barrier(ctx)
    hf = imported_dir(ref, progress=ctx.rank == 0)
    if ctx.rank == 0:
        _barrier(ctx)
    src = open_source(hf)
    tok = tokenizer_for(ref, src)
    return build_tp_model(src, ctx, dtype), tok, f"{ref.name} ({hf}) sliced at load, {tag}"


def tp_requested(model: str | None, quant: Path | None) -> bool:
    """Run through the TP path: under torchrun with more than one process, or for a cut directory."""
    from .dist import env_world_size

    return env_world_size() > 1 or is_cut_dir(quant) or is_cut_dir(model)
