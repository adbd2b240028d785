"""The artifact contract: byte-identical reruns, verify catches damage, loaders refuse what they cannot read."""
import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from runtime.errors import UserError


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, data_dir, stories_hf):
    from compress.quantize import QuantizeOptions, run_quantize
    hf, tok = stories_hf
    root = tmp_path_factory.mktemp("det")
    outs = []
    for name in ("a", "b"):
        opts = QuantizeOptions(calib_samples=4, calib_seq_len=96, disable_level=1, sens_samples=1, seed=3)
        run_quantize(hf, "stories260k", tok, root / name, data_dir / "ceval", opts, progress=False, log=lambda *a: None)
        outs.append(root / name)
    return outs


def _files(d):
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())


def test_same_inputs_same_bytes(two_runs):
    a, b = two_runs
    assert _files(a) == _files(b)
    for rel in _files(a):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    m = json.loads((a / "artifact.json").read_text())
    assert m["format"]["name"] == "llama-compress-artifact"
    assert m["fallback"]["disable_level"] == "L1" and len(m["fallback"]["float_units"]) == 1
    assert len(m["fallback"]["scores"]) == 5  # every layer scored
    assert set(m["files"]) == set(_files(a)) - {"artifact.json"}


def test_anti_weight_loads_in_transformers(two_runs):
    from transformers import LlamaForCausalLM

    m = LlamaForCausalLM.from_pretrained(str(two_runs[0] / "anti_weight"))
    assert m.config.num_hidden_layers == 5


def _copy(src, tmp_path):
    d = tmp_path / "art"
    shutil.copytree(src, d)
    return d


def test_verify_catches_flipped_byte_and_missing_file(two_runs, tmp_path):
    from compress.cli import app
    from runtime.quant.artifact import verify

    d = _copy(two_runs[0], tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["verify", str(d)]).exit_code == 0
    f = d / "quant_weight.safetensors"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))
    assert verify(d) == ["checksum mismatch in quant_weight.safetensors"]
    r = runner.invoke(app, ["verify", str(d)])
    assert r.exit_code == 1
    (d / "deq_scale.safetensors").unlink()
    assert "missing file deq_scale.safetensors" in verify(d)
    from runtime.quant_loading import load_artifact_model

    with pytest.raises(UserError, match="checksum"):
        load_artifact_model(d, torch.float32, "cpu")


def test_higher_major_version_is_refused(two_runs, tmp_path):
    from runtime.quant_loading import load_artifact_model

    d = _copy(two_runs[0], tmp_path)
    m = json.loads((d / "artifact.json").read_text())
    m["format"]["version"] = "2.0.0"
    (d / "artifact.json").write_text(json.dumps(m))
    with pytest.raises(UserError, match="upgrade"):
        load_artifact_model(d, torch.float32, "cpu")
    m["format"]["version"] = "1.7.0"  # a newer minor version only adds keys: still read
    (d / "artifact.json").write_text(json.dumps(m))
    load_artifact_model(d, torch.float32, "cpu")
    # ... unless it brings a tensor kind this reader does not know (ignoring it would be wrong math)
    from safetensors.torch import save_file

    from runtime.quant.artifact import sha256_file
    save_file({"model.layers.0.mlp.down_proj.future_thing": torch.ones(1)}, str(d / "future_thing.safetensors"))
    m["files"]["future_thing.safetensors"] = {"sha256": sha256_file(d / "future_thing.safetensors"),
                                              "bytes": (d / "future_thing.safetensors").stat().st_size}
    (d / "artifact.json").write_text(json.dumps(m))
    with pytest.raises(UserError, match="future_thing.safetensors.*upgrade"):
        load_artifact_model(d, torch.float32, "cpu")
