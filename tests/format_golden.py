"""The byte-identity check of the format writers (tests/test_format_golden.py).

`build(root)` writes an artifact, its packed form and its TP=2 cut from stories260K's real weights and
tensors that are exact on every CPU (qmath.quantize_weight is elementwise IEEE arithmetic; slicing and
packing are integer work), using only APIs that predate the format module. The sha256 of every file it
wrote with the code before runtime/format existed is kept in tests/data/format_golden.json; run this file
(`python tests/format_golden.py OUT`) to print the table for the code checked out.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "data" / "format_golden.json"
# cut.json's producer became a dict like artifact.json's with the format module (issue 13): compared
# without it, and its files table only through the files themselves
VARIES = ("cut/cut.json",)


def build(root: Path, data: Path) -> None:
    from compress.cut import cut_artifact
    from compress.pack import pack_artifact
    from compress.synthetic import synthetic_quant_tensors
    from runtime.hf_export import export_hf_dir
    from runtime.loaders import open_source
    from runtime.quant.artifact import ANTI_DIR, FORMAT_NAME, write_manifest, write_quant_tensors
    from runtime.tokenizer import load_tokenizer

    src = open_source(data / "stories260K" / "stories260K.bin")
    tok = load_tokenizer(data / "stories260K" / "tok512.model")
    qt = synthetic_quant_tensors(src, "static", float_layers=(1,)).tensors
    for n in [k for k in qt if k.endswith(".quant_weight")]:
        q = qt[n].clone()
        q[:, 1::2] = 0  # 50% zeros, so packing has something to do
        qt[n] = q
    art = root / "art"
    art.mkdir(parents=True)
    export_hf_dir(src, tok, art / ANTI_DIR, progress=False)
    write_quant_tensors(art, qt)
    cfg = src.config
    mods = {f"model.layers.{i}.{p}": ("float" if i == 1 else "int8") for i in range(cfg.num_hidden_layers)
            for p in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                      "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")}
    write_manifest(art, {"format": {"name": FORMAT_NAME, "version": "1.1.0"}, "source": {"name": "stories260k"},
                         "method": {"act_method": "static", "hadamard_down": "off"},
                         "fallback": {"unit": "layer", "float_units": [1]}, "modules": mods,
                         "tensor_parallel": None})
    pack_artifact(art, root / "packed", progress=False)
    cut_artifact(art, 2, root / "cut", progress=False)


def table(root: Path) -> dict[str, str]:
    from runtime.quant.artifact import sha256_file

    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def cut_json_core(root: Path) -> dict:
    m = json.loads((root / "cut" / "cut.json").read_text())
    return {k: v for k, v in m.items() if k not in ("producer", "files", "source")} | \
        {"listed": sorted(m["files"])}


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    build(out, Path(sys.argv[2]))
    print(json.dumps({"files": {k: v for k, v in table(out).items() if k not in VARIES},
                      "cut_json": cut_json_core(out)}, indent=1, sort_keys=True))
