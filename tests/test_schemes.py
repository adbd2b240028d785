"""The scheme registry, the W8A16 scheme end to end, and the manifest-claim checks of the format module."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from runtime.errors import UserError


def test_registry_names_every_scheme_with_kinds_and_tp_layouts():
    from runtime import schemes as S

    assert {"float", "w8a8-static", "w8a8-dynamic", "w8a8-packed-sparse", "w8a16"} <= set(S.SCHEMES)
    for s in S.SCHEMES.values():
        assert set(s.required) <= set(s.kinds)
        assert all(S.KIND_LAYOUT[k] == lay for k, lay in s.kinds.items())
    assert S.SCHEMES["w8a16"].float_activations and not S.SCHEMES["w8a16"].can_pack
    assert S.SCHEMES["w8a8-static"].can_pack and not S.SCHEMES["w8a8-static"].float_activations
    with pytest.raises(UserError, match="int4-magic.*upgrade"):
        S.get("int4-magic")


@pytest.mark.parametrize("dtype,inp", [(torch.bfloat16, 128), (torch.bfloat16, 172), (torch.float32, 128)])
def test_w8a16_linear_matches_its_reference_and_the_float_weight(dtype, inp):
    from runtime.quant import qmath
    from runtime.schemes.w8a16 import W8A16Linear, W8A16Reference

    torch.manual_seed(0)
    w = torch.randn(96, inp)
    q, s = qmath.quantize_weight(w)
    x = torch.randn(5, inp).to(dtype)
    b = torch.randn(96)
    run = W8A16Linear(q, s, b, (96,), dtype, torch.device("cpu"))
    ref = W8A16Reference(q, s, b, (96,), dtype)
    assert run.weight_bytes() == 96 * inp + 96 * 4  # one byte per weight
    y, yr = run(x).float(), ref(x).float()
    yf = torch.nn.functional.linear(x.float(), w, b)  # the unquantized weight
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-5  # bf16 output rounding
    assert (y - yr).abs().max() <= tol * yr.abs().max()
    assert (yr - yf).abs().max() <= 2e-2 * yf.abs().max()  # int8 per-channel weight error only
    assert run(x.reshape(1, 5, inp)).shape == (1, 5, 96)


@pytest.fixture(scope="module")
def arts(tmp_path_factory, data_dir):
    """stories260K at L2 with float-fallback weights float and int8 (same seed, same choice)."""
    from compress.quantize import QuantizeOptions, run_quantize
    from runtime.loading import imported_dir, tokenizer_for
    from runtime.loaders import open_source
    from runtime.presets import resolve_model

    ref = resolve_model("stories260k")
    hf = imported_dir(ref, progress=False)
    tok = tokenizer_for(ref, open_source(hf))
    root = tmp_path_factory.mktemp("w8a16")
    out = {}
    for fw in ("float", "int8"):
        opts = QuantizeOptions(disable_level=2, calib_samples=8, calib_seq_len=64, fallback_weights=fw,
                               hadamard_down=2)
        run_quantize(hf, "stories260k", tok, root / fw, data_dir / "ceval", opts, progress=False, log=lambda s: None)
        out[fw] = root / fw
    return out


def test_w8a16_artifact_records_its_scheme_and_runs_float_activations(arts):
    from runtime.engine import Engine
    from runtime.quant_loading import load_artifact_model
    from runtime.schemes.w8a16 import W8A16Linear

    mf, mi = (json.loads((arts[k] / "artifact.json").read_text()) for k in ("float", "int8"))
    assert mf["fallback"]["float_units"] == mi["fallback"]["float_units"] and len(mi["fallback"]["float_units"]) == 2
    fl = {f"model.layers.{u}." for u in mi["fallback"]["float_units"]}
    for n, s in mi["schemes"].items():
        in_fallback = any(n.startswith(p) for p in fl)
        assert s == ("w8a16" if in_fallback else mf["schemes"][n])
        assert mf["schemes"][n] == ("float" if in_fallback else "w8a8-static")
    assert mi["fallback"]["weights"].startswith("int8") and mf["fallback"]["weights"] == "float"
    assert mi["format"]["version"] == "1.2.0"
    qw = load_file(str(arts["int8"] / "quant_weight.safetensors"))
    n = f"model.layers.{mi['fallback']['float_units'][0]}.mlp.down_proj"
    assert qw[f"{n}.quant_weight"].dtype == torch.int8
    assert not (set(load_file(str(arts["int8"] / "input_scale.safetensors"))) & {f"{n}.input_scale"})
    # the W8A8 tensors are the float-fallback artifact's, unchanged
    qf = load_file(str(arts["float"] / "quant_weight.safetensors"))
    assert all(torch.equal(qw[k], v) for k, v in qf.items())
    ids = torch.tensor([[1, 403, 407, 261, 378, 395, 344, 430, 270, 261, 499]])
    logits = {}
    for k in ("float", "int8"):
        model, _tok, desc = load_artifact_model(arts[k], torch.float32)
        kinds = [type(m).__name__ for m in model.modules()]
        assert ("W8A16Linear" in kinds) == (k == "int8")
        if k == "int8":
            assert "14 W8A16" in desc
        logits[k] = Engine(model, max_seq_len=32).logits(ids)[0].float()
    # only the two fallback layers' weights changed, to int8 per channel: the output barely moves
    pf, pi = logits["float"].softmax(-1), logits["int8"].softmax(-1)
    kl = float((pf * (pf.log() - pi.log())).sum(-1).mean())
    assert 0 < kl < 1e-2


def test_w8a16_is_refused_by_pack_and_cut_slices_it_like_int8(arts, tmp_path):
    from compress.cut import cut
    from compress.pack import pack_artifact
    from runtime.quant.artifact import open_artifact

    with pytest.raises(UserError, match="cannot be packed.*w8a16.*--fallback-weights float"):
        pack_artifact(arts["int8"], tmp_path / "p", progress=False)
    assert not (tmp_path / "p").exists()
    cut(str(arts["int8"]), 2, tmp_path / "c", progress=False)
    full = open_artifact(arts["int8"])
    units = [open_artifact(tmp_path / "c" / f"rank_{r}") for r in range(2)]
    u = full.manifest["fallback"]["float_units"][0]
    n = f"model.layers.{u}.mlp.down_proj"  # row-parallel: input columns split, per-channel scales whole
    assert torch.equal(torch.cat([x.tensor(f"{n}.quant_weight") for x in units], 1), full.tensor(f"{n}.quant_weight"))
    assert all(torch.equal(x.tensor(f"{n}.weight_scale"), full.tensor(f"{n}.weight_scale")) for x in units)
    assert all(x.manifest["schemes"][n] == "w8a16" for x in units)


def _tamper(src, dst, edit_manifest=None, edit_tensors=None):
    """A copy of artifact `src` changed as told, with its checksums recomputed (so only the claim is wrong)."""
    from runtime.quant.artifact import write_manifest

    shutil.copytree(src, dst)
    if edit_tensors:
        for fname, fn in edit_tensors.items():
            t = load_file(str(dst / fname))
            fn(t)
            if t:
                save_file(t, str(dst / fname), metadata={"format": "pt"})
            else:
                (dst / fname).unlink()
    m = json.loads((dst / "artifact.json").read_text())
    if edit_manifest:
        edit_manifest(m)
    m.pop("files")
    write_manifest(dst, m)
    return dst


def test_manifest_claims_are_checked_against_the_tensors(arts, tmp_path):
    from runtime.format.verify import verify_dir
    from runtime.quant_loading import load_artifact_model

    base = json.loads((arts["float"] / "artifact.json").read_text())
    u = base["fallback"]["float_units"][0]
    other = next(i for i in range(5) if i not in base["fallback"]["float_units"])
    int8_mod = f"model.layers.{other}.self_attn.q_proj"

    def float_unit_that_is_int8(m):  # name an int8 layer as a float unit
        m["fallback"]["float_units"] = sorted(m["fallback"]["float_units"] + [other])

    def scheme_float_but_int8(m):
        m["schemes"][int8_mod] = "float"

    def drop_down_rotation(t):  # the method names block-2 rotations, the tensors are gone
        for k in [k for k in t if k.startswith(f"model.layers.{other}.")]:
            del t[k]

    def rotation_off(m):  # the reverse: tensors present, the method says off
        m["method"]["hadamard_down"] = "off"
        for g in m["method"]["groups"].values():
            g["hadamard"] = 0

    cases = {
        "float_unit": (dict(edit_manifest=float_unit_that_is_int8), f"float unit {other}.*not float"),
        "scheme": (dict(edit_manifest=scheme_float_but_int8), f"{int8_mod} is named float but holds quant_weight"),
        "no_tensor": (dict(edit_tensors={"input_hadamard.safetensors": drop_down_rotation}),
                      "names an input_hadamard block 2.*no input_hadamard tensor"),
        "no_claim": (dict(edit_manifest=rotation_off), "has an input_hadamard tensor but the method says"),
    }
    for name, (edit, msg) in cases.items():
        d = _tamper(arts["float"], tmp_path / name, **edit)
        _kind, _m, problems = verify_dir(d)
        assert any(__import__("re").search(msg, p) for p in problems), (name, problems)
        with pytest.raises(UserError, match=msg):
            load_artifact_model(d, torch.float32)
    assert verify_dir(arts["float"])[2] == [] and verify_dir(arts["int8"])[2] == []
    assert u in base["fallback"]["float_units"]


def test_compress_verify_accepts_all_three_kinds(arts, tmp_path):
    from typer.testing import CliRunner

    from compress.cli import app
    from compress.cut import cut

    cut(str(arts["float"]), 2, tmp_path / "c", progress=False)
    r = CliRunner()
    res = r.invoke(app, ["verify", str(tmp_path / "c")])
    assert res.exit_code == 0 and "OK (cut" in res.output, res.output
    res = r.invoke(app, ["verify", str(arts["int8"])])
    assert res.exit_code == 0 and "OK (artifact, llama-compress-artifact 1.2.0" in res.output, res.output
    f = tmp_path / "c" / "rank_1" / "quant_weight.safetensors"
    b = bytearray(f.read_bytes())
    b[-1] ^= 1
    f.write_bytes(bytes(b))
    res = r.invoke(app, ["verify", str(tmp_path / "c")])
    assert res.exit_code == 1 and "rank_1/quant_weight.safetensors" in res.output
    res = r.invoke(app, ["verify", str(tmp_path)])
    assert res.exit_code == 2 and "neither artifact.json nor cut.json" in res.output


def test_deq_scale_is_read_and_checked(arts, tmp_path):
    from runtime.format.verify import verify_dir

    def scale_one(t):
        k = sorted(t)[0]
        t[k] = t[k] * 1.01

    d = _tamper(arts["float"], tmp_path / "deq", edit_tensors={"deq_scale.safetensors": scale_one})
    assert any("deq_scale is not input_scale * weight_scale" in p for p in verify_dir(d)[2])
