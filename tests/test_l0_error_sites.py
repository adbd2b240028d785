"""benchmarks/l0_error_sites.py: its switches compute what they claim, against independent float references."""
import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def _sites():
    spec = importlib.util.spec_from_file_location("l0_error_sites", ROOT / "benchmarks" / "l0_error_sites.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def art(tmp_path_factory, data_dir, stories_hf):
    from compress.quantize import QuantizeOptions, run_quantize

    hf, tok = stories_hf
    out = tmp_path_factory.mktemp("sites") / "art"
    run_quantize(hf, "stories260k", tok, out, data_dir / "ceval",
                 QuantizeOptions(calib_samples=4, calib_seq_len=64, sens_samples=1), progress=False,
                 log=lambda *a: None)
    return out


def test_switch_modes_match_references(art):
    from runtime.quant import qmath
    from runtime.quant.linear import FakeQuantLinear
    from runtime.quant_loading import load_artifact_model

    sites = _sites()
    model, _, _ = load_artifact_model(art, reference=True)
    fqs = {n: m for n, m in model.named_modules() if isinstance(m, FakeQuantLinear)}
    by_group = sites.install(model)
    switches = [s for ss in by_group.values() for s in ss]
    assert len(switches) == len(fqs) == 4 * model.config.num_hidden_layers
    assert any(s.fq.hadamard for s in by_group["down"])  # the rotated case is covered
    g = torch.Generator().manual_seed(0)
    for s in switches:
        fq = s.fq
        x = torch.randn(2, 5, fq.float_weight.shape[1], generator=g) * 3
        assert torch.allclose(s(x), fq(x), atol=1e-5)  # the artifact's computation, unchanged
        s.act, s.weight = "float", "float"
        assert torch.allclose(s(x), F.linear(x, fq.float_weight.float()), atol=1e-4, rtol=1e-4)
        s.act, s.weight = "float", "int8"  # int8 weights alone: error of the weights only
        xr = qmath.hadamard(x, fq.hadamard) if fq.hadamard else x
        assert torch.allclose(s(x), F.linear(xr, fq.w_dq), atol=1e-4, rtol=1e-4)
        s.reset()
        s.pos0 = "float"  # position 0 unquantized, the others as the artifact
        y = s(x)
        assert torch.allclose(y[:, 1:], fq(x)[:, 1:], atol=1e-5)
        assert torch.allclose(y[:, :1], F.linear(xr[:, :1], fq.w_dq), atol=1e-4, rtol=1e-4)
        s.reset()


def test_configure_variants(art):
    from runtime.quant_loading import load_artifact_model

    sites = _sites()
    model, _, _ = load_artifact_model(art, reference=True)
    by_group = sites.install(model)
    sites.configure(by_group, "down-dynamic")
    assert {s.act for s in by_group["down"]} == {"dynamic"} and {s.act for s in by_group["qkv"]} == {"static"}
    sites.configure(by_group, "weights-only")
    assert {s.act for ss in by_group.values() for s in ss} == {"float"}
    sites.configure(by_group, "all-int8")
    assert {(s.act, s.weight) for ss in by_group.values() for s in ss} == {("static", "int8")}
    with pytest.raises(SystemExit, match="unknown variant"):
        sites.configure(by_group, "mlp-float")
