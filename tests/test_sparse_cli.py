"""Bad input to compress sparse / pack / unpack: exit 2 with a message that names the problem and the fix."""
from typer.testing import CliRunner

from compress.cli import app


def _run(*args):
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output + (r.stderr if r.stderr_bytes is not None else "")


def test_sparse_rejects_bad_pattern_and_method(tmp_path):
    code, out = _run("sparse", "--model", "stories260k", "--pattern", "2-4", "--out", str(tmp_path / "a"))
    assert code == 2 and "2:4" in out
    code, out = _run("sparse", "--model", "stories260k", "--method", "random", "--out", str(tmp_path / "a"))
    assert code == 2 and "wanda" in out
    code, out = _run("sparse", "--model", "stories260k", "--pattern", "2:4", "--sparsity", "0.7",
                     "--out", str(tmp_path / "a"))
    assert code == 2 and "--sparsity 0.5" in out
    assert not (tmp_path / "a").exists()


def test_pack_and_unpack_reject_non_artifacts(tmp_path):
    code, out = _run("pack", str(tmp_path), "--out", str(tmp_path / "p"))
    assert code == 2 and "not an artifact" in out
    code, out = _run("unpack", str(tmp_path / "missing"), "--out", str(tmp_path / "u"))
    assert code == 2
    code, out = _run("pack", str(tmp_path), "--codec", "zip", "--out", str(tmp_path / "p"))
    assert code == 2 and "lzma" in out
