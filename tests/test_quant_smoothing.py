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
