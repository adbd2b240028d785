"""The streamed pruning half of `compress sparse` (one decoder layer in memory) against the whole-model
prune_model on the same transformers model: same pruned weights, same reports, same dense-layer choice.

Both run the same per-layer step (driver.prune_layer) over the same module class, dtype, inputs and keyword
arguments, one sequence per call, so the arithmetic is the same operation for operation: equality is exact
(torch.equal), reconstruction (Adam, float32) included."""
import pytest
import torch

from compress.sparse.driver import LINEARS, PruneConfig, prune_model
from compress.sparse.streamed import HEAD_FILE, INDEX, layer_file, prune_streamed


def _tiny(tmp_path, layers=3):
    from conftest import make_tiny_hf

    return make_tiny_hf(tmp_path / "tiny", layers=layers, hidden=64, inter=128, heads=4, kv_heads=2)


def _hf(d, dtype=torch.float32):
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(str(d), dtype=dtype).eval()


def _samples(n=4, t=32, seed=0):
    return torch.randint(0, 256, (n, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method,pattern,epochs", [("wanda", "unstructured", 2), ("sparsegpt", "2:4", 0),
                                                   ("magnitude", "unstructured", 0), ("wanda", "2:4", 1)])
def test_streamed_pruning_equals_the_whole_model_path(tmp_path, method, pattern, epochs):
    from runtime.loaders import open_source

    d = _tiny(tmp_path)
    samples = _samples()
    cfg = PruneConfig(0.5, pattern, method, dense_layers=(1,), reconstruct_epochs=epochs, reconstruct_lr=3e-3)
    ref_model = _hf(d)
    ref = prune_model(ref_model, samples, cfg, progress=False)
    out = tmp_path / "pruned"
    rep = prune_streamed(open_source(d), d, samples, cfg, out_dir=out, progress=False)
    assert (out / INDEX).is_file() and (out / HEAD_FILE).is_file() and (out / layer_file(2)).is_file()
    pruned = open_source(out)  # the pruned HF directory, read back as every later stage reads it
    src = open_source(d)
    moved = 0
    for li, layer in enumerate(ref_model.model.layers):
        for n in LINEARS:
            name = f"model.layers.{li}.{n}.weight"
            w = pruned.get(name)
            assert torch.equal(w, layer.get_submodule(n).weight.detach()), name
            if li != 1:
                assert (w == 0).sum(1).eq(w.shape[1] // 2).all(), name
            moved += not torch.equal(w, src.get(name))
    assert moved == 2 * 7  # every pruned linear changed, the dense layer's did not (it is compared above)
    for name in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
                 "model.layers.2.input_layernorm.weight"):
        assert torch.equal(pruned.get(name), src.get(name)), name
    assert rep.per_module == ref.per_module
    assert rep.reconstruction == ref.reconstruction and (len(rep.reconstruction) == 2) == (epochs > 0)


def test_streamed_dense_layer_choice_equals_the_whole_model_measurement(tmp_path):
    from compress.sparse.stage import choose_dense_layers
    from runtime.loaders import open_source

    d = _tiny(tmp_path, layers=4)
    samples = _samples(3, 24, seed=5)
    cfg = PruneConfig(0.5, "unstructured", "wanda")
    model = _hf(d)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ref = prune_model(model, samples, cfg, progress=False, measure_only=True)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # measuring changes nothing
    want = sorted(sorted(ref.layer_error, key=lambda i: -ref.layer_error[i])[:2])
    dense, scores = choose_dense_layers(open_source(d), d, samples, cfg, 2, progress=False)
    assert scores == ref.layer_error and dense == want
    assert len(set(scores.values())) == 4  # distinct errors: the choice is decided, not a tie broken by order


def test_streamed_pruning_in_bf16_equals_the_bf16_model(tmp_path):
    """7B-size models prune in bf16 (prune_dtype): the streamed layers run in it as the bf16 model does."""
    from runtime.loaders import open_source

    d = _tiny(tmp_path)
    samples = _samples(3, 16, seed=2)
    cfg = PruneConfig(0.5, "unstructured", "wanda", reconstruct_epochs=1, reconstruct_lr=1e-3)
    model = _hf(d, torch.bfloat16)
    ref = prune_model(model, samples, cfg, progress=False)
    out = tmp_path / "pruned"
    rep = prune_streamed(open_source(d), d, samples, cfg, out_dir=out, dtype=torch.bfloat16, progress=False)
    pruned = open_source(out)
    for li, layer in enumerate(model.model.layers):
        for n in LINEARS:
            # saved in the source dtype (float32): the bf16 values exactly
            w = pruned.get(f"model.layers.{li}.{n}.weight")
            assert w.dtype == torch.float32 and torch.equal(w, layer.get_submodule(n).weight.float()), (li, n)
    assert rep.reconstruction == ref.reconstruction


def test_pruned_directory_loads_in_transformers_and_computes_the_pruned_model(tmp_path):
    from runtime.loaders import open_source

    d = _tiny(tmp_path, layers=2)
    samples = _samples(2, 16, seed=3)
    cfg = PruneConfig(0.5, "unstructured", "wanda", reconstruct_epochs=0)
    ref_model = _hf(d)
    prune_model(ref_model, samples, cfg, progress=False)
    out = tmp_path / "pruned"
    prune_streamed(open_source(d), d, samples, cfg, out_dir=out, progress=False)
    got = _hf(out)
    ids = _samples(1, 20, seed=9)
    with torch.no_grad():
        assert torch.equal(got(ids).logits, ref_model(ids).logits)
