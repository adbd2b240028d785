"""`compress export`: the compressed-tensors checkpoint against the compressed-tensors library's own schema and
transformers' loader (greedy tokens equal `runtime run --quant`), the msModelSlim layout against its documented
schema and a round trip into our reader, and one clear error per unexportable input; outputs are atomic."""
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from compress.cli import app
from compress.export import export_artifact
from runtime.errors import UserError
from runtime.quant.artifact import MANIFEST, open_artifact, write_manifest

REPO = Path(__file__).resolve().parent.parent


# the kit's artifacts, made complete by tests/conftest.py's conformance_kit (the committed kit has no
# tokenizer.model: it comes from the shared data folder)
@pytest.fixture(scope="session")
def static(conformance_kit) -> Path:
    return conformance_kit / "static" / "artifact"


@pytest.fixture(scope="session")
def hadamard(conformance_kit) -> Path:
    return conformance_kit / "dynamic-hadamard" / "artifact"


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as h:
        return {k: h.get_tensor(k) for k in h.keys()}


@pytest.fixture(scope="module")
def ct_dir(tmp_path_factory, static) -> Path:
    out = tmp_path_factory.mktemp("ct") / "ct"
    export_artifact(static, "compressed-tensors", out)
    return out


@pytest.fixture(scope="module")
def ms_dir(tmp_path_factory, static) -> Path:
    out = tmp_path_factory.mktemp("ms") / "ms"
    export_artifact(static, "msmodelslim", out)
    return out


def test_compressed_tensors_config_is_valid_for_the_library(ct_dir, static):
    from compressed_tensors.quantization import QuantizationConfig

    qc = json.loads((ct_dir / "config.json").read_text())["quantization_config"]
    parsed = QuantizationConfig.model_validate(qc)
    g = parsed.config_groups["group_0"]
    assert (g.weights.num_bits, g.weights.strategy, g.weights.symmetric) == (8, "channel", True)
    ia = g.input_activations
    assert (ia.num_bits, ia.strategy, ia.symmetric, ia.dynamic) == (8, "tensor", False, False)
    m = open_artifact(static).manifest
    floats = sorted(k for k, v in m["modules"].items() if v == "float")
    assert floats and sorted(parsed.ignore) == sorted(["lm_head"] + floats)


def test_compressed_tensors_tensors_are_ours(ct_dir, static):
    art = open_artifact(static)
    t = _tensors(ct_dir / "model.safetensors")
    n = "model.layers.0.self_attn.q_proj"
    assert t[f"{n}.weight"].dtype == torch.int8 and torch.equal(t[f"{n}.weight"], art.tensor(f"{n}.quant_weight"))
    assert torch.equal(t[f"{n}.weight_scale"].reshape(-1), art.tensor(f"{n}.weight_scale"))
    assert torch.equal(t[f"{n}.input_scale"], art.tensor(f"{n}.input_scale"))
    assert t[f"{n}.input_zero_point"].dtype == torch.int8
    assert float(t[f"{n}.input_zero_point"]) == float(art.tensor(f"{n}.input_offset"))
    # a float-fallback linear stays float, under its HF name
    assert t["model.layers.2.self_attn.q_proj.weight"].dtype == torch.float32
    assert "model.layers.2.self_attn.q_proj.input_scale" not in t


def test_export_is_deterministic(ct_dir, ms_dir, tmp_path, static):
    export_artifact(static, "compressed-tensors", tmp_path / "ct")
    export_artifact(static, "msmodelslim", tmp_path / "ms")
    for a, b in ((ct_dir, tmp_path / "ct"), (ms_dir, tmp_path / "ms")):
        files = sorted(p.name for p in a.iterdir())
        assert files == sorted(p.name for p in b.iterdir())
        for f in files:
            assert (a / f).read_bytes() == (b / f).read_bytes(), f


def _until_eos(ids: list[int], eos: int) -> list[int]:
    return ids[: ids.index(eos) + 1] if eos in ids else ids


def test_transformers_greedy_tokens_equal_runtime_run(ct_dir, tmp_path, static):
    """`AutoModelForCausalLM.from_pretrained(DIR)` and nothing else, against `runtime run --quant ART` (fp32)."""
    from transformers import AutoModelForCausalLM

    from runtime.cli import app as runtime_app
    from runtime.tokenizer import load_tokenizer

    hf = AutoModelForCausalLM.from_pretrained(str(ct_dir)).eval()
    tok = load_tokenizer(static / "anti_weight")
    for i, prompt in enumerate(("Once upon a time", "The little dog")):
        out = tmp_path / f"run{i}.json"
        r = CliRunner().invoke(runtime_app, ["run", "--quant", str(static), "--prompt", prompt,
                                             "--max-new-tokens", "40", "--json", str(out)])
        assert r.exit_code == 0, r.output
        ours = _until_eos(json.loads(out.read_text())["output_ids"][0], tok.eos_id)
        ids = torch.tensor([tok.encode(prompt)])
        with torch.no_grad():
            theirs = hf.generate(ids, max_new_tokens=40, do_sample=False)[0, ids.shape[1]:].tolist()
        assert len(ours) >= 10 and _until_eos(theirs, tok.eos_id) == ours, prompt


def test_transformers_ignores_transform_config(ct_dir, tmp_path):
    """Why an online Hadamard is refused: transformers loads a transform_config without applying it."""
    from transformers import AutoModelForCausalLM

    d = tmp_path / "t"
    shutil.copytree(ct_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["quantization_config"]["transform_config"] = {"config_groups": {"down": {
        "type": "hadamard", "head_dim": 4, "apply": [{"targets": ["re:.*mlp.down_proj$"], "location": "input"}]}}}
    (d / "config.json").write_text(json.dumps(cfg))
    hf = AutoModelForCausalLM.from_pretrained(str(d))
    down = hf.model.layers[0].mlp.down_proj
    assert len(down._forward_pre_hooks) == 0 and not list(down.children())


def test_msmodelslim_matches_documented_schema(ms_dir):
    from compress.export.msmodelslim_reader import check_schema

    assert check_schema(ms_dir) == []
    desc = json.loads((ms_dir / "quant_model_description.json").read_text())
    assert desc["model_quant_type"] == "W8A8" and desc["version"] == "1.0.0"
    t = _tensors(ms_dir / "quant_model_weights.safetensors")
    n = "model.layers.0.mlp.down_proj"
    assert {k.rsplit(".", 1)[1] for k in t if k.startswith(n + ".")} == \
        {"weight", "input_scale", "input_offset", "deq_scale", "quant_bias"}
    assert t[f"{n}.weight"].dtype == torch.int8 and t[f"{n}.quant_bias"].dtype == torch.int32
    assert t[f"{n}.deq_scale"].dtype == torch.int64  # float32 model: msModelSlim's int64 bit pattern
    assert desc["model.layers.2.mlp.down_proj.weight"] == "FLOAT"
    assert json.loads((ms_dir / "config.json").read_text())["quantize"] == "w8a8"


def test_msmodelslim_schema_check_catches_damage(ms_dir, tmp_path):
    from compress.export.msmodelslim_reader import check_schema, load_tensors

    t = load_tensors(ms_dir)
    n = "model.layers.1.self_attn.k_proj"
    bad = dict(t)
    bad[f"{n}.quant_bias"] = bad[f"{n}.quant_bias"].float()
    assert any("quant_bias" in p for p in check_schema(ms_dir, bad))
    bad = {k: v for k, v in t.items() if k != f"{n}.deq_scale"}
    assert any("deq_scale" in p for p in check_schema(ms_dir, bad))
    d = tmp_path / "d"
    shutil.copytree(ms_dir, d)
    desc = json.loads((d / "quant_model_description.json").read_text())
    desc[f"{n}.weight"] = "W9A9"
    (d / "quant_model_description.json").write_text(json.dumps(desc))
    assert any("W9A9" in p for p in check_schema(d))
    with pytest.raises(UserError, match="AscendV1"):
        from compress.export.msmodelslim_reader import read_msmodelslim
        read_msmodelslim(d)


def test_msmodelslim_arithmetic_equals_ours(ms_dir, static):
    """(x_q @ W^T + quant_bias) * deq_scale, MindIE's formula, equals our (x_q - o) @ W^T * deq_scale."""
    from compress.export.msmodelslim import deq_scale_from_int64

    art = open_artifact(static)
    t = _tensors(ms_dir / "quant_model_weights.safetensors")
    n = "model.layers.3.mlp.gate_proj"
    w = t[f"{n}.weight"].double()
    o = float(t[f"{n}.input_offset"])
    deq = deq_scale_from_int64(t[f"{n}.deq_scale"])
    assert torch.equal(deq, art.tensor(f"{n}.deq_scale"))
    xq = torch.randint(-128, 128, (5, w.shape[1]), generator=torch.Generator().manual_seed(0)).double()
    theirs = (xq @ w.t() + t[f"{n}.quant_bias"].double()) * deq.double()
    ours = (xq - o) @ w.t() * deq.double()
    assert torch.equal(theirs, ours)


def test_msmodelslim_round_trip_gives_our_tensors(ms_dir, static):
    from compress.export.msmodelslim_reader import read_msmodelslim

    art = open_artifact(static)
    _, floats, quant = read_msmodelslim(ms_dir)
    assert set(quant) == set(art.names())
    for name in art.names():
        a, b = art.tensor(name), quant[name]
        if name.endswith(".weight_scale"):  # deq_scale / input_scale: within one float32 ulp
            assert ((a.double() - b.double()).abs() / a.double()).max() < 2.5e-7, name
        else:
            assert torch.equal(a, b.to(a.dtype)), name
    assert torch.equal(floats["model.embed_tokens.weight"],
                       _tensors(static / "anti_weight" / "model.safetensors")["model.embed_tokens.weight"])


def _rewrite(src: Path, dst: Path, drop: tuple[str, ...] = (), manifest_update: dict | None = None) -> Path:
    """A copy of an artifact with tensor files dropped / manifest keys changed, re-hashed (a valid artifact)."""
    shutil.copytree(src, dst)
    for f in drop:
        (dst / f).unlink()
    m = json.loads((dst / MANIFEST).read_text())
    m.pop("files")
    m.update(manifest_update or {})
    write_manifest(dst, m)
    return dst


@pytest.mark.parametrize("fmt", ["compressed-tensors", "msmodelslim"])
def test_refuses_online_hadamard_naming_module_and_flag(fmt, tmp_path, hadamard):
    with pytest.raises(UserError) as e:
        export_artifact(hadamard, fmt, tmp_path / "x")
    assert "model.layers.0.mlp.down_proj" in str(e.value) and "--hadamard-block 0" in str(e.value)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("fmt", ["compressed-tensors", "msmodelslim"])
def test_refuses_dynamic_activations(fmt, tmp_path, static):
    dyn = _rewrite(static, tmp_path / "dyn", drop=("input_scale.safetensors", "input_offset.safetensors",
                                                  "deq_scale.safetensors"))
    with pytest.raises(UserError) as e:
        export_artifact(dyn, fmt, tmp_path / "x")
    assert "per token" in str(e.value) and "--act-method static" in str(e.value)
    assert not (tmp_path / "x").exists()


def test_refuses_packed_and_cut(tmp_path, static):
    from compress.cut import cut
    from compress.pack.artifact import pack_artifact

    pack_artifact(static, tmp_path / "packed", progress=False)
    with pytest.raises(UserError, match="compress unpack"):
        export_artifact(tmp_path / "packed", "compressed-tensors", tmp_path / "x")
    cut(str(static), 2, tmp_path / "cut", progress=False)
    with pytest.raises(UserError, match="tensor-parallel cut"):
        export_artifact(tmp_path / "cut", "msmodelslim", tmp_path / "x")
    with pytest.raises(UserError, match="one rank of a tensor-parallel cut"):
        export_artifact(tmp_path / "cut" / "rank_0", "compressed-tensors", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_refuses_damaged_artifact(tmp_path, static):
    d = tmp_path / "d"
    shutil.copytree(static, d)
    with open(d / "weight_scale.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\0\0\0\0")
    with pytest.raises(UserError, match="checksum"):
        export_artifact(d, "msmodelslim", tmp_path / "x")


def test_cli_unknown_format_and_existing_out(tmp_path, static):
    r = CliRunner().invoke(app, ["export", "--format", "onnx", str(static), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "unknown export format 'onnx'" in r.output and "compressed-tensors" in r.output
    (tmp_path / "x").mkdir()
    r = CliRunner().invoke(app, ["export", "--format", "msmodelslim", str(static), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "already exists" in r.output
    # --force replaces only what llama-compress wrote: not a user's directory ...
    r = CliRunner().invoke(app, ["export", "--format", "msmodelslim", str(static), "--out", str(tmp_path / "x"),
                                 "--force"])
    assert r.exit_code == 2 and "not a directory that llama-compress wrote" in r.output
    # ... but an earlier export (its llama-compress-export.json lists every file), in either format
    y = tmp_path / "y"
    for fmt in ("msmodelslim", "compressed-tensors", "compressed-tensors"):
        r = CliRunner().invoke(app, ["export", "--format", fmt, str(static), "--out", str(y), "--force"])
        assert r.exit_code == 0, r.output
    assert (y / "config.json").is_file() and not (y / "quant_model_description.json").exists()
    (y / "notes.txt").write_text("mine")
    r = CliRunner().invoke(app, ["export", "--format", "msmodelslim", str(static), "--out", str(y), "--force"])
    assert r.exit_code == 2 and "notes.txt" in r.output and (y / "notes.txt").exists()


def test_failure_midway_leaves_nothing(tmp_path, monkeypatch, static):
    from compress.export import shards

    def boom(self):
        raise RuntimeError("disk full")

    monkeypatch.setattr(shards.ShardWriter, "close", boom)
    with pytest.raises(RuntimeError):
        export_artifact(static, "compressed-tensors", tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_shards_with_index(tmp_path):
    from compress.export.shards import ShardWriter

    w = ShardWriter(tmp_path, "model", max_bytes=1000)
    for i in range(5):
        w.add(f"t{i}", torch.full((100,), float(i)))  # 400 bytes each: two per shard
    files = w.close()
    idx = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert files[-1] == "model.safetensors.index.json" and len(files) == 4
    for k, f in idx["weight_map"].items():
        assert torch.equal(_tensors(tmp_path / f)[k], torch.full((100,), float(k[1:])))


def test_msmodelslim_bf16_model_keeps_float32_deq_scale(tmp_path, static):
    """msModelSlim's rule: bf16 models store deq_scale as float32, others as its int64 bit pattern."""
    from safetensors.torch import save_file

    from compress.export.msmodelslim_reader import check_schema, read_msmodelslim

    d = tmp_path / "bf16"
    shutil.copytree(static, d)
    st = d / "anti_weight" / "model.safetensors"
    save_file({k: v.bfloat16() for k, v in _tensors(st).items()}, str(st), metadata={"format": "pt"})
    m = json.loads((d / MANIFEST).read_text())
    m.pop("files")
    write_manifest(d, m)
    export_artifact(d, "msmodelslim", tmp_path / "ms")
    t = _tensors(tmp_path / "ms" / "quant_model_weights.safetensors")
    n = "model.layers.0.self_attn.v_proj"
    assert t[f"{n}.deq_scale"].dtype == torch.float32
    assert torch.equal(t[f"{n}.deq_scale"], open_artifact(static).tensor(f"{n}.deq_scale"))
    assert t["model.embed_tokens.weight"].dtype == torch.bfloat16
    assert check_schema(tmp_path / "ms") == []
    _, _, quant = read_msmodelslim(tmp_path / "ms")
    assert torch.equal(quant[f"{n}.deq_scale"], t[f"{n}.deq_scale"])
