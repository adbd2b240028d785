"""Pruning masks, scores and the layer-by-layer driver against plain reference computations."""
import itertools

import pytest
import torch

from compress.sparse.masks import check_pattern, nm_mask, parse_pattern, row_mask
from compress.sparse.scores import wanda_score
from compress.sparse.sparsegpt import sparsegpt_prune
from runtime.errors import UserError


@pytest.mark.parametrize("sparsity", [0.5, 0.3, 0.75])
def test_row_mask_prunes_exactly_the_lowest_scores_per_row(sparsity):
    g = torch.Generator().manual_seed(0)
    score = torch.rand(7, 130, generator=g)
    mask = row_mask(score, sparsity)
    k = round(130 * sparsity)
    for r in range(7):  # reference: the k smallest scores of the row, found by a plain Python sort
        lowest = sorted(range(130), key=lambda j: score[r, j].item())[:k]
        expect = torch.ones(130, dtype=torch.bool)
        expect[lowest] = False
        assert torch.equal(mask[r], expect)
    assert (~mask).sum(1).eq(k).all()


def test_nm_mask_keeps_the_two_largest_of_every_four():
    g = torch.Generator().manual_seed(1)
    score = torch.rand(5, 64, generator=g)
    mask = nm_mask(score, 2, 4)
    for r, grp in itertools.product(range(5), range(16)):
        s = score[r, 4 * grp:4 * grp + 4].tolist()
        top = sorted(range(4), key=lambda j: -s[j])[:2]
        assert sorted(torch.nonzero(mask[r, 4 * grp:4 * grp + 4]).flatten().tolist()) == sorted(top)
    assert check_pattern(torch.rand(5, 64) * mask, 2, 4)
    assert not check_pattern(torch.ones(5, 64), 2, 4)


def test_bad_patterns_raise_user_errors():
    for bad in ("2-4", "4:2", "0:4", "dense"):
        with pytest.raises(UserError):
            parse_pattern(bad)
    with pytest.raises(UserError):
        nm_mask(torch.rand(2, 6), 2, 4)
    assert parse_pattern("2:4") == (2, 4) and parse_pattern("unstructured") is None


@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_sparsegpt_is_exact_in_sparsity_and_beats_mask_only_pruning(nm):
    g = torch.Generator().manual_seed(2)
    # correlated inputs with uneven channel scales: where the weight update has something to fix
    X = torch.randn(2048, 96, generator=g) @ torch.randn(96, 96, generator=g) * torch.rand(96, generator=g) * 3
    W = torch.randn(48, 96, generator=g)
    H = X.t() @ X
    Wp = sparsegpt_prune(W, H, 0.5, nm, blocksize=32)
    norm = (X * X).sum(0).sqrt()
    wanda_mask = row_mask(wanda_score(W, norm), 0.5) if nm is None else nm_mask(wanda_score(W, norm), *nm)
    assert (Wp == 0).sum(1).eq(48).all()
    if nm:
        assert check_pattern(Wp, *nm)
    err_sgpt = ((X @ (Wp - W).t()) ** 2).sum()
    err_wanda = ((X @ (W * wanda_mask - W).t()) ** 2).sum()
    err_own_mask = ((X @ (W * (Wp != 0) - W).t()) ** 2).sum()
    assert err_sgpt < err_wanda  # a better mask and update than Wanda's mask alone
    assert err_sgpt < 0.8 * err_own_mask  # the weight update itself removes a good part of the error


def _tiny(tmp_path):
    from conftest import make_tiny_hf
    from transformers import LlamaForCausalLM

    d = make_tiny_hf(tmp_path / "tiny", layers=3, hidden=64, inter=128, heads=4, kv_heads=2)
    return LlamaForCausalLM.from_pretrained(str(d)).eval()


@pytest.mark.parametrize("method,pattern", [("wanda", "unstructured"), ("wanda", "2:4"), ("magnitude", "unstructured"),
                                            ("sparsegpt", "2:4")])
def test_driver_hits_the_request_in_every_layer(tmp_path, method, pattern):
    from compress.sparse.driver import LINEARS, PruneConfig, prune_model

    m = _tiny(tmp_path)
    dense_before = m.model.layers[1].mlp.down_proj.weight.clone()
    samples = torch.randint(0, 256, (3, 32), generator=torch.Generator().manual_seed(0))
    rep = prune_model(m, samples, PruneConfig(0.5, pattern, method, dense_layers=(1,)), progress=False)
    for li, layer in enumerate(m.model.layers):
        for n in LINEARS:
            w = layer.get_submodule(n).weight
            name = f"model.layers.{li}.{n}"
            if li == 1:
                assert rep.per_module[name]["pattern"] == "dense"
                continue
            assert (w == 0).sum(1).eq(w.shape[1] // 2).all(), name  # exact per row, hence per layer
            assert rep.per_module[name]["sparsity"] == 0.5
            if pattern == "2:4":
                assert check_pattern(w, 2, 4)
    assert torch.equal(m.model.layers[1].mlp.down_proj.weight, dense_before)


def test_wanda_uses_the_input_norms_of_the_real_activations(tmp_path):
    """Layer 0's q_proj input is input_layernorm(embeddings): compute its norm directly and compare masks."""
    from compress.sparse.driver import PruneConfig, prune_model

    m = _tiny(tmp_path)
    samples = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(3))
    W = m.model.layers[0].self_attn.q_proj.weight.detach().clone()
    with torch.no_grad():
        x = m.model.layers[0].input_layernorm(m.model.embed_tokens(samples)).reshape(-1, 64)
    expect = W * row_mask(W.abs() * x.pow(2).sum(0).sqrt()[None], 0.5)
    prune_model(m, samples, PruneConfig(0.5, "unstructured", "wanda", reconstruct_epochs=0), progress=False)
    assert torch.equal(m.model.layers[0].self_attn.q_proj.weight, expect)
    # and it differs from magnitude pruning (otherwise the test proves nothing)
    assert not torch.equal(expect, W * row_mask(W.abs(), 0.5))


@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
def test_reconstruction_keeps_the_mask_and_brings_layers_back_toward_the_dense_model(tmp_path, pattern):
    from compress.sparse.driver import LINEARS, PruneConfig, prune_model

    samples = torch.randint(0, 256, (4, 32), generator=torch.Generator().manual_seed(1))
    plain = _tiny(tmp_path)
    dense_logits = plain(samples).logits.detach()
    prune_model(plain, samples, PruneConfig(0.5, pattern, "wanda", reconstruct_epochs=0), progress=False)
    tuned = _tiny(tmp_path)
    rep = prune_model(tuned, samples, PruneConfig(0.5, pattern, "wanda", reconstruct_epochs=8, reconstruct_lr=3e-3),
                      progress=False)
    for li in range(3):
        before, after = rep.reconstruction[li]
        assert after < before, li  # measured on the layer's own output against the dense model's
        for n in LINEARS:
            a, b = plain.model.layers[li].get_submodule(n).weight, tuned.model.layers[li].get_submodule(n).weight
            assert (b == 0).sum(1).eq(b.shape[1] // 2).all(), (li, n)  # still exactly the request in every row
            if li == 0:  # same inputs, same mask: only the kept weights moved (later layers see other inputs)
                assert torch.equal(a == 0, b == 0) and not torch.equal(a, b), n
            if pattern == "2:4":
                assert check_pattern(b, 2, 4)
    err = lambda m: float(((m(samples).logits.detach() - dense_logits) ** 2).mean())  # noqa: E731
    assert err(tuned) < err(plain)  # and the whole model's logits come closer to the dense model's
