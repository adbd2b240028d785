"""Resident-memory estimate of `runtime run` before loading, and the refusal when it cannot fit.

Float model: every weight in the run dtype. Artifact: int8 weights (+ fp32 per-channel scales) of the
modules that run in int8, the float-fallback modules, embeddings, lm_head and norms in the run dtype;
the float weights anti_weight/ holds for int8 modules are never read (QuantBinder builds int8 linears
from quant_weight only, and safetensors reads tensor by tensor). Both: the KV cache, allocated up front
for --max-seq-len, and the process itself. mmap'd checkpoint pages are not counted: they are page cache
the kernel can drop, and MemAvailable counts them as available.
"""
from __future__ import annotations

import json
from pathlib import Path

from .config import ModelConfig
from .errors import UserError
from .memory import GiB, fmt_bytes, mem_available

BASE_BYTES = int(0.75 * GiB)  # python + torch + oneDNN, activations and logits of one batch (measured ~0.7 GiB)

_PART_SHAPE = {  # module suffix -> (out, in) as functions of the config
    "q_proj": lambda c: (c.num_attention_heads * c.head_dim, c.hidden_size),
    "k_proj": lambda c: (c.num_key_value_heads * c.head_dim, c.hidden_size),
    "v_proj": lambda c: (c.num_key_value_heads * c.head_dim, c.hidden_size),
    "o_proj": lambda c: (c.hidden_size, c.num_attention_heads * c.head_dim),
    "gate_proj": lambda c: (c.intermediate_size, c.hidden_size),
    "up_proj": lambda c: (c.intermediate_size, c.hidden_size),
    "down_proj": lambda c: (c.hidden_size, c.intermediate_size),
}


def kv_cache_bytes(cfg: ModelConfig, max_seq_len: int, batch: int, dtype_bytes: int) -> int:
    return 2 * cfg.num_hidden_layers * batch * cfg.num_key_value_heads * max_seq_len * cfg.head_dim * dtype_bytes


def _outside_linears(cfg: ModelConfig) -> int:
    head = 0 if cfg.tie_word_embeddings else cfg.vocab_size * cfg.hidden_size
    return cfg.vocab_size * cfg.hidden_size + head + (2 * cfg.num_hidden_layers + 1) * cfg.hidden_size


def float_run_bytes(cfg: ModelConfig, dtype_bytes: int, max_seq_len: int, batch: int) -> tuple[int, str]:
    lin = sum(o * i for f in _PART_SHAPE.values() for o, i in [f(cfg)]) * cfg.num_hidden_layers
    w = (lin + _outside_linears(cfg)) * dtype_bytes
    kv = kv_cache_bytes(cfg, max_seq_len, batch, dtype_bytes)
    return BASE_BYTES + w + kv, f"weights {fmt_bytes(w)}, KV cache {fmt_bytes(kv)}, process {fmt_bytes(BASE_BYTES)}"


def artifact_run_bytes(modules: dict[str, str], cfg: ModelConfig, dtype_bytes: int, max_seq_len: int,
                       batch: int) -> tuple[int, str]:
    """modules: the manifest's module name -> "int8" | "float" map."""
    i8 = fl = 0
    for name, kind in modules.items():
        shape = _PART_SHAPE.get(name.rsplit(".", 1)[-1])
        if shape is None:  # a kind this estimate does not know: the loader decides about it
            continue
        o, i = shape(cfg)
        if kind == "int8":
            i8 += o * i + 4 * o * 2  # int8 weight; weight_scale and deq/bias per output channel (fp32)
        else:
            fl += o * i * dtype_bytes
    rest = _outside_linears(cfg) * dtype_bytes
    kv = kv_cache_bytes(cfg, max_seq_len, batch, dtype_bytes)
    need = BASE_BYTES + i8 + fl + rest + kv
    return need, (f"int8 linears {fmt_bytes(i8)}, float linears {fmt_bytes(fl)}, embeddings/lm_head/norms "
                  f"{fmt_bytes(rest)}, KV cache {fmt_bytes(kv)}, process {fmt_bytes(BASE_BYTES)}")


def artifact_modules(quant: Path) -> dict[str, str] | None:
    try:
        return json.loads((Path(quant) / "artifact.json").read_text()).get("modules")
    except (OSError, ValueError):
        return None  # the loader's own checks say what is wrong with it


def check_run_memory(need: int, how: str, quant: bool, dtype: str, skip: bool) -> None:
    avail = mem_available()
    if avail is None or need <= avail or skip:
        return
    opts = [] if quant else ["run a W8A8 artifact (`compress quantize`, then `runtime run --quant DIR`)"]
    if dtype == "fp32":
        opts.append("--dtype bf16 (half the float bytes)")
    opts += ["a shorter --max-seq-len (smaller KV cache)",
             "tensor parallel over several nodes (`compress cut --tp N`, then torchrun)",
             "--skip-memory-check to try anyway"]
    raise UserError(f"the model needs about {fmt_bytes(need)} of RAM ({how}) but only {fmt_bytes(avail)} is "
                    f"available (MemAvailable): options: {'; '.join(opts)}")
