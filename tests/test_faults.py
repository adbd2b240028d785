"""Kills and interruptions (subprocess + signal): nothing lost, nothing left behind, no silent mixing.

Every wait is bounded: a process that never reaches the point to kill fails the test, it never hangs it.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO

LIMIT_S = 300


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def _spawn(args: list, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=REPO, env=_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _run(args: list, timeout: float = LIMIT_S, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, env=_env(**env), capture_output=True,
                          text=True, timeout=timeout)


def _wait_for(cond, proc: subprocess.Popen, what: str, timeout: float = LIMIT_S) -> None:
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            pytest.fail(f"the process ended (rc {proc.returncode}) before {what}: {proc.stdout.read()[-2000:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _kill(proc: subprocess.Popen, sig=signal.SIGKILL) -> int:
    os.kill(proc.pid, sig)
    try:
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()


def _temps(parent: Path, name: str) -> list[Path]:
    return sorted(parent.glob(f".{name}.tmp-*"))


def test_sigkill_during_import_then_next_run_cleans(tmp_path):
    out = tmp_path / "smol"
    p = _spawn(["-m", "compress.cli", "import", "smollm2-135m", "--out", out])
    _wait_for(lambda: _temps(tmp_path, "smol"), p, "the import's temporary directory appeared")
    time.sleep(0.5)
    _kill(p)
    left = _temps(tmp_path, "smol")
    assert left and str(p.pid) in left[0].name  # the writer's pid is in the name
    assert not out.exists()  # nothing half-written under the real name
    r = _run(["-m", "compress.cli", "import", "stories260k", "--out", out])
    assert r.returncode == 0, r.stdout + r.stderr
    assert _temps(tmp_path, "smol") == [] and (out / "config.json").exists()


def test_sigkill_during_the_import_cache_then_next_run_cleans(tmp_path, smollm2_hf_dir):
    cache = tmp_path / "cache"
    p = _spawn(["-m", "runtime.cli", "run", "--model", "smollm2-135m", "--max-new-tokens", "1"],
               LLAMA_COMPRESS_CACHE=str(cache))
    imports = cache / "imports"
    _wait_for(lambda: imports.is_dir() and any(q.name.startswith(".") for q in imports.iterdir()), p,
              "the import cache's temporary directory appeared")
    _kill(p)
    stale = [q for q in imports.iterdir() if q.name.startswith(".")]
    assert len(stale) == 1 and f".tmp-{p.pid}-" in stale[0].name
    # a completed import beside it (the one a later run makes; copied here to save the minute)
    shutil.copytree(smollm2_hf_dir, imports / smollm2_hf_dir.name)
    code = ("from runtime.loading import imported_dir; from runtime.presets import resolve_model; "
            "print(imported_dir(resolve_model('smollm2-135m'), progress=False))")
    r = _run(["-c", code], LLAMA_COMPRESS_CACHE=str(cache))
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).name == smollm2_hf_dir.name  # the cache hit, and the killed run's copy gone:
    assert [q for q in imports.iterdir() if q.name.startswith(".")] == []


def test_ctrl_c_during_a_write_removes_the_temporary(tmp_path):
    # the child restores Python's Ctrl-C handler: a shell starts background jobs with SIGINT ignored, and
    # Python keeps an inherited SIG_IGN, so under `cmd &` the signal would never reach the code under test
    code = ("import signal, sys, time; from runtime.atomic import atomic_dir\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            f"with atomic_dir({str(tmp_path / 'o')!r}) as t:\n"
            "    (t / 'big').write_bytes(b'0' * 1000000); print('READY', flush=True); time.sleep(120)\n")
    p = _spawn(["-c", code])
    assert p.stdout.readline().strip() == "READY"
    rc = _kill(p, signal.SIGINT)
    assert rc != 0
    assert not (tmp_path / "o").exists() and _temps(tmp_path, "o") == []


MMLU = ["-m", "runtime.cli", "eval-mmlu", "--model", "stories260k", "--max-seq-len", "512", "--limit", "10",
        "--threads", "1", "--subjects", "marketing", "--subjects", "anatomy", "--subjects", "management",
        "--subjects", "virology", "--subjects", "human_aging", "--subjects", "sociology"]


def _rows(path: Path) -> int:
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


def test_mmlu_killed_then_resumed_only_with_the_same_model(tmp_path):
    out = tmp_path / "m"
    cache = out / "test_result" / "cache.csv"
    p = _spawn([*MMLU, "--out", out])
    _wait_for(lambda: _rows(cache) >= 3, p, "three MMLU rows were journaled")
    _kill(p)
    n = _rows(cache)
    assert 3 <= n < 60 and not (out / "test_result" / "summary_classes_acc.json").exists()
    r = _run([*MMLU, "--out", out, "--dtype", "bf16"])
    assert r.returncode == 2 and "dtype was 'fp32', now 'bf16'" in r.stderr and "--restart" in r.stderr, r.stderr
    assert _rows(cache) == n  # the refused run touched nothing
    r = _run([*MMLU, "--out", out])
    assert r.returncode == 0, r.stderr
    assert _rows(cache) == 60
    summary = json.loads((out / "test_result" / "summary_classes_acc.json").read_text())
    assert summary["overall"]["total"] == 60


PERF = ["-m", "runtime.cli", "perf", "--model", "stories260k", "--dtype", "fp32", "--batch-sizes", "1,2,4,8",
        "--pairs", "64:64,128:96", "--max-seq-len", "256", "--no-plot"]


def test_perf_killed_then_resumed_only_with_the_same_threads(tmp_path):
    out = tmp_path / "p"
    side = out / ".multibatch_performance_stories260k-fp32_cpu.partial.jsonl"
    p = _spawn([*PERF, "--out", out, "--threads", "1"])
    _wait_for(lambda: side.exists() and len(side.read_text().splitlines()) >= 3, p, "two perf rows were kept")
    _kill(p)
    kept = len(side.read_text().splitlines()) - 1
    assert 2 <= kept < 8
    r = _run([*PERF, "--out", out, "--threads", "2"])
    assert r.returncode == 2 and "threads was 1, now 2" in r.stderr and "--restart" in r.stderr, r.stderr
    r = _run([*PERF, "--out", out, "--threads", "1"])
    assert r.returncode == 0, r.stderr
    assert f"{kept} resumed" in r.stdout
    rows = (out / "multibatch_performance_stories260k-fp32_cpu.csv").read_text().splitlines()
    assert len(rows) == 9 and not side.exists()
    r = _run([*PERF, "--out", out, "--threads", "2", "--restart", "--batch-sizes", "1", "--pairs", "8:2"])
    assert r.returncode == 0, r.stderr
