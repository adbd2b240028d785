"""MMLU calibration prompts and calibration sets mixed from several sources (C-Eval + MMLU, text)."""
import pytest

from runtime.errors import UserError
from runtime.tokenizer import load_tokenizer


def _tok(data_dir):
    return load_tokenizer(data_dir / "stories260K" / "tok512.model")


def test_mmlu_dir_is_told_from_ceval(data_dir):
    from calibration.data import is_ceval_dir, is_mmlu_dir

    assert is_mmlu_dir(data_dir / "mmlu") and not is_ceval_dir(data_dir / "mmlu")
    assert is_ceval_dir(data_dir / "ceval") and not is_mmlu_dir(data_dir / "ceval")
    assert not is_mmlu_dir(data_dir / "wikitext-2-raw")


def test_mmlu_prompts_read_val_and_dev_not_test(data_dir):
    import csv

    from calibration.data import mmlu_prompts

    prompts, files = mmlu_prompts(data_dir / "mmlu")
    assert files and all(f.parent.name in ("val", "dev") for f in files)
    n_rows = 0
    for f in files:
        with open(f, encoding="utf-8", newline="") as fh:
            n_rows += sum(1 for _ in csv.reader(fh))
    assert len(prompts) == n_rows
    # the first question of the first file, formatted as C-Eval's prompts are (choices, then the answer)
    with open(files[0], encoding="utf-8", newline="") as fh:
        q, a, b, c, d, ans = next(csv.reader(fh))
    assert prompts[0] == f"{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer: {ans}\n\n"


def test_mix_shares_samples_and_interleaves(data_dir):
    from calibration.data import build_calibration

    tok = _tok(data_dir)
    ce = build_calibration(data_dir / "ceval", tok, 3, 64, seed=0)
    mm = build_calibration(data_dir / "mmlu", tok, 2, 64, seed=0)
    mix = build_calibration([data_dir / "ceval", data_dir / "mmlu"], tok, 5, 64, seed=0)
    assert mm.source == "mmlu" and mix.source == "ceval+mmlu" and len(mix.samples) == 5
    # each source's samples are the ones it gives alone, taken in turn: c0 m0 c1 m1 c2
    want = [ce.samples[0], mm.samples[0], ce.samples[1], mm.samples[1], ce.samples[2]]
    assert all(s.equal(w) for s, w in zip(mix.samples, want))
    assert mix.sha256 not in (ce.sha256, mm.sha256)  # both sources' files are in the checksum
    again = build_calibration([data_dir / "ceval", data_dir / "mmlu"], tok, 5, 64, seed=0)
    assert again.tokens_sha256 == mix.tokens_sha256
    assert build_calibration([data_dir / "ceval"], tok, 3, 64).tokens_sha256 == ce.tokens_sha256


def test_mix_refusals(data_dir, tmp_path):
    from calibration.data import build_calibration

    tok = _tok(data_dir)
    with pytest.raises(UserError, match="per calibration source"):
        build_calibration([data_dir / "ceval", data_dir / "mmlu"], tok, 1, 64)
    with pytest.raises(UserError, match="not found"):
        build_calibration([data_dir / "ceval", tmp_path / "nope"], tok, 4, 64)
    bad = tmp_path / "mmlu" / "val"
    bad.mkdir(parents=True)
    (bad / "x_val.csv").write_text("q,a,b,c,d,A\nshort,row\n")
    with pytest.raises(UserError, match="2 fields"):
        build_calibration(tmp_path / "mmlu", tok, 1, 16)


def test_recipe_takes_a_list_of_sources(tmp_path):
    from compress.quantize import QuantizeOptions
    from compress.recipe import QuantizeRecipe, apply_common

    r = QuantizeRecipe.parse({"calib_data": ["${SHARED}/data/ceval", "${SHARED}/data/mmlu"]}, "t")
    assert r.calib_data == ("${SHARED}/data/ceval", "${SHARED}/data/mmlu")
    kw = dict(disable_level=None, act_method=None, calib_samples=None, calib_seq_len=None, seed=None,
              float_units=None)
    paths = apply_common(QuantizeOptions(), r, calib_data=None, **kw)
    assert [p.name for p in paths] == ["ceval", "mmlu"] and all("${" not in str(p) for p in paths)
    # the command line wins, one path or several
    assert apply_common(QuantizeOptions(), r, calib_data=[tmp_path], **kw) == tmp_path
    assert apply_common(QuantizeOptions(), r, calib_data=[tmp_path, tmp_path], **kw) == [tmp_path, tmp_path]
    with pytest.raises(UserError, match="empty list"):
        QuantizeRecipe.parse({"calib_data": []}, "t")


def test_quantize_cli_mix_max_rows_dynamic_groups(tmp_path, data_dir):
    """The command-line options reach the artifact: two calibration sources, --max-rows, --dynamic-groups."""
    import json

    from typer.testing import CliRunner

    from compress.cli import app

    out = tmp_path / "a"
    base = ["quantize", "--model", "stories260k", "--calib-samples", "4", "--calib-seq-len", "64",
            "--disable-level", "L0", "--threads", "1"]
    res = CliRunner().invoke(app, base + ["--calib-data", str(data_dir / "ceval"), "--calib-data",
                                          str(data_dir / "mmlu"), "--max-rows", "32", "--dynamic-groups", "down",
                                          "--out", str(out)])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "artifact.json").read_text())
    assert m["calibration"]["kind"] == "ceval+mmlu" and m["calibration"]["rows_per_group"] == 32
    schemes = m["schemes"]
    assert {s for n, s in schemes.items() if n.endswith("down_proj")} == {"w8a8-dynamic"}
    assert {s for n, s in schemes.items() if not n.endswith("down_proj")} == {"w8a8-static"}
    bad = CliRunner().invoke(app, base + ["--dynamic-groups", "mlp", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "choose from" in bad.output and not (tmp_path / "b").exists()
    bad = CliRunner().invoke(app, base + ["--max-rows", "4", "--out", str(tmp_path / "c")])
    assert bad.exit_code == 2 and "--max-rows 4" in bad.output


def test_describe_sources():
    from pathlib import Path

    from calibration.data import describe_sources

    assert describe_sources(Path("a/ceval")) == "a/ceval"
    assert describe_sources([Path("a/ceval"), Path("b/mmlu")]) == "a/ceval + b/mmlu"
