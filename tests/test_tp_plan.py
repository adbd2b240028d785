"""The slicing plan and `compress cut` without any process group: shapes, the KV-head rule, errors,
and that the slices put back together are the original tensors (the math TP relies on)."""
import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_tiny_hf
from runtime.config import ModelConfig
from runtime.errors import UserError
from runtime.loaders import open_source
from runtime.parallel.plan import TPPlan


def cfg(heads=32, kv=8, hidden=256, inter=512, vocab=250):
    return ModelConfig(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=1, num_attention_heads=heads,
                       num_key_value_heads=kv, vocab_size=vocab)


def test_refuses_sizes_that_do_not_divide():
    with pytest.raises(UserError, match="does not divide the model's 32 attention heads"):
        TPPlan.make(cfg(), 3)
    with pytest.raises(UserError, match="FFN width"):
        TPPlan.make(cfg(inter=500), 8)
    with pytest.raises(UserError, match="does not divide the model's 9 attention heads"):
        TPPlan.make(cfg(heads=9, kv=3, hidden=576, inter=1536), 2)


def test_kv_head_rule():
    p = TPPlan.make(cfg(), 4)
    assert [p.kv_heads(r) for r in range(4)] == [[0, 1], [2, 3], [4, 5], [6, 7]] and not p.kv_replicated
    p = TPPlan.make(cfg(), 16)  # 2 query heads per rank, both in one group of 4: one KV head, replicated
    assert [p.kv_heads(r) for r in range(16)] == [[r // 2] for r in range(16)] and p.kv_replicated
    p = TPPlan.make(cfg(heads=6, kv=3, hidden=48, inter=96), 2)  # groups straddle ranks: a KV copy per q head
    assert (p.kv_heads(0), p.kv_heads(1)) == ([0, 0, 1], [1, 2, 2])
    p = TPPlan.make(cfg(heads=9, kv=3, hidden=576, inter=1536), 3)  # SmolLM2 at TP=3
    assert [p.kv_heads(r) for r in range(3)] == [[0], [1], [2]]


@pytest.mark.parametrize("world", [2, 4, 16])
def test_slices_recompose_the_linears(world):
    c = cfg()
    p = TPPlan.make(c, world)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, c.hidden_size, generator=g, dtype=torch.float64)
    wq = torch.randn(c.num_attention_heads * 8, c.hidden_size, generator=g, dtype=torch.float64)
    wk = torch.randn(c.num_key_value_heads * 8, c.hidden_size, generator=g, dtype=torch.float64)
    wo = torch.randn(c.hidden_size, c.num_attention_heads * 8, generator=g, dtype=torch.float64)
    head = torch.randn(c.vocab_size, c.hidden_size, generator=g, dtype=torch.float64)
    # column: the ranks' q outputs side by side are the full q output
    q = torch.cat([x @ p.slice("model.layers.0.self_attn.q_proj.weight", wq, r).T for r in range(world)], -1)
    assert torch.equal(q, x @ wq.T)
    # k: each rank holds the KV heads its query heads read (head h reads KV head h // group)
    for r in range(world):
        kr = p.slice("model.layers.0.self_attn.k_proj.weight", wk, r).view(-1, 8, c.hidden_size)
        want = wk.view(-1, 8, c.hidden_size)[p.kv_heads(r)]
        assert torch.equal(kr, want)
    # row: the sum over ranks of the partial products is the full product; a bias is added once
    a = torch.randn(3, c.num_attention_heads * 8, generator=g, dtype=torch.float64)
    bias = torch.randn(c.hidden_size, generator=g, dtype=torch.float64)
    parts = [a[:, p._cols("o_proj", r).start:p._cols("o_proj", r).stop]
             @ p.slice("model.layers.0.self_attn.o_proj.weight", wo, r).T
             + p.slice("model.layers.0.self_attn.o_proj.fp_bias", bias, r) for r in range(world)]
    assert torch.allclose(sum(parts), a @ wo.T + bias)
    # per-output scales of a row-parallel linear and per-tensor input scales stay whole
    s = torch.rand(c.hidden_size, dtype=torch.float64)
    assert torch.equal(p.slice("model.layers.0.self_attn.o_proj.deq_scale", s, 1), s)
    one = torch.tensor([0.5])
    assert torch.equal(p.slice("model.layers.0.self_attn.q_proj.input_scale", one, 1), one)
    # vocab: uneven split (250 rows) concatenates back to the whole head
    assert torch.equal(torch.cat([p.slice("lm_head.weight", head, r) for r in range(world)]), head)


def test_cut_writes_units_and_manifest(tmp_path):
    from compress.cut import cut
    from runtime.parallel.cutdir import sha256_file, verify_unit

    src = make_tiny_hf(tmp_path / "m", heads=8, kv_heads=4, hidden=64, inter=128, tied=True)
    m = cut(str(src), 2, tmp_path / "c", progress=False)
    manifest = json.loads((tmp_path / "c" / "cut.json").read_text())
    assert manifest == m and m["world_size"] == 2 and m["kind"] == "float" and len(m["source"]["sha256"]) == 64
    for rel, info in m["files"].items():
        assert sha256_file(tmp_path / "c" / rel) == info["sha256"]
    units = [load_file(str(next((tmp_path / "c" / f"rank_{r}").glob("*.safetensors")))) for r in range(2)]
    full = open_source(src)
    for name in ("model.layers.1.self_attn.q_proj.weight", "model.layers.0.mlp.up_proj.weight", "lm_head.weight"):
        assert torch.equal(torch.cat([u[name] for u in units]), full.get(name)), name
    assert torch.equal(torch.cat([u["model.layers.0.mlp.down_proj.weight"] for u in units], 1),
                       full.get("model.layers.0.mlp.down_proj.weight"))
    assert json.loads((tmp_path / "c" / "rank_1" / "unit.json").read_text())["rank"] == 1
    # a changed byte in a unit is caught before loading
    f = next((tmp_path / "c" / "rank_1").glob("*.safetensors"))
    b = bytearray(f.read_bytes())
    b[-1] ^= 1
    f.write_bytes(bytes(b))
    verify_unit(tmp_path / "c", m, 0)
    with pytest.raises(UserError, match="checksum mismatch"):
        verify_unit(tmp_path / "c", m, 1)


def test_cut_refuses_bad_size_and_writes_nothing(tmp_path):
    from compress.cut import cut

    src = make_tiny_hf(tmp_path / "m", heads=8, kv_heads=4, hidden=64, inter=128)
    with pytest.raises(UserError, match="does not divide the model's 8 attention heads"):
        cut(str(src), 3, tmp_path / "c", progress=False)
    assert not (tmp_path / "c").exists()


def test_cut_artifact_units_are_artifacts_and_packed_input_is_refused(tmp_path):
    from compress.cut import cut
    from compress.pack.artifact import pack_artifact
    from runtime.quant.artifact import open_artifact
    from tp_helpers import make_w8a8_artifact

    src = make_tiny_hf(tmp_path / "m", heads=8, kv_heads=4, hidden=64, inter=128)
    art = make_w8a8_artifact(src, tmp_path / "a", torch.randint(3, 256, (2, 16)))
    cut(str(art), 2, tmp_path / "c", progress=False)
    full = open_artifact(art)
    units = [open_artifact(tmp_path / "c" / f"rank_{r}") for r in range(2)]  # each checks its own sha256s
    assert [u.manifest["tensor_parallel"]["rank"] for u in units] == [0, 1]
    n = "model.layers.0.mlp.down_proj"
    assert torch.equal(torch.cat([u.tensor(f"{n}.quant_weight") for u in units], 1), full.tensor(f"{n}.quant_weight"))
    assert all(torch.equal(u.tensor(f"{n}.weight_scale"), full.tensor(f"{n}.weight_scale")) for u in units)
    n = "model.layers.1.self_attn.k_proj"
    assert torch.equal(torch.cat([u.tensor(f"{n}.deq_scale") for u in units]), full.tensor(f"{n}.deq_scale"))
    pack_artifact(art, tmp_path / "p", progress=False)
    with pytest.raises(UserError, match="packed artifact"):
        cut(str(tmp_path / "p"), 2, tmp_path / "c2", progress=False)
    assert not (tmp_path / "c2").exists()


def test_hadamard_blocks_must_stay_inside_a_rank():
    """down_proj's online rotation is block-diagonal: each rank can apply its blocks only if none straddles."""
    h = torch.tensor([512], dtype=torch.int32)
    name = "model.layers.0.mlp.down_proj.input_hadamard"
    p = TPPlan.make(cfg(heads=9, kv=3, hidden=576, inter=1536), 3)  # 512 columns per rank: aligned
    assert torch.equal(p.slice(name, h, 2), h)
    with pytest.raises(UserError, match="re-quantize with --hadamard-block 256"):
        TPPlan.make(cfg(heads=8, kv=8, hidden=512, inter=1536), 2).slice(name, h, 1)  # 768 per rank
