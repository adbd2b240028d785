"""The runtime's int8 linears agree with the fake-quantized float reference built from the same tensors,
and with the documented formula (docs/ARTIFACT.md) computed by hand."""
import pytest
import torch

from runtime.quant import qmath
from runtime.quant.linear import FakeQuantLinear, GroupLinear, Int8Linear, PartParams


def _parts(K, outs, static=True, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    ps = []
    sc, off = qmath.act_params(-1.3, 2.9)
    for o in outs:
        q, ws = qmath.quantize_weight(torch.randn(o, K, generator=g) * 0.05)
        ps.append(PartParams(q, ws, sc if static else None, off if static else None,
                             torch.randn(o, generator=g) * 0.1 if bias else None))
    return ps


@pytest.mark.parametrize("static", [True, False])
@pytest.mark.parametrize("rows", [1, 7, 40])
def test_int8_linear_matches_formula_and_reference(static, rows):
    K, outs = 96, (64, 32, 32)
    ps = _parts(K, outs, static)
    x = torch.randn(1, rows, K, generator=torch.Generator().manual_seed(1)) * 0.8 + 0.4
    y = Int8Linear(ps, outs, torch.float32, torch.device("cpu"))(x)
    ref = FakeQuantLinear(ps, outs, torch.float32)(x)
    # the documented formula, by hand
    W = torch.cat([p.quant_weight for p in ps]).double()
    ws = torch.cat([p.weight_scale for p in ps]).double()
    b = torch.cat([p.fp_bias for p in ps]).double()
    if static:
        s, o = ps[0].input_scale, ps[0].input_offset
        xq = torch.clamp(torch.round(x.double() / s) + o, -128, 127)
        hand = (xq - o) @ W.t() * (ws * s) + b
    else:
        s = x.double().abs().amax(-1, keepdim=True) / 127
        hand = torch.clamp(torch.round(x.double() / s), -127, 127) @ W.t() * (s * ws) + b
    scale = hand.abs().max()
    assert (ref.double() - hand).abs().max() / scale < 1e-5
    assert (y.double() - hand).abs().max() / scale < 1e-4
    assert y.shape == (1, rows, sum(outs))


def test_int8_linear_bf16_output():
    ps = _parts(64, (48,))
    x = torch.randn(3, 64).bfloat16()
    y = Int8Linear(ps, (48,), torch.bfloat16, torch.device("cpu"))(x)
    ref = FakeQuantLinear(ps, (48,), torch.float32)(x.float())
    assert y.dtype == torch.bfloat16
    assert (y.float() - ref).abs().max() / ref.abs().max() < 2e-2


@pytest.fixture(scope="module")
def stories_artifacts(tmp_path_factory, data_dir, stories_hf):
    """stories260K quantized twice: whole-layer fallback (L1) and linear fallback splitting fused groups."""
    from compress.quantize import QuantizeOptions, run_quantize
    hf, tok = stories_hf
    root = tmp_path_factory.mktemp("art")
    out = {}
    for name, opts in {
        "layer": QuantizeOptions(calib_samples=6, calib_seq_len=128, disable_level=1, sens_samples=1),
        "linear": QuantizeOptions(calib_samples=6, calib_seq_len=128, fallback_unit="linear",
                                  float_units=["model.layers.0.self_attn.k_proj", "model.layers.2.mlp.up_proj"]),
    }.items():
        run_quantize(hf, "stories260k", tok, root / name, data_dir / "ceval", opts, progress=False, log=lambda *a: None)
        out[name] = root / name
    return out


@pytest.mark.parametrize("kind", ["layer", "linear"])
def test_int8_model_matches_fake_quant_reference(stories_artifacts, kind):
    from runtime.engine import Engine
    from runtime.quant_loading import load_artifact_model
    from runtime.sampling import SamplingParams

    path = stories_artifacts[kind]
    m8, tok, _ = load_artifact_model(path, torch.float32, "cpu")
    mref, _, _ = load_artifact_model(path, torch.float32, "cpu", reference=True)
    if kind == "linear":  # fused groups holding float and int8 parts become GroupLinear
        assert isinstance(m8.layers[0].self_attn.qkv, GroupLinear)
        assert isinstance(m8.layers[2].mlp.gate_up, GroupLinear)
    else:
        assert sum(isinstance(l.mlp.down_proj, Int8Linear) for l in m8.layers) == len(m8.layers) - 1
        # the default anti-outlier stage rotates down_proj's input online: the kernel path runs it too
        assert all(l.mlp.down_proj.hadamard for l in m8.layers if isinstance(l.mlp.down_proj, Int8Linear))
    e8, er = Engine(m8, 256), Engine(mref, 256)
    prompts = ["Once upon a time", "Tom had a red ball", "The cat", "Lily went to the park and"]
    tight = 0
    for p in prompts:
        ids = torch.tensor([tok.encode(p)])
        a, b = e8.logits(ids), er.logits(ids)
        rel = ((a - b).abs().max() / b.abs().max()).item()
        # The reference accumulates in float, the kernel in int32: a value lying on a rounding
        # boundary can land one int8 code apart in a later layer, and with a range kept wide for
        # massive-activation tokens one code is a visible step. Allow that, but no more.
        assert rel < 2e-2, (p, rel)
        tight += rel < 1e-3
        g8 = e8.generate(ids, None, 24, SamplingParams(), ignore_eos=True).output_ids
        gr = er.generate(ids, None, 24, SamplingParams(), ignore_eos=True).output_ids
        assert torch.equal(g8, gr), p
    assert tight >= len(prompts) - 1, "more than one prompt differs beyond float rounding"
