"""`runtime run --quant DIR`: an artifact directory to a ready Llama (int8 linears + float fallback)."""
from __future__ import annotations

from pathlib import Path

import torch

from .binding import binder_for
from .kv_prefix import attach, describe, load_kv_prefix
from .loaders import open_source
from .model import Llama
from .quant.artifact import ANTI_DIR, open_artifact
from .tokenizer import Tokenizer, load_tokenizer


def load_artifact_model(path: Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                        reference: bool = False, check: bool = True) -> tuple[Llama, Tokenizer, str]:
    """(model, tokenizer, description). Checks the format version and every file's sha256 first."""
    art = open_artifact(Path(path), check=check)
    src = open_source(Path(path) / ANTI_DIR)
    binder = binder_for(art, reference=reference, dtype=dtype, device=device, float_source=src)
    model = Llama(src.config, binder).eval()
    m = art.manifest
    attach(model, load_kv_prefix(m, art, src.config.num_hidden_layers))
    tok = load_tokenizer(Path(path) / ANTI_DIR)
    n_int8 = sum(1 for k in binder.kinds.values() if k == "int8")
    n_w8a16 = sum(1 for k in binder.kinds.values() if k == "w8a16")
    w8a16 = f", {n_w8a16} W8A16" if n_w8a16 else ""
    desc = (f"{m.get('source', {}).get('name', '?')} W8A8 {m.get('method', {}).get('act_method', '?')} "
            f"artifact {path} (format {m['format']['version']}, {n_int8}/{len(binder.kinds)} linears int8{w8a16}, "
            f"float layers {m.get('fallback', {}).get('float_units', [])}"
            + (f"; {describe(model)}" if describe(model) else "") + ")")
    return model, tok, desc
