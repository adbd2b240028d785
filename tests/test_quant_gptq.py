"""GPTQ rounding: same storage as round-to-nearest, lower output error on the inputs it was fitted to.

Reference: the plain float output error ||X W^T - X (Q s)^T||^2 computed directly on the inputs.
"""
import torch


def _data(seed=0, n=2048, k=96, out=40):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(k, k, generator=g) / k ** 0.5 + torch.eye(k)  # correlated input channels
    x = torch.randn(n, k, generator=g) @ mix
    x[:, 5] *= 20.0  # one outlier channel, as in real activations
    w = torch.randn(out, k, generator=g) * 0.05
    return x, w


def test_gptq_beats_round_to_nearest_on_output_error():
    from compress.gptq import gptq_quantize, output_error
    from runtime.quant import qmath

    x, w = _data()
    h = x.t().double() @ x.double()
    q, s = gptq_quantize(w, h, block=32)
    q0, s0 = qmath.quantize_weight(w)
    assert q.dtype == torch.int8 and int(q.abs().max()) <= 127
    assert torch.equal(s, s0)  # scales fixed up front: the artifact stores it like an RTN weight

    def direct(qq):
        return float((x @ w.t() - x @ (qq.float() * s[:, None]).t()).double().pow(2).sum())

    e_gptq, e_rtn = direct(q), direct(q0)
    assert e_gptq < 0.7 * e_rtn, (e_gptq, e_rtn)
    # the trace form used by the compressor is the same quantity
    assert abs(output_error(w, q, s, h) - e_gptq) / e_gptq < 1e-3


def test_gptq_handles_dead_channels():
    from compress.gptq import gptq_quantize

    x, w = _data(1, k=48, out=16)
    x[:, 7] = 0.0  # a channel that never fires: singular Hessian
    h = x.t().double() @ x.double()
    q, s = gptq_quantize(w, h)
    assert torch.isfinite(s).all() and int(q[:, 7].abs().max()) == 0


def test_gptq_keeps_pruned_weights_zero():
    from compress.gptq import gptq_quantize

    x, w = _data(2, k=64, out=24)
    w = w * (torch.rand(w.shape, generator=torch.Generator().manual_seed(3)) > 0.5)  # 50% pruned
    h = x.t().double() @ x.double()
    q, _ = gptq_quantize(w, h)
    assert torch.equal(q == 0, (q == 0) | (w == 0)) and bool((q[w == 0] == 0).all())


def test_gptq_artifact_runs_and_matches_reference(tmp_path, data_dir):
    """End to end on stories260K: GPTQ codes differ from round-to-nearest, the artifact records it, and the
    int8 runtime agrees with the fake-quant reference built from the same tensors."""
    from compress.quantize import QuantizeOptions, run_quantize
    from runtime.engine import Engine
    from runtime.loaders import open_source
    from runtime.loading import imported_dir, tokenizer_for
    from runtime.presets import resolve_model
    from runtime.quant import qmath
    from runtime.quant_loading import load_artifact_model
    from safetensors.torch import load_file

    ref = resolve_model("stories260k")
    hf = imported_dir(ref, progress=False)
    tok = tokenizer_for(ref, open_source(hf))
    opts = QuantizeOptions(calib_samples=4, calib_seq_len=96, gptq=True, alphas=(0.0,))
    m = run_quantize(hf, "stories260k", tok, tmp_path / "a", data_dir / "ceval", opts, progress=False,
                     log=lambda *a: None)
    assert m["method"]["gptq"] is True
    q = load_file(str(tmp_path / "a" / "quant_weight.safetensors"))
    src = open_source(tmp_path / "a" / "anti_weight")
    n = "model.layers.0.mlp.down_proj"
    rtn, _ = qmath.quantize_weight(src.get(f"{n}.weight"))
    assert not torch.equal(q[f"{n}.quant_weight"], rtn)
    m8, _, _ = load_artifact_model(tmp_path / "a", torch.float32, "cpu")
    mref, _, _ = load_artifact_model(tmp_path / "a", torch.float32, "cpu", reference=True)
    ids = torch.tensor([tok.encode("Once upon a time there was")])
    a, b = Engine(m8, 64).logits(ids), Engine(mref, 64).logits(ids)
    assert (a - b).abs().max() / b.abs().max() < 1e-3
