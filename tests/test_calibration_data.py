"""Calibration samples (C-Eval and plain text) and the activation statistics collector."""
import torch

from runtime.tokenizer import load_tokenizer


def _tok(data_dir):
    return load_tokenizer(data_dir / "stories260K" / "tok512.model")


def test_ceval_samples_seeded(data_dir):
    from calibration.data import build_calibration

    tok = _tok(data_dir)
    a = build_calibration(data_dir / "ceval", tok, 5, 64, seed=0)
    b = build_calibration(data_dir / "ceval", tok, 5, 64, seed=0)
    c = build_calibration(data_dir / "ceval", tok, 5, 64, seed=1)
    assert a.source == "ceval" and len(a.samples) == 5
    assert all(s.shape == (1, 64) for s in a.samples)
    assert a.tokens_sha256 == b.tokens_sha256 and a.tokens_sha256 != c.tokens_sha256
    assert a.sha256 == c.sha256  # same files read


def test_text_samples(data_dir):
    from calibration.data import build_calibration

    cs = build_calibration(data_dir / "wikitext-2-raw" / "wiki.valid.raw", _tok(data_dir), 3, 100, seed=0)
    assert cs.source == "text" and cs.n_tokens == 300


def test_stats_exact_range_and_sampled_rows():
    from calibration.stats import StatsCollector

    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(2, 50, 16, generator=g) * torch.linspace(0.1, 5, 16) for _ in range(4)]
    col = StatsCollector(max_rows=30, seed=0)
    for x in xs:
        col.observe("k", x)
    st = col.stats["k"]
    allx = torch.cat([x.reshape(-1, 16) for x in xs])
    assert torch.equal(st.ch_min, allx.amin(0)) and torch.equal(st.ch_max, allx.amax(0))
    assert st.rows.shape == (30, 16) and st.tokens == 400
    # every sampled row is a real row of the input
    assert all(bool((allx == r).all(1).any()) for r in st.rows)
    assert len({tuple(r.tolist()) for r in st.rows}) == 30  # without replacement
