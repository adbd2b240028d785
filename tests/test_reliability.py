"""Issue 12: the bad inputs and silent wrong results a new user hit, one clear error each (exit 2, no traceback).

Kill and interrupt cases (subprocess + signal) live in test_faults.py.
"""
import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import asdict

import pytest
import torch
from typer.testing import CliRunner

from conftest import REPO, make_tiny_hf
from runtime.errors import UserError

runner = CliRunner()


def compress_cli(*args):
    from compress.cli import app

    return runner.invoke(app, [str(a) for a in args])


def runtime_cli(*args):
    from runtime.cli import app

    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_hf(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def stories_art(tmp_path_factory, data_dir, stories_hf):
    """A small dense W8A8 artifact of stories260K (seconds)."""
    from compress.quantize import QuantizeOptions, run_quantize

    hf, tok = stories_hf
    out = tmp_path_factory.mktemp("art") / "w8a8"
    opts = QuantizeOptions(calib_samples=4, calib_seq_len=64, sens_samples=1, disable_level=0, float_units=[])
    run_quantize(hf, "stories260k", tok, out, data_dir / "ceval", opts, progress=False, log=lambda *a: None)
    return out


# ---- --force and --out ------------------------------------------------------------------------------

def test_force_replaces_only_what_we_wrote(tmp_path):
    out = tmp_path / "imp"
    r = compress_cli("import", "stories260k", "--out", out)
    assert r.exit_code == 0, r.output
    (out / "notes.txt").write_text("my notes")
    r = compress_cli("import", "stories260k", "--out", out, "--force")
    assert r.exit_code == 2 and "notes.txt" in r.output and "move them out" in r.output
    assert (out / "notes.txt").read_text() == "my notes"  # nothing deleted
    (out / "notes.txt").unlink()
    r = compress_cli("import", "stories260k", "--out", out, "--force")
    assert r.exit_code == 0, r.output
    mine = tmp_path / "mine"  # a user's directory: no manifest of ours
    mine.mkdir()
    (mine / "data.bin").write_bytes(b"x")
    r = compress_cli("import", "stories260k", "--out", mine, "--force")
    assert r.exit_code == 2 and "not a directory that llama-compress wrote" in r.output
    assert (mine / "data.bin").exists()


def test_force_checks_artifact_manifest(stories_art, tmp_path):
    from runtime.atomic import check_out

    art = tmp_path / "a"
    shutil.copytree(stories_art, art)
    assert check_out(art, overwrite=True) == art  # every file listed: ours
    (art / "anti_weight" / "extra.json").write_text("{}")
    with pytest.raises(UserError, match="anti_weight/extra.json"):
        check_out(art, overwrite=True)
    with pytest.raises(UserError, match="pass --force"):
        check_out(stories_art, overwrite=False)


def test_out_dot_refused_before_the_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").write_text("a user's file")
    r = compress_cli("import", "stories260k", "--out", ".", "--force")
    assert r.exit_code == 2 and "current directory" in r.output, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]  # no work was done, nothing written beside it


def test_outputs_follow_the_umask(tmp_path):
    from runtime.atomic import atomic_dir, atomic_write_text

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "d") as t:
            (t / "f").write_text("x")
        atomic_write_text(tmp_path / "j.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755  # not mkdtemp's 0700
    assert stat.S_IMODE((tmp_path / "j.json").stat().st_mode) == 0o644  # not mkstemp's 0600


def test_stale_temp_dirs_of_dead_writers_are_removed(tmp_path):
    from runtime.atomic import atomic_dir

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()  # a pid that is no longer running
    dead = tmp_path / f".out.tmp-{p.pid}-abcd"
    dead.mkdir()
    (dead / "big.safetensors").write_bytes(b"\0" * 1000)
    live = tmp_path / f".out.tmp-{os.getppid()}-efgh"  # our parent is alive: its temp dir stays
    live.mkdir()
    other = tmp_path / f".other.tmp-{p.pid}-ijkl"  # another output's: not this run's to judge
    other.mkdir()
    with atomic_dir(tmp_path / "out") as t:
        (t / "f").write_text("x")
    assert not dead.exists() and live.exists() and other.exists()


def test_old_copy_of_a_killed_replace_is_put_back(tmp_path):
    from runtime.atomic import clean_stale

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    old = tmp_path / f".out.old-{p.pid}"  # killed between `out -> .old` and `tmp -> out`
    old.mkdir()
    (old / "artifact.json").write_text("{}")
    clean_stale(tmp_path, "out")
    assert (tmp_path / "out" / "artifact.json").exists() and not old.exists()


def test_json_into_a_missing_directory_refused(tmp_path):
    target = tmp_path / "missing" / "x.json"
    r = runtime_cli("run", "--model", "stories260k", "--max-new-tokens", "2", "--json", target)
    assert r.exit_code == 2 and "does not exist" in r.output
    assert not (tmp_path / "missing").exists()  # no directories made on the way


# ---- silent wrong results -------------------------------------------------------------------------------

@pytest.mark.parametrize("units, words", [("99", "has 5 decoder layers"), ("a", "give decoder layer numbers"),
                                          ("1,-1", "give decoder layer numbers")])
def test_float_layers_out_of_range_or_malformed(tmp_path, units, words):
    r = compress_cli("quantize", "--model", "stories260k", "--float-layers", units, "--out", tmp_path / "q",
                     "--calib-samples", "2", "--calib-seq-len", "32")
    assert r.exit_code == 2 and words in r.output, r.output
    assert not (tmp_path / "q").exists()


def test_sparse_float_layers_out_of_range(tmp_path):
    r = compress_cli("sparse", "--model", "stories260k", "--float-layers", "7", "--out", tmp_path / "s",
                     "--calib-samples", "2", "--calib-seq-len", "32")
    assert r.exit_code == 2 and "has 5 decoder layers" in r.output, r.output


def test_config_with_fewer_layers_than_the_checkpoint(tiny, tmp_path):
    from runtime.loaders import open_source

    bad = tmp_path / "bad"
    shutil.copytree(tiny, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["num_hidden_layers"] = 1  # the checkpoint holds 2: the model would run truncated
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="decoder layers up to 1 but config.json declares 1"):
        open_source(bad)


def test_tensor_of_a_known_kind_not_used(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    from runtime.loaders import open_source

    bad = tmp_path / "bias"
    shutil.copytree(tiny, bad)
    st = next(bad.glob("*.safetensors"))
    t = load_file(str(st))
    t["model.layers.0.self_attn.q_proj.bias"] = torch.ones(64)  # a bias this runtime would ignore
    save_file(t, str(st), metadata={"format": "pt"})
    with pytest.raises(UserError, match="q_proj.bias.*silently ignored"):
        open_source(bad)


@pytest.mark.parametrize("args, words", [
    (["--calib-samples", "0"], "--calib-samples 0"),
    (["--calib-seq-len", "100000"], "exceeds the model's 512 positions"),
    (["--calib-seq-len", "1"], "at least 2 tokens"),
    (["--threads", "-3"], "--threads -3"),
])
def test_quantize_bad_sizes(tmp_path, args, words):
    r = compress_cli("quantize", "--model", "stories260k", "--out", tmp_path / "q", *args)
    assert r.exit_code == 2 and words in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


@pytest.mark.parametrize("args, words", [
    (["ppl", "--model", "stories260k", "--windows", "0"], "--windows 0"),
    (["ppl", "--model", "stories260k", "--window", "1"], "at least 2 tokens"),
    (["run", "--model", "stories260k", "--threads", "-3"], "--threads -3"),
    (["run", "--model", "stories260k", "--temperature", "nan"], "temperature nan"),
    (["run", "--model", "stories260k", "--top-p", "0"], "top_p 0"),
    (["perf", "--model", "stories260k", "--threads", "0", "--pairs", "4:2", "--batch-sizes", "1"], "--threads 0"),
])
def test_runtime_bad_numbers(tmp_path, args, words):
    r = runtime_cli(*args)
    assert r.exit_code == 2 and words in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_engine_api_bad_arguments(tiny):
    from runtime.engine import Engine
    from runtime.loaders import open_source
    from runtime.loading import build_model
    from runtime.sampling import SamplingParams

    eng = Engine(build_model(open_source(tiny)), max_seq_len=32)
    ids = torch.tensor([[1, 5, 7]])
    with pytest.raises(UserError, match="at least one row"):
        eng.generate(torch.zeros(0, 3, dtype=torch.int64), max_new_tokens=2)
    with pytest.raises(UserError, match="at least one row"):
        eng.generate(torch.zeros(2, 0, dtype=torch.int64), max_new_tokens=2)
    with pytest.raises(UserError, match="whole number"):
        eng.generate(ids, max_new_tokens=2.5)
    with pytest.raises(UserError, match="temperature nan"):
        eng.generate(ids, max_new_tokens=2, sampling=SamplingParams(temperature=float("nan")))
    with pytest.raises(UserError, match="top_k"):
        eng.generate(ids, max_new_tokens=2, sampling=SamplingParams(temperature=1.0, top_k=-1))
    with pytest.raises(UserError, match="at least one row"):
        eng.logits(torch.zeros(0, 3, dtype=torch.int64))
    assert eng.generate(ids, max_new_tokens=2).output_ids.shape == (1, 2)  # good input still works


def test_empty_safetensors_and_truncated_gguf(tiny, tmp_path, data_dir):
    from runtime.loaders import open_source

    empty = tmp_path / "empty"
    shutil.copytree(tiny, empty)
    next(empty.glob("*.safetensors")).write_bytes(b"")
    with pytest.raises(UserError, match=r"is empty \(0 bytes\)"):
        open_source(empty)
    whole = (data_dir / "stories260K" / "stories260K.gguf").read_bytes()
    for n in (100, 5000, len(whole) // 2, len(whole) - 1000):
        p = tmp_path / f"t{n}.gguf"
        p.write_bytes(whole[:n])
        with pytest.raises(UserError, match="is truncated"):
            open_source(p)


# ---- smaller ------------------------------------------------------------------------------------------

def test_pack_of_a_dense_artifact_warns(stories_art, tmp_path):
    r = compress_cli("pack", stories_art, "--out", tmp_path / "p")
    assert r.exit_code == 0, r.output
    assert "larger than dense int8" in r.output
    r = compress_cli("pack", stories_art, "--out", tmp_path / "p")
    assert r.exit_code == 2 and "--force" in r.output and "remove it first" not in r.output


def test_help_texts():
    r = runtime_cli("perf", "--help")
    assert r.exit_code == 0 and "--no-no-plot" not in r.output and "--no-plot" in r.output
    r = compress_cli("cut", "--help")
    assert "rank_0/" in r.output and "rank0/" not in r.output
    r = runtime_cli("run", "--help")
    assert "--performance" in r.output and "--precision" in r.output


def test_performance_mode_says_what_it_will_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runtime_cli("perf", "--model", "stories260k", "--dtype", "fp32", "--batch-sizes", "1,2", "--pairs", "4:2,8:2",
                    "--no-plot", "--threads", "1")
    assert r.exit_code == 0, r.output
    first = r.output.splitlines()[0]
    assert "4 cases" in first and "perf_out" in first and "default --out" in first
    assert "estimated time" in r.output
    assert (tmp_path / "perf_out").is_dir()


def test_local_csvs_do_not_say_downloading(data_dir, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))  # no earlier cache hides the message
    code = ("from pathlib import Path; from calibration.data import ceval_prompts; "
            f"print(len(ceval_prompts(Path({str(data_dir / 'ceval')!r}))[0]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.strip()) > 1000
    assert "Downloading" not in r.stderr + r.stdout


def test_help_does_not_import_torch():
    code = ("import sys, runtime.cli, compress.cli; from compress.cli import app; "
            "bad = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]; print(bad)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


# ---- resume fingerprints ------------------------------------------------------------------------------

MMLU_ARGS = ["--subjects", "marketing", "--limit", "2", "--max-seq-len", "512"]


def test_mmlu_resume_refuses_another_artifact_at_the_same_path(stories_art, stories_hf, data_dir, tmp_path):
    from compress.quantize import QuantizeOptions, run_quantize

    art = tmp_path / "art"
    shutil.copytree(stories_art, art)
    out = tmp_path / "mmlu"
    r = runtime_cli("eval-mmlu", "--quant", art, "--out", out, *MMLU_ARGS)
    assert r.exit_code == 0, r.output
    # the same path, another model: re-quantized with another seed (the description stays the same)
    hf, tok = stories_hf
    opts = QuantizeOptions(calib_samples=4, calib_seq_len=64, sens_samples=1, disable_level=0, float_units=[],
                           seed=7)
    run_quantize(hf, "stories260k", tok, art, data_dir / "ceval", opts, overwrite=True, progress=False,
                 log=lambda *a: None)
    r = runtime_cli("eval-mmlu", "--quant", art, "--out", out, *MMLU_ARGS)
    assert r.exit_code == 2 and "model weights was" in r.output and "--restart" in r.output, r.output
    r = runtime_cli("eval-mmlu", "--quant", art, "--out", out, *MMLU_ARGS, "--restart")
    assert r.exit_code == 0, r.output


def test_mmlu_fingerprint_names_dtype(tmp_path):
    out = tmp_path / "m"
    r = runtime_cli("eval-mmlu", "--model", "stories260k", "--out", out, *MMLU_ARGS)
    assert r.exit_code == 0, r.output
    run = json.loads((out / "run.json").read_text())
    assert run["fingerprint"]["weights"]["kind"] == "source" and len(run["fingerprint"]["weights"]["sha256"]) == 64
    assert len(run["data_sha256"]) == 64 and run["fingerprint"]["dtype"] == "fp32"
    r = runtime_cli("eval-mmlu", "--model", "stories260k", "--out", out, *MMLU_ARGS)  # same: resumes
    assert r.exit_code == 0, r.output
    r = runtime_cli("eval-mmlu", "--model", "stories260k", "--out", out, *MMLU_ARGS, "--dtype", "bf16")
    assert r.exit_code == 2 and "dtype was 'fp32', now 'bf16'" in r.output, r.output


def test_perf_resume_refuses_other_settings(tmp_path):
    from runtime.engine import Engine
    from runtime.loaders import open_source
    from runtime.loading import build_model
    from runtime.perf.cases import build_cases
    from runtime.perf.report import PerfRow
    from runtime.perf.runner import run_performance, run_settings

    tiny = make_tiny_hf(tmp_path / "tiny")
    eng = Engine(build_model(open_source(tiny)), max_seq_len=64)
    cases = build_cases([1], [(4, 2), (8, 2)])
    kw = dict(bandwidth=20e9, progress=False, plot=False, echo=lambda s: None)
    side = tmp_path / "o" / ".multibatch_performance_tiny_cpu.partial.jsonl"
    side.parent.mkdir()
    threads = torch.get_num_threads()
    # the side file a killed run leaves: its settings line, then its finished rows
    st = run_settings(eng, "tiny", "cpu", "fp32", 0, True, {"weights": "A"})
    st["threads"] = threads + 1  # measured with another --threads
    side.write_text(json.dumps({"_settings": st}) + "\n" + json.dumps(asdict(PerfRow(1, 4, 2))) + "\n")
    with pytest.raises(UserError, match=f"threads was {threads + 1}, now {threads}"):
        run_performance(eng, cases, tmp_path / "o", "tiny", **kw, fingerprint={"weights": "A"})
    st["threads"] = threads
    side.write_text(json.dumps({"_settings": st}) + "\n")
    with pytest.raises(UserError, match="fingerprint was"):
        run_performance(eng, cases, tmp_path / "o", "tiny", **kw, fingerprint={"weights": "B"})
    res = run_performance(eng, cases, tmp_path / "o", "tiny", **kw, fingerprint={"weights": "B"}, resume=False)
    assert len(res.rows) == 2 and all(r.ok for r in res.rows)
