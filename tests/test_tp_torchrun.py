"""Tensor parallelism under torchrun: TP=2/3/4 give the output_ids of TP=1 (the plain runtime).

One torchrun launch with 4 CPU processes (gloo) runs every job (tests/tp_worker.py): float, W8A8 and
packed W8A8 (cut, then packed rank by rank; or sliced at load), sliced at load time and from `compress cut` directories, a 32-head / 8-KV-head random model, SmolLM2
with TP=3, and the KV-head rule's replicated cases (N > KV heads; N not dividing the KV heads).
"""
import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import make_tiny_hf
from tp_helpers import REPO, make_w8a8_artifact, torchrun
from runtime.engine import Engine
from runtime.linear import Binder
from runtime.loaders import open_source
from runtime.model import Llama

NEW = 24


def reference(path: Path, ids: torch.Tensor, new: int, artifact: bool = False) -> list:
    """TP=1: the plain single-process runtime (packed artifacts through their own sparse binder)."""
    if artifact:
        from runtime.quant.artifact import ANTI_DIR, open_artifact
        from runtime.quant.binder import QuantBinder
        from runtime.sparse.loading import packed_binder

        src = open_source(path / ANTI_DIR)
        art = open_artifact(path)
        binder: Binder = packed_binder(path, src, art, torch.float32, "cpu") or QuantBinder(src, art)
        model = Llama(src.config, binder).eval()
        assert {k for n, k in binder.kinds.items() if n != "lm_head"} == {"int8"}  # really the int8 path
        from runtime.kv_prefix import attach, load_kv_prefix, prefix_length

        attach(model, load_kv_prefix(art.manifest, art, src.config.num_hidden_layers))  # format 1.3
        return Engine(model, max_seq_len=ids.shape[1] + new + prefix_length(model),
                      eos_ids=[]).generate(ids, None, new).output_ids.tolist()
    else:
        src = open_source(path)
        from runtime.loading import build_model

        model = build_model(src)
    return Engine(model, max_seq_len=ids.shape[1] + new, eos_ids=[]).generate(ids, None, new).output_ids.tolist()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, smollm2_hf_dir):
    from compress.cut import cut
    from runtime.loading import tokenizer_for
    from runtime.presets import resolve_model

    tmp = tmp_path_factory.mktemp("tp")
    gen = torch.Generator().manual_seed(3)
    r32 = make_tiny_hf(tmp / "r32", heads=32, kv_heads=8, hidden=256, inter=512, layers=2, vocab=256, seed=1)
    over = make_tiny_hf(tmp / "over", heads=8, kv_heads=2, hidden=64, inter=128, layers=2, tied=True, seed=2)
    mis = make_tiny_hf(tmp / "mis", heads=6, kv_heads=3, hidden=48, inter=96, layers=2, seed=3)
    ids = torch.randint(3, 256, (2, 7), generator=gen)
    art = make_w8a8_artifact(r32, tmp / "r32-w8a8", torch.randint(3, 256, (4, 32), generator=gen))
    # per-token inputs on the row-parallel linears: each rank must quantize with the whole row's scale
    dyn = make_w8a8_artifact(r32, tmp / "r32-w8a8-dyn", torch.randint(3, 256, (4, 32), generator=gen),
                             dynamic=("o_proj", "down_proj"))
    cut(str(r32), 2, tmp / "r32-cut2", progress=False)
    cut(str(art), 2, tmp / "w8a8-cut2", progress=False)
    # the attention-sink KV prefix (format 1.3): whole in the artifact, each rank keeps its plan's KV heads
    from kv_prefix_helpers import add_prefix

    pre = add_prefix(shutil.copytree(art, tmp / "r32-w8a8-prefix"), [1, 5])
    cut(str(pre), 2, tmp / "prefix-cut2", progress=False)
    mis_art = add_prefix(make_w8a8_artifact(mis, tmp / "mis-w8a8", torch.randint(3, 256, (4, 32), generator=gen)),
                         [1])
    from compress.pack.artifact import pack_artifact

    pack_artifact(art, tmp / "w8a8-packed", progress=False)  # TP=1 reference of the packed units
    pack_artifact(tmp / "w8a8-cut2", tmp / "w8a8-cut2-packed", progress=False)  # cut, then pack rank by rank
    pack_artifact(dyn, tmp / "dyn-packed", progress=False)
    smol_ids = torch.tensor([tokenizer_for(resolve_model(str(smollm2_hf_dir))).encode("The capital of France is")])
    specs = [  # (name, ranks, kind, path, ids, reference path, artifact?)
        ("float_tp4", [0, 1, 2, 3], "float", r32, ids, r32, False),
        ("float_tp2", [0, 1], "float", r32, ids, r32, False),
        ("float_tp2_cut", [2, 3], "cut", tmp / "r32-cut2", ids, r32, False),
        ("w8a8_tp4", [0, 1, 2, 3], "artifact", art, ids, art, True),
        ("w8a8_tp2", [0, 1], "artifact", art, ids, art, True),
        ("w8a8_tp2_cut", [2, 3], "cut", tmp / "w8a8-cut2", ids, art, True),
        ("packed_tp2_cut", [0, 1], "cut", tmp / "w8a8-cut2-packed", ids, tmp / "w8a8-packed", True),
        ("packed_tp2", [2, 3], "artifact", tmp / "w8a8-packed", ids, art, True),
        ("dyn_tp4", [0, 1, 2, 3], "artifact", dyn, ids, dyn, True),
        ("dyn_packed_tp2", [0, 1], "artifact", tmp / "dyn-packed", ids, dyn, True),
        ("smollm2_tp3", [0, 1, 2], "float", smollm2_hf_dir, smol_ids, smollm2_hf_dir, False),
        ("kv_fewer_than_ranks_tp4", [0, 1, 2, 3], "float", over, ids, over, False),
        ("kv_not_divisible_tp2", [0, 1], "float", mis, ids, mis, False),
        ("prefix_tp2", [0, 1], "artifact", pre, ids, pre, True),
        ("prefix_tp2_cut", [2, 3], "cut", tmp / "prefix-cut2", ids, pre, True),
        ("prefix_kv_replicated_tp2", [0, 1], "artifact", mis_art, ids, mis_art, True),
    ]
    jobs = [{"name": n, "ranks": r, "kind": k, "path": str(p), "ids": i.tolist(), "new": NEW if "smol" not in n else 16}
            for n, r, k, p, i, _, _ in specs]
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    out = tmp / "out"
    out.mkdir()
    torchrun([str(REPO / "tests" / "tp_worker.py"), str(tmp / "jobs.json"), str(out)], nproc=4)
    results = {n: json.loads((out / f"{n}.json").read_text()) for n, *_ in specs}
    refs = {n: reference(rp, i, NEW if "smol" not in n else 16, a) for n, _, _, _, i, rp, a in specs}
    return results, refs


@pytest.mark.parametrize("name", ["float_tp4", "float_tp2", "float_tp2_cut"])
def test_float_tp_matches_tp1(runs, name):
    results, refs = runs
    assert results[name]["output_ids"] == refs[name]
    assert len({t for row in refs[name] for t in row}) > 3  # not a degenerate constant output


def test_heads_are_split_32_8(runs):
    results, _ = runs
    assert (results["float_tp4"]["n_heads_local"], results["float_tp4"]["n_kv_local"]) == (8, 2)
    assert (results["float_tp2"]["n_heads_local"], results["float_tp2"]["n_kv_local"]) == (16, 4)


@pytest.mark.parametrize("name", ["w8a8_tp4", "w8a8_tp2", "w8a8_tp2_cut", "packed_tp2_cut", "packed_tp2", "dyn_tp4",
                                  "dyn_packed_tp2"])
def test_w8a8_tp_matches_tp1(runs, name):
    results, refs = runs
    assert results[name]["output_ids"] == refs[name]
    assert refs[name] != refs["float_tp4"]  # the int8 path, not the float one, was compared


def test_smollm2_tp3(runs):
    results, refs = runs
    assert results["smollm2_tp3"]["output_ids"] == refs["smollm2_tp3"]
    assert (results["smollm2_tp3"]["n_heads_local"], results["smollm2_tp3"]["n_kv_local"]) == (3, 1)


def test_kv_heads_replicated_when_needed(runs):
    results, refs = runs
    for name, want in [("kv_fewer_than_ranks_tp4", (2, 1)), ("kv_not_divisible_tp2", (3, 3))]:
        assert results[name]["output_ids"] == refs[name], name
        assert (results[name]["n_heads_local"], results[name]["n_kv_local"]) == want, name


@pytest.mark.parametrize("name", ["prefix_tp2", "prefix_tp2_cut", "prefix_kv_replicated_tp2"])
def test_kv_prefix_tp_matches_tp1(runs, name):
    """Every rank starts with its KV heads of the prefix (runtime/kv_prefix.py): TP=2 gives TP=1's tokens."""
    results, refs = runs
    assert results[name]["output_ids"] == refs[name]
    if name != "prefix_kv_replicated_tp2":
        assert refs[name] != refs["w8a8_tp2"]  # the prefix changes the output: it was really in the cache
