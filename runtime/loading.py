"""From a `--model` / `--quant` argument to a ready model: sources, the one-time import cache, tokenizers,
and `load_for_run`, the engine every runtime command runs (float, artifact, or tensor-parallel)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from .errors import UserError
from .linear import Binder, FloatBinder
from .loaders import TensorSource, open_source
from .model import Llama
from .presets import ModelRef, cache_dir
from .tokenizer import Tokenizer, load_tokenizer


def is_hf_dir(p: Path) -> bool:
    return p.is_dir() and (p / "config.json").exists()


def tokenizer_for(ref: ModelRef, source: TensorSource | None = None) -> Tokenizer:
    if ref.tokenizer is not None:
        return load_tokenizer(ref.tokenizer)
    tp = source.tokenizer_path() if source is not None else (ref.path if ref.path.suffix == ".gguf" or is_hf_dir(ref.path) else None)
    if tp is None:
        raise UserError(f"{ref.path} carries no tokenizer: pass --tokenizer PATH (a tokenizer.model or HF directory)")
    return load_tokenizer(tp)


def imported_dir(ref: ModelRef, progress: bool = True) -> Path:
    """An HF directory for `ref`: itself if it is one, else a one-time import kept in the cache."""
    if is_hf_dir(ref.path):
        return ref.path
    st = ref.path.stat()
    key = hashlib.sha256(f"{ref.path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{ref.tokenizer}".encode()).hexdigest()[:16]
    out = cache_dir() / "imports" / f"{ref.name}-{key}"
    from .atomic import clean_stale

    clean_stale(out.parent, out.name)  # a killed import's full-size temporary copy (its pid is dead)
    if not is_hf_dir(out):
        from .hf_export import export_hf_dir

        src = open_source(ref.path)
        export_hf_dir(src, tokenizer_for(ref, src), out, overwrite=True, progress=progress)
    return out


def build_model(source: TensorSource, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                binder: Binder | None = None) -> Llama:
    return Llama(source.config, binder or FloatBinder(source, dtype, device)).eval()


def load_for_run(model: str | None, weights: str | None, tokenizer: str | None, quant: Path | None,
                 dtype: str, device: str, max_seq_len: int, batch: int = 1, skip_memory_check: bool = False):
    """(engine, tokenizer, description) for a float model or, with `quant`, a compressed artifact.

    Before loading, the resident bytes are estimated and a model that cannot fit MemAvailable is refused."""
    from .run_memory import artifact_modules, artifact_run_bytes, check_run_memory, float_run_bytes
    from .device import parse_dtype, resolve_device
    from .engine import Engine
    from .parallel.load import load_tp, tp_requested
    from .presets import resolve_model

    dt, dev = parse_dtype(dtype), resolve_device(device)

    if tp_requested(model, quant):  # under torchrun (WORLD_SIZE > 1), or a `compress cut` directory
        model_obj, tok, desc = load_tp(model, weights, tokenizer, quant, dt, dev)
    elif quant is not None:
        from .quant_loading import load_artifact_model  # provided by the W8A8 runtime

        mods = artifact_modules(Path(quant))
        if mods:
            cfg = open_source(Path(quant) / "anti_weight").config
            need, how = artifact_run_bytes(mods, cfg, dt.itemsize, max_seq_len, batch)
            check_run_memory(need, how, True, dtype, skip_memory_check)
        model_obj, tok, desc = load_artifact_model(Path(quant), dt, dev)
    else:
        ref = resolve_model(model, weights, tokenizer)
        src = open_source(imported_dir(ref))
        need, how = float_run_bytes(src.config, dt.itemsize, max_seq_len, batch)
        check_run_memory(need, how, False, dtype, skip_memory_check)
        tok = tokenizer_for(ref, src)
        model_obj = build_model(src, dt, dev)
        desc = f"{ref.name} ({src.path}) {dtype}"
    if tok.vocab_size > model_obj.config.vocab_size:
        raise UserError(f"the tokenizer has {tok.vocab_size} ids but the model only {model_obj.config.vocab_size}: "
                        "they do not belong together; pass the model's own --tokenizer")
    return Engine(model_obj, max_seq_len=max_seq_len), tok, desc
