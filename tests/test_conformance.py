"""The conformance kit (docs/conformance/): every reader we have passes it, and readers that break the
spec in the ways an independent implementation did (multiply by the reciprocal, round half away from zero,
round after adding the offset, ignore input_hadamard, another per-token scale) fail it."""
import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from runtime.quant import qmath

REPO = Path(__file__).resolve().parent.parent
KIT = REPO / "docs" / "conformance"


def _check_module():
    spec = importlib.util.spec_from_file_location("conformance_check", KIT / "check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


check = _check_module()


def _vectors() -> dict[str, torch.Tensor]:
    return load_file(str(KIT / "quant_vectors.safetensors"))


def _codes(static_fn, dynamic_fn) -> dict[str, torch.Tensor]:
    v = _vectors()
    out = {}
    for n in ("a", "b"):
        s, o = float(v[f"static_{n}.input_scale"]), float(v[f"static_{n}.input_offset"])
        out[f"static_{n}.codes"] = static_fn(v[f"static_{n}.x"], s, o)
    out["dynamic.codes"] = dynamic_fn(v["dynamic.x"])
    return {k: t.numpy() for k, t in out.items()}


def test_qmath_reproduces_every_quantizer_vector():
    v = _vectors()
    got = _codes(qmath.quantize_act_static,
                 lambda x: qmath.act_codes_dynamic(x, qmath.dynamic_scales(x)).to(torch.int8))
    assert check.check_codes(got, {k: t.numpy() for k, t in v.items()}) == []
    assert torch.equal(qmath.dynamic_scales(v["dynamic.x"]), v["dynamic.scale"])
    block = int(v["hadamard.block"])
    assert (qmath.hadamard(v["hadamard.x"], block) - v["hadamard.y"]).abs().max() < 1e-6


def test_quantizer_vectors_equal_an_independent_numpy_reference():
    """IEEE float32 division and rint (ties to even) in numpy, not torch: the vectors are the spec's, not
    an artefact of torch's kernels."""
    import numpy as np

    v = {k: t.numpy() for k, t in _vectors().items()}
    for n in ("a", "b"):
        x = v[f"static_{n}.x"].astype(np.float32)
        s = np.float32(v[f"static_{n}.input_scale"][0])
        o = np.float32(v[f"static_{n}.input_offset"][0])
        q = np.clip(np.rint(np.divide(x, s, dtype=np.float32)) + o, -128, 127)
        assert (q.astype(np.int64) == v[f"static_{n}.codes"].astype(np.int64)).all()
    x = v["dynamic.x"].astype(np.float32)
    s = np.maximum(np.divide(np.abs(x).max(-1, keepdims=True), np.float32(127), dtype=np.float32), np.float32(1e-8))
    assert (s == v["dynamic.scale"]).all()
    q = np.clip(np.rint(np.divide(x, s, dtype=np.float32)), -127, 127)
    assert (q.astype(np.int64) == v["dynamic.codes"].astype(np.int64)).all()


def _clamp(q, lo=-128, hi=127):
    return torch.clamp(q, lo, hi).to(torch.int8)


@pytest.mark.parametrize("variant", ["reciprocal", "half-away", "round-after-offset", "dynamic-127.5"])
def test_quantizer_vectors_catch_each_known_deviation(variant):
    def dyn(x):
        return qmath.act_codes_dynamic(x, qmath.dynamic_scales(x)).to(torch.int8)

    static = qmath.quantize_act_static
    if variant == "reciprocal":
        def static(x, s, o):
            return _clamp(torch.round(x * (1.0 / torch.tensor(s, dtype=torch.float32))) + o)
    elif variant == "half-away":
        def static(x, s, o):
            r = x / s
            return _clamp(torch.sign(r) * torch.floor(r.abs() + 0.5) + o)
    elif variant == "round-after-offset":
        def static(x, s, o):
            return _clamp(torch.round(x / s + o))
    else:
        def dyn(x):
            s = x.abs().amax(-1, keepdim=True).clamp(min=1e-8) / 127.5
            return _clamp(torch.round(x / s))
    problems = check.check_codes(_codes(static, dyn), {k: t.numpy() for k, t in _vectors().items()})
    assert problems, f"the vectors do not distinguish {variant}"


def test_kit_artifacts_are_intact(conformance_kit):
    from runtime.quant.artifact import verify

    for name in ("static", "dynamic-hadamard"):
        assert verify(conformance_kit / name / "artifact") == []


def _expected(name):
    e = load_file(str(KIT / name / "expected.safetensors"))
    return e["input_ids"], e["logits"]


def _our_logits(path: Path, ids: torch.Tensor, reference: bool = False, model=None) -> torch.Tensor:
    from runtime.engine import Engine
    from runtime.quant_loading import load_artifact_model

    if model is None:
        model, _, _ = load_artifact_model(path, torch.float32, "cpu", reference=reference)
    with torch.no_grad():
        return Engine(model, 128, 0, [2]).logits(ids, None, False).float()


@pytest.mark.parametrize("name", ["static", "dynamic-hadamard"])
@pytest.mark.parametrize("reference", [False, True], ids=["int8-kernels", "fake-quant"])
def test_our_runtime_conforms(name, reference, conformance_kit):
    ids, exp = _expected(name)
    got = _our_logits(conformance_kit / name / "artifact", ids, reference)
    assert check.check_logits(exp.numpy(), got.numpy()) == []


def test_check_rejects_a_reader_that_ignores_input_hadamard(conformance_kit):
    from runtime.quant.artifact import open_artifact
    from runtime.quant_loading import load_artifact_model

    path = conformance_kit / "dynamic-hadamard" / "artifact"
    assert open_artifact(path).has("model.layers.0.mlp.down_proj.input_hadamard")
    model, _, _ = load_artifact_model(path)
    for layer in model.layers:  # a reader that skips the rotation (it still multiplies by W H)
        layer.mlp.down_proj.hadamard = None
    ids, exp = _expected("dynamic-hadamard")
    assert check.check_logits(exp.numpy(), _our_logits(path, ids, model=model).numpy())


def test_check_rejects_another_per_token_scale(monkeypatch, conformance_kit):
    ids, exp = _expected("dynamic-hadamard")
    monkeypatch.setattr(qmath, "dynamic_scales",
                        lambda x: (x.float().abs().amax(-1, keepdim=True) / 127.5).clamp(min=1e-8))
    got = _our_logits(conformance_kit / "dynamic-hadamard" / "artifact", ids)
    assert check.check_logits(exp.numpy(), got.numpy())


def test_check_rejects_shape_and_nan():
    ids, exp = _expected("static")
    assert check.check_logits(exp.numpy(), exp[:, :-1].numpy())
    bad = exp.clone()
    bad[0, 3, 7] = float("nan")
    assert check.check_logits(exp.numpy(), bad.numpy())


def test_compressed_tensors_export_through_transformers_conforms(tmp_path, conformance_kit):
    """The export, loaded by transformers with the compressed-tensors package and nothing else."""
    from transformers import AutoModelForCausalLM

    from compress.export import export_artifact

    art = conformance_kit / "static" / "artifact"
    export_artifact(art, "compressed-tensors", tmp_path / "ct")
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path / "ct")).eval()
    ids, exp = _expected("static")
    with torch.no_grad():
        got = hf(ids).logits.float()
        plain = AutoModelForCausalLM.from_pretrained(str(art / "anti_weight")).eval()(ids).logits.float()
    assert check.check_logits(exp.numpy(), got.numpy()) == []
    # it really runs quantized: the float model is far outside what the check allows
    assert check.check_logits(exp.numpy(), plain.numpy())


def test_msmodelslim_export_read_back_conforms(tmp_path, conformance_kit):
    from compress.export import export_artifact
    from compress.export.msmodelslim_reader import read_msmodelslim
    from compress.memsource import DictSource, DictTensors
    from runtime.model import Llama
    from runtime.quant.binder import QuantBinder

    export_artifact(conformance_kit / "static" / "artifact", "msmodelslim", tmp_path / "ms")
    cfg, floats, quant = read_msmodelslim(tmp_path / "ms")
    model = Llama(cfg, QuantBinder(DictSource(cfg, floats), DictTensors(quant))).eval()
    ids, exp = _expected("static")
    assert check.check_logits(exp.numpy(), _our_logits(Path(), ids, model=model).numpy()) == []


# The repository never holds byte copies of the shared data (../shared): the kit names the files it takes
# from there (shared_files.json) and materialize.py places them, verified, into a working copy.

def _materialize_module():
    spec = importlib.util.spec_from_file_location("conformance_materialize", KIT / "materialize.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _committed_files() -> list[Path]:
    import subprocess

    r = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    return [REPO / f for f in r.stdout.decode().split("\0") if f and (REPO / f).is_file()]


def test_kit_holds_no_copy_of_shared_files(data_dir):
    from runtime.quant.artifact import read_manifest, sha256_file

    shared = {sha256_file(p): p for p in data_dir.rglob("*") if p.is_file()}
    assert len(shared) > 10, f"too few shared files under {data_dir} for the check to mean anything"
    mat = _materialize_module()
    recorded = {read_manifest(KIT / art)["files"][rel]["sha256"]: f"{art}/{rel}"
                for art, files in mat.shared_files().items() for rel in files}
    committed = _committed_files()
    assert any(p.suffix == ".safetensors" and "conformance" in p.parts for p in committed)
    copies = [f"{p.relative_to(REPO)} == {shared.get(h) or recorded[h]}" for p in committed
              if (h := sha256_file(p)) in shared or h in recorded]
    assert copies == [], "committed byte copies of shared files (reference them instead)"


def test_committed_kit_lacks_only_the_shared_files():
    from runtime.quant.artifact import verify

    for art, files in _materialize_module().shared_files().items():
        assert verify(KIT / art) == [f"missing file {rel}" for rel in sorted(files)]


def test_materialize_places_the_shared_tokenizer(conformance_kit, data_dir):
    from runtime.quant.artifact import sha256_file
    from runtime.tokenizer import load_tokenizer

    for name in ("static", "dynamic-hadamard"):
        tok = conformance_kit / name / "artifact" / "anti_weight" / "tokenizer.model"
        assert sha256_file(tok) == sha256_file(data_dir / "stories260K" / "tok512.model")
    # the kit's input ids (scripts/make_conformance_kit.py TEXTS[0]) were made with this tokenizer
    ids, _ = _expected("static")
    enc = load_tokenizer(conformance_kit / "static" / "artifact" / "anti_weight").encode(
        "Once upon a time, there was a little girl named Lily.")
    assert len(enc) > 10 and ids[0, :len(enc)].tolist() == enc


def test_materialize_refuses_missing_shared_data(tmp_path, monkeypatch):
    from runtime.errors import UserError

    monkeypatch.setenv("LLAMA_COMPRESS_SHARED", str(tmp_path / "nowhere"))  # honoured by shared_dir()
    with pytest.raises(UserError) as e:
        _materialize_module().materialize(tmp_path / "kit")
    assert "tok512.model" in str(e.value) and "LLAMA_COMPRESS_SHARED" in str(e.value)
    assert not (tmp_path / "kit").exists()


def test_materialize_refuses_a_differing_shared_file(tmp_path, data_dir):
    from runtime.errors import UserError

    fake = tmp_path / "shared" / "data" / "stories260K"
    fake.mkdir(parents=True)
    b = bytearray((data_dir / "stories260K" / "tok512.model").read_bytes())
    b[-1] ^= 1
    (fake / "tok512.model").write_bytes(bytes(b))
    with pytest.raises(UserError, match="sha256.*artifact.json records"):
        _materialize_module().materialize(tmp_path / "kit", shared=tmp_path / "shared")
    assert not (tmp_path / "kit").exists()


def test_standalone_check_needs_no_shared_data(tmp_path):
    """check.py on the committed kit, with no shared folder and no repository code on the path."""
    import os
    import subprocess
    import sys

    from safetensors.torch import save_file

    ids, exp = _expected("static")
    save_file({"logits": exp.contiguous()}, str(tmp_path / "logits.safetensors"))
    v = _vectors()
    save_file({k: v[k] for k in v if k.endswith(".codes")}, str(tmp_path / "codes.safetensors"))
    env = {k: val for k, val in os.environ.items() if k != "PYTHONPATH"}
    env["LLAMA_COMPRESS_SHARED"] = str(tmp_path / "nowhere")
    cmd = [sys.executable, str(KIT / "check.py"), str(KIT / "static"), str(tmp_path / "logits.safetensors"),
           "--codes", str(tmp_path / "codes.safetensors")]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "conforms" in r.stdout, r.stdout + r.stderr
    bad = exp.clone()
    bad[1, 5] += 1.0
    save_file({"logits": bad.contiguous()}, str(tmp_path / "logits.safetensors"))
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "FAIL" in r.stdout, r.stdout + r.stderr
