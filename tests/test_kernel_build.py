"""The kernel build helper: a build killed mid-way leaves nothing the next run trips on, and the next run works."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.kernels import build

REPO = Path(__file__).resolve().parent.parent
# A tiny pybind11 extension without torch's headers: the same build path in seconds, not a minute.
SRC = "#include <pybind11/pybind11.h>\n#include <cstdint>\nint64_t lc_test_triple(int64_t v) { return 3 * v; }\n"
BUILD = ("from runtime.kernels.build import build_extension\n"
         "m = build_extension('lc_test_build', {src!r}, ['lc_test_triple'], cflags=['-O1'], label='test', torch_headers=False)\n"
         "print('RESULT', m.lc_test_triple(14))\n")


def _env(cache: Path) -> dict:
    env = {**os.environ, "LLAMA_COMPRESS_CACHE": str(cache), "PYTHONPATH": str(REPO)}
    env.pop("LLAMA_COMPRESS_KERNELS_DIR", None)  # this test builds into its own cache
    return env


def test_killed_build_leaves_no_library_and_the_next_run_succeeds(tmp_path):
    root = tmp_path / "kernels"
    p = subprocess.Popen([sys.executable, "-c", BUILD.format(src=SRC)], env=_env(tmp_path), cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        # wait until the compiler runs (an object file is being written in the private build dir)
        while time.monotonic() < deadline and p.poll() is None:
            tmps = list(root.glob(".build-*")) if root.is_dir() else []
            if tmps and any(f.suffix in (".ninja", ".cpp") for f in tmps[0].iterdir()):
                break
            time.sleep(0.05)
        assert p.poll() is None, "the build finished before it could be killed"
        time.sleep(0.3)  # mid-way through the compile
        os.killpg(p.pid, signal.SIGKILL)  # the compiler and ninja die with it
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    assert list(root.glob(".build-*")), "the killed build should have left its private dir"
    assert not list(root.glob("*.so")), "a killed build must never leave a library under the final name"

    r = subprocess.run([sys.executable, "-c", BUILD.format(src=SRC)], env=_env(tmp_path), cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "RESULT 42" in r.stdout
    assert "compiling the test kernel (once, ~1 min)" in r.stderr
    assert not list(root.glob(".build-*")), "the dead build's dir is removed, the new one cleaned up"
    assert len(list(root.glob("lc_test_build_*.so"))) == 1

    r = subprocess.run([sys.executable, "-c", BUILD.format(src=SRC)], env=_env(tmp_path), cwd=REPO,
                       capture_output=True, text=True, timeout=120)  # cached: no compile, no notice
    assert r.returncode == 0 and "RESULT 42" in r.stdout and "compiling" not in r.stderr


def test_stale_build_dirs_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    d_dead = tmp_path / f".build-{dead.pid}-abc"
    d_live = tmp_path / f".build-{os.getpid()}-xyz"
    for d in (d_dead, d_live):
        d.mkdir()
        (d / "x.o").write_bytes(b"half")
    removed = build.remove_stale_builds(tmp_path)
    assert removed == [d_dead] and d_live.exists() and not d_dead.exists()


def test_build_key_changes_with_the_flags_and_source():
    k = build.build_key("k", "src", ["-mavx512f"], [])
    assert k.startswith("k_")
    assert k != build.build_key("k", "src", ["-mavx512f", "-mavx512bf16"], [])
    assert k != build.build_key("k", "src2", ["-mavx512f"], [])
    assert k == build.build_key("k", "src", ["-mavx512f"], [])


def test_sparse_kernel_builds_through_the_helper(monkeypatch):
    from runtime.sparse import kernel

    if kernel.cpu.missing(kernel.NEEDED_FLAGS):
        pytest.skip("CPU lacks the packed-sparse kernel's flags")
    assert kernel.available(), kernel.why_unavailable()
    assert any(k.startswith("lc_sparse_u8s8_") for k in build._loaded)
