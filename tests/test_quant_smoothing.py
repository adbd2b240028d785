"""Smoothing is exact in float: the smoothed model (what anti_weight/ holds) computes the original's logits.

Reference: transformers' LlamaForCausalLM on the original weights vs the same class on the smoothed ones.
"""
import torch

from conftest import make_tiny_hf


def test_smoothed_model_equals_original(tmp_path):
    from transformers import LlamaForCausalLM

    from calibration.stats import collect_stats
    from compress.quantize import QuantizeOptions, quantize_tensors
    from runtime.loaders import open_source, weight_names

    d = make_tiny_hf(tmp_path / "tiny", heads=4, kv_heads=2, layers=2, hidden=64, inter=96, vocab=128)
    hf = LlamaForCausalLM.from_pretrained(str(d), dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(0)
    samples = [torch.randint(0, 128, (1, 40), generator=g) for _ in range(3)]
    stats = collect_stats(hf, samples, max_rows=64, progress=False)
    src = open_source(d)
    orig = {n: src.get(n).clone() for n in weight_names(src.config)}
    tensors = {n: t.clone() for n, t in orig.items()}
    res = quantize_tensors(tensors, stats, src.config, QuantizeOptions(alphas=(0.8,)), progress=False)

    # smoothing really moved something in every kind of fold (norms, up rows, v rows)
    for n in ("model.layers.0.input_layernorm.weight", "model.layers.1.post_attention_layernorm.weight",
              "model.layers.0.mlp.up_proj.weight", "model.layers.1.self_attn.v_proj.weight"):
        assert (res.float_tensors[n] - orig[n]).abs().max() > 1e-3 * orig[n].abs().max(), n

    ids = torch.randint(0, 128, (2, 30), generator=g)
    with torch.no_grad():
        want = hf(input_ids=ids).logits
        hf.load_state_dict(res.float_tensors, strict=False)
        got = hf(input_ids=ids).logits
    rel = (got - want).abs().max() / want.abs().max()
    assert rel < 1e-5, rel


def test_gqa_shared_scales_fold_into_v():
    from compress.smooth import kv_part, share_over_gqa

    s = torch.rand(4 * 8) + 0.5  # 4 query heads, head_dim 8, 2 kv heads
    sh = share_over_gqa(s, 4, 2)
    v = sh.view(2, 2, 8)
    assert torch.equal(v[:, 0], v[:, 1])  # heads of one kv head share their scales
    assert torch.all(sh >= s)  # the group maximum
    assert torch.equal(kv_part(sh, 4, 2), v[:, 0].reshape(-1))


def test_hadamard_is_the_block_sylvester_matrix_and_orthogonal():
    from runtime.quant.qmath import hadamard, hadamard_block

    b = 16
    h = torch.ones(1, 1)
    while h.shape[0] < b:  # Sylvester construction, built independently of the butterflies
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    x, w = torch.randn(5, 3 * b), torch.randn(7, 3 * b)
    want = (x.view(5, 3, b) @ h).reshape(5, 3 * b) / b ** 0.5
    assert torch.allclose(hadamard(x, b), want, atol=1e-6)
    assert torch.allclose(hadamard(x, b) @ hadamard(w, b).t(), x @ w.t(), atol=1e-4)  # x W^T unchanged
    assert (hadamard_block(1536), hadamard_block(11008), hadamard_block(13824), hadamard_block(96)) == (512, 256, 512, 32)


def test_head_rotation_alone_is_exact_in_float(tmp_path):
    """rotate_o without smoothing: v_proj and o_proj change, the logits do not."""
    from transformers import LlamaForCausalLM

    from calibration.stats import collect_stats
    from compress.quantize import QuantizeOptions, quantize_tensors
    from runtime.loaders import open_source, weight_names

    d = make_tiny_hf(tmp_path / "tiny", heads=4, kv_heads=2, layers=2, hidden=64, inter=96, vocab=128)
    hf = LlamaForCausalLM.from_pretrained(str(d), dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(1)
    stats = collect_stats(hf, [torch.randint(0, 128, (1, 40), generator=g)], max_rows=64, progress=False)
    src = open_source(d)
    orig = {n: src.get(n).clone() for n in weight_names(src.config)}
    res = quantize_tensors({n: t.clone() for n, t in orig.items()}, stats, src.config,
                           QuantizeOptions(alphas=(0.0,), rotate_o=True), progress=False)
    for n in ("model.layers.0.self_attn.v_proj.weight", "model.layers.1.self_attn.o_proj.weight"):
        assert (res.float_tensors[n] - orig[n]).abs().max() > 1e-2 * orig[n].abs().max(), n
    assert torch.equal(res.float_tensors["model.layers.0.self_attn.q_proj.weight"],
                       orig["model.layers.0.self_attn.q_proj.weight"])
    ids = torch.randint(0, 128, (2, 30), generator=g)
    with torch.no_grad():
        want = hf(input_ids=ids).logits
        hf.load_state_dict(res.float_tensors, strict=False)
        got = hf(input_ids=ids).logits
    assert (got - want).abs().max() / want.abs().max() < 1e-5


def test_residual_rotation_is_exact_and_loads_in_transformers(tmp_path):
    """The rotated (norm-folded, untied) weights give the original logits, in our runtime and in transformers."""
    from transformers import LlamaForCausalLM

    from compress.memsource import DictSource
    from compress.rotate import rotate_hf_in_place, rotate_residual
    from runtime.linear import FloatBinder
    from runtime.loaders import open_source, weight_names
    from runtime.engine import Engine
    from runtime.model import Llama

    d = make_tiny_hf(tmp_path / "tiny", heads=4, kv_heads=2, layers=2, hidden=64, inter=96, vocab=128, tied=True)
    src = open_source(d)
    assert src.config.tie_word_embeddings  # the case that must be untied
    orig = {n: src.get(n).clone() for n in weight_names(src.config)}
    rot, cfg2, r = rotate_residual(dict(orig), src.config, seed=0)
    assert not cfg2.tie_word_embeddings and r.block == 64
    assert torch.equal(rot["model.norm.weight"], torch.ones(64))
    ids = torch.randint(0, 128, (2, 30), generator=torch.Generator().manual_seed(2))
    hf = LlamaForCausalLM.from_pretrained(str(d), dtype=torch.float32).eval()
    with torch.no_grad():
        want = hf(input_ids=ids).logits
        ours = Engine(Llama(cfg2, FloatBinder(DictSource(cfg2, rot), torch.float32, "cpu")).eval(), 64).logits(ids)
        rotate_hf_in_place(hf, src.config, seed=0)
        got = hf(input_ids=ids).logits
    for y in (ours, got):
        assert (y - want).abs().max() / want.abs().max() < 1e-5
    assert (rot["model.embed_tokens.weight"] - orig["model.embed_tokens.weight"]).abs().max() > 0.1
