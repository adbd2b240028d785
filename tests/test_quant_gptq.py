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
