"""Pre-flight of compress quantize/sparse and runtime run: refusals come before the work, estimates hold."""
import shutil

import pytest
from typer.testing import CliRunner

from conftest import make_tiny_hf

runner = CliRunner()
WIKI = ("wikitext-2-raw", "wiki.valid.raw")


def _cli(mod, *args):
    import importlib

    return runner.invoke(importlib.import_module(mod).app, [str(a) for a in args])


@pytest.fixture(scope="module")
def ckpt(sp_only_hf):
    return sp_only_hf


@pytest.fixture(scope="module")
def art(ckpt, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pfa") / "art"
    r = _cli("compress.cli", *_q(ckpt, out, data_dir))
    assert r.exit_code == 0, r.output
    return out


def _q(src, out, data_dir, cmd="quantize"):
    extra = ["--sparsity", 0.5] if cmd == "sparse" else []
    return [cmd, "--model", src, "--calib-data", data_dir.joinpath(*WIKI), "--calib-samples", 2,
            "--calib-seq-len", 32, "--float-layers", "", "--out", out, *extra]


@pytest.mark.parametrize("tied", [False, True])
def test_param_counts_match_transformers(tmp_path, tied):
    from transformers import LlamaForCausalLM

    from compress.preflight import param_counts
    from runtime.loaders import open_source

    d = make_tiny_hf(tmp_path / "m", tied=tied, kv_heads=2, vocab=300)
    ref = sum(p.numel() for p in LlamaForCausalLM.from_pretrained(str(d)).parameters())  # tied: counted once
    assert param_counts(open_source(d).config).total == ref


def test_artifact_size_estimate_bounds_the_real_artifact(art):
    import json

    from compress.preflight import artifact_bytes
    from runtime.loaders import open_source

    real = sum(f.stat().st_size for f in art.rglob("*") if f.is_file())
    m = json.loads((art / "artifact.json").read_text())
    est = artifact_bytes(open_source(art / "anti_weight").config, 4 if m["source"]["dtype"] == "float32" else 2,
                         untie=False)
    assert real <= est <= real * 1.05 + 17 * 2**20, (real, est)


@pytest.mark.parametrize("cmd", ["quantize", "sparse"])
def test_memory_refused_before_calibration(ckpt, data_dir, tmp_path, monkeypatch, cmd):
    monkeypatch.setenv("LLAMA_COMPRESS_MEM_AVAILABLE", str(10**6))
    out = tmp_path / "o"
    r = _cli("compress.cli", *_q(ckpt, out, data_dir, cmd))
    assert r.exit_code == 2, r.output
    assert f"compress {cmd} needs about" in r.output and "MemAvailable" in r.output
    assert "--skip-memory-check" in r.output
    assert "calibration set" not in r.output and not out.exists()
    if cmd == "quantize":  # the override runs it, with a warning
        r = _cli("compress.cli", *_q(ckpt, out, data_dir, cmd), "--skip-memory-check")
        assert r.exit_code == 0, r.output
        assert "warning: --skip-memory-check" in r.output and (out / "artifact.json").exists()


def test_disk_refused_before_calibration(ckpt, data_dir, tmp_path, monkeypatch):
    import compress.preflight as pf

    real = shutil.disk_usage
    monkeypatch.setattr(pf.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    r = _cli("compress.cli", *_q(ckpt, tmp_path / "o", data_dir))
    assert r.exit_code == 2, r.output
    assert "not enough disk" in r.output and "calibration set" not in r.output


def test_tokenizer_failure_before_calibration(ckpt, data_dir, tmp_path, monkeypatch):
    import runtime.sp_files

    def boom(*a, **k):
        raise ImportError("`tiktoken` is required to read a `tiktoken` file (simulated)")

    monkeypatch.setattr(runtime.sp_files, "write_sentencepiece_files", boom)
    out = tmp_path / "o"
    r = _cli("compress.cli", *_q(ckpt, out, data_dir))
    assert r.exit_code == 2, r.output
    assert "tokenizer cannot be saved" in r.output and "tiktoken" in r.output
    assert "calibration set" not in r.output and not out.exists()
    assert not [p for p in tmp_path.iterdir() if "preflight" in p.name]  # the scratch dir is gone


def test_unwritable_output_refused(ckpt, data_dir, tmp_path, monkeypatch):
    import compress.preflight as pf

    monkeypatch.setattr(pf, "_writable", lambda d: False)  # as a non-root user on a read-only dir
    r = _cli("compress.cli", *_q(ckpt, tmp_path / "o", data_dir))
    assert r.exit_code == 2, r.output
    assert "is not writable" in r.output and "calibration set" not in r.output


def test_runtime_refuses_float_model_that_cannot_fit(ckpt, monkeypatch):
    monkeypatch.setenv("LLAMA_COMPRESS_MEM_AVAILABLE", str(10**6))
    r = _cli("runtime.cli", "run", "--model", ckpt, "--prompt", "Hello", "--max-new-tokens", 1)
    assert r.exit_code == 2, r.output
    for w in ("needs about", "MemAvailable", "--quant", "--dtype bf16", "compress cut", "KV cache"):
        assert w in r.output, w
    r = _cli("runtime.cli", "run", "--model", ckpt, "--prompt", "Hello", "--max-new-tokens", 1, "--skip-memory-check")
    assert r.exit_code == 0, r.output


def test_runtime_refuses_artifact_that_cannot_fit(art, monkeypatch):
    monkeypatch.setenv("LLAMA_COMPRESS_MEM_AVAILABLE", str(10**6))
    r = _cli("runtime.cli", "run", "--quant", art, "--prompt", "Hello", "--max-new-tokens", 1, "--dtype", "bf16")
    assert r.exit_code == 2, r.output
    assert "int8 linears" in r.output and "compress cut" in r.output and "--dtype bf16" not in r.output


def test_artifact_estimate_counts_int8_not_float(art):
    """With every linear int8, the estimate's linear bytes are ~1/4 of the fp32 float model's."""
    import json

    from runtime.loaders import open_source
    from runtime.run_memory import BASE_BYTES, artifact_run_bytes, float_run_bytes

    cfg = open_source(art / "anti_weight").config
    mods = json.loads((art / "artifact.json").read_text())["modules"]
    q, _ = artifact_run_bytes(mods, cfg, 4, 16, 1)
    f, _ = float_run_bytes(cfg, 4, 16, 1)
    lin = sum(1 for v in mods.values() if v == "int8")
    assert lin == len(mods)
    emb = 2 * cfg.vocab_size * cfg.hidden_size * 4
    assert q - BASE_BYTES - emb < (f - BASE_BYTES - emb) / 3


def test_artifact_load_never_reads_float_weights_of_int8_modules(art, monkeypatch):
    """anti_weight/ holds float weights for every linear; the runtime must read only those it runs in float."""
    import json

    import runtime.quant_loading as ql

    read: list[str] = []
    real_open = ql.open_source

    def spy_open(path):
        src = real_open(path)
        get = src.get

        def spy_get(name):
            read.append(name)
            return get(name)

        src.get = spy_get
        return src

    monkeypatch.setattr(ql, "open_source", spy_open)
    ql.load_artifact_model(art)
    int8 = [m for m, k in json.loads((art / "artifact.json").read_text())["modules"].items() if k == "int8"]
    assert int8
    assert not [n for n in read if n.removesuffix(".weight") in int8]
    assert "model.embed_tokens.weight" in read  # the spy does see the reads


def test_disk_need_counts_links_and_a_partial_run(ckpt, tmp_path, monkeypatch):
    """The disk figure: the artifact + the int8 working copy (anti_weight/ is hard-linked from the work
    directory), the whole artifact twice where links fail, less what a partial run has already written."""
    import compress.preflight as pf
    from compress.quantize import QuantizeOptions
    from runtime.loaders import open_source
    from runtime.tokenizer import load_tokenizer

    assert pf.hard_links_work(tmp_path), "the test's file system takes hard links"
    cfg = open_source(ckpt).config
    tok = load_tokenizer(ckpt / "tokenizer.model")
    opts = QuantizeOptions(calib_samples=2, calib_seq_len=32)
    needs = []
    monkeypatch.setattr(pf, "check_disk", lambda out, need, what: needs.append(need))
    monkeypatch.setattr(pf, "check_memory", lambda *a, **k: None)
    out = tmp_path / "art"
    pf.preflight_quantize(cfg, 4, out, tok, opts, log=lambda s: None)
    float_art, int8_art = pf.artifact_parts(cfg, 4, False)
    partial = tmp_path / ".art.partial"
    partial.mkdir()
    (partial / "layer-00000.safetensors").write_bytes(b"x" * 12345)
    pf.preflight_quantize(cfg, 4, out, tok, opts, log=lambda s: None)
    monkeypatch.setattr(pf, "hard_links_work", lambda d: False)
    pf.preflight_quantize(cfg, 4, out, tok, opts, log=lambda s: None)
    linked, resumed, copied = needs
    assert linked > float_art + 2 * int8_art  # + the activation streams
    assert linked - resumed == 12345
    assert copied - resumed == float_art
