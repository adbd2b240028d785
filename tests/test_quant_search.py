"""Range search and perplexity protocol, each against an independent plain computation."""
import math

import torch

from conftest import make_tiny_hf


def test_range_search_never_worse_than_minmax():
    from compress.search import search_group

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 32, generator=g)
    x[7, 3] = 14.0  # one modest outlier among many tokens: min-max wastes the grid on it
    w = torch.randn(24, 32, generator=g) * 0.1
    mm = search_group(x, w, x.amin(0), x.amax(0), "static", (0.0,), "minmax")
    se = search_group(x, w, x.amin(0), x.amax(0), "static", (0.0,), "mse")
    assert se.err < mm.err
    assert se.hi < mm.hi
    sm = search_group(x, w, x.amin(0), x.amax(0), "static", (0.0, 0.5, 0.8), "mse")
    assert sm.err <= se.err


def test_act_params_cover_range():
    from runtime.quant import qmath

    s, o = qmath.act_params(-1.0, 3.0)
    x = torch.tensor([-1.0, 0.0, 3.0])
    q = qmath.quantize_act_static(x, s, o)
    assert int(q[0]) == -128 and int(q[2]) == 127
    assert float(qmath.fake_act_static(torch.tensor([0.0]), s, o)) == 0.0  # zero is exact


def test_perplexity_matches_transformers_loss(tmp_path):
    from transformers import LlamaForCausalLM

    from runtime.loaders import open_source
    from runtime.loading import build_model
    from runtime.perplexity import perplexity, token_windows

    d = make_tiny_hf(tmp_path / "t", layers=2, vocab=96)
    ids = torch.randint(0, 96, (200,), generator=torch.Generator().manual_seed(0)).tolist()
    wins = token_windows(ids, window=64, stride=64)
    assert [w.shape[1] for w, _ in wins] == [64, 64, 64, 8]
    r = perplexity(build_model(open_source(d)), wins)
    hf = LlamaForCausalLM.from_pretrained(str(d)).eval()
    nll, n = 0.0, 0
    with torch.no_grad():
        for s in range(0, 200, 64):
            chunk = torch.tensor([ids[s:s + 64]])
            loss = hf(input_ids=chunk, labels=chunk).loss
            nll += float(loss) * (chunk.shape[1] - 1)
            n += chunk.shape[1] - 1
    assert r.tokens == n
    assert abs(r.ppl - math.exp(nll / n)) / r.ppl < 1e-4
