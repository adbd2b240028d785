"""collect_stats(skip_positions=k): a float KV prefix's positions stay out of the activation statistics."""
import torch

from conftest import make_tiny_hf


def test_skip_positions_leaves_the_prefix_out(tmp_path):
    from calibration.stats import collect_stats, load_hf_model

    hf = load_hf_model(make_tiny_hf(tmp_path / "t", layers=1, vocab=64))
    g = torch.Generator().manual_seed(0)
    samples = [torch.randint(0, 64, (1, 12), generator=g) for _ in range(3)]
    seen = []  # the q_proj inputs, recorded independently of the collector
    h = hf.model.layers[0].self_attn.q_proj.register_forward_pre_hook(lambda m, a: seen.append(a[0][0].clone()))
    st = collect_stats(hf, samples, progress=False, skip_positions=2)["model.layers.0.self_attn.q_proj"]
    h.remove()
    rows = torch.cat([x[2:] for x in seen])
    assert st.tokens == 3 * 10
    assert torch.equal(st.ch_max, rows.amax(0)) and torch.equal(st.ch_min, rows.amin(0))
    full = collect_stats(hf, samples, progress=False)["model.layers.0.self_attn.q_proj"]
    assert full.tokens == 36 and not torch.equal(full.ch_max, st.ch_max)
