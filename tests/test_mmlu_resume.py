"""A killed MMLU run resumes to the same files; summaries, settings guard, compare and the CLI."""
import csv
import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from runtime.engine import Engine
from runtime.errors import UserError
from runtime.loaders import open_source
from runtime.loading import build_model
from runtime.mmlu import compare_runs, run_mmlu
from runtime.mmlu.data import default_data_dir, load_mapping
from runtime.tokenizer import load_tokenizer

SUBJECTS = ["abstract_algebra", "marketing", "world_religions"]  # STEM, Other, Humanities
FILES = ["cache.csv", "summary_subject_acc.json", "summary_classes_acc.json"]


@pytest.fixture(scope="module")
def smol(smollm2_hf_dir):
    return Engine(build_model(open_source(smollm2_hf_dir))), load_tokenizer(smollm2_hf_dir)


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def straight(smol, tmp_path_factory):
    eng, tok = smol
    out = tmp_path_factory.mktemp("straight")
    run_mmlu(eng, tok, None, out, subjects=SUBJECTS, limit=5, batch=2, progress=False, model_desc="smol")
    return out


@pytest.mark.slow
def test_killed_run_resumes_to_identical_files(smol, straight, tmp_path):
    eng, tok = smol
    out = tmp_path / "resumed"

    def kill_after_7(n_new):
        if n_new >= 7:
            raise Killed

    with pytest.raises(Killed):
        run_mmlu(eng, tok, None, out, subjects=SUBJECTS, limit=5, batch=2, progress=False, model_desc="smol",
                 on_batch=kill_after_7)
    journal = out / "test_result" / "cache.csv"
    partial = list(csv.reader(open(journal, newline="")))[1:]
    assert 7 <= len(partial) < 15 and not (out / "test_result" / "summary_classes_acc.json").exists()
    with open(journal, "a") as f:  # a kill in the middle of the next write leaves a torn line
        f.write("marketing,4,C,")
    n_calls = []
    run_mmlu(eng, tok, None, out, subjects=SUBJECTS, limit=5, batch=2, progress=False, model_desc="smol",
             on_batch=n_calls.append)
    assert n_calls[-1] == 15 - len(partial)  # only the missing questions were scored again
    for name in FILES:
        assert (out / "test_result" / name).read_bytes() == (straight / "test_result" / name).read_bytes(), name


@pytest.mark.slow
def test_summaries_recomputed_from_cache(straight):
    mapping = load_mapping(default_data_dir())
    rows = list(csv.reader(open(straight / "test_result" / "cache.csv", newline="")))
    assert rows[0][:4] == ["subject", "question", "expected", "predicted"] and len(rows) == 16
    per = {}
    for r in rows[1:]:
        per.setdefault(r[0], []).append(r[2] == r[3])  # column C expected, column D predicted
        p = [float(x) for x in r[4:8]]
        assert abs(sum(p) - 1) < 1e-5 and "ABCD"[p.index(max(p))] == r[3]
    subj = json.loads((straight / "test_result" / "summary_subject_acc.json").read_text())
    cls = json.loads((straight / "test_result" / "summary_classes_acc.json").read_text())
    for s, v in per.items():
        assert subj[s]["correct"] == sum(v) and subj[s]["total"] == 5 and subj[s]["category"] == mapping[s]
    allq = [x for v in per.values() for x in v]
    assert cls["overall"]["micro_acc"] == pytest.approx(sum(allq) / len(allq), abs=1e-6)
    assert cls["overall"]["macro_acc"] == pytest.approx(sum(sum(v) / len(v) for v in per.values()) / 3, abs=1e-6)
    assert cls["STEM"]["acc"] == pytest.approx(sum(per["abstract_algebra"]) / 5, abs=1e-6)
    assert "Social Sciences" not in cls


@pytest.mark.slow
def test_other_settings_refuse_to_resume(smol, straight, tmp_path):
    eng, tok = smol
    out = tmp_path / "x"
    shutil.copytree(straight, out)
    with pytest.raises(UserError, match="other settings"):
        run_mmlu(eng, tok, None, out, subjects=SUBJECTS, limit=5, fmt="lm-eval", progress=False, model_desc="smol")


def _fake_run(d, accs):
    (d / "test_result").mkdir(parents=True)
    subj = {s: {"category": c, "correct": k, "total": 10, "acc": k / 10} for s, (c, k) in accs.items()}
    (d / "test_result" / "summary_subject_acc.json").write_text(json.dumps(subj))


def test_compare_deltas(tmp_path):
    _fake_run(tmp_path / "a", {"anatomy": ("Other", 3), "virology": ("Other", 5), "astronomy": ("STEM", 4)})
    _fake_run(tmp_path / "b", {"anatomy": ("Other", 2), "virology": ("Other", 5), "astronomy": ("STEM", 7)})
    c = compare_runs(tmp_path / "a", tmp_path / "b")
    d = {r[0]: r[3] - r[2] for r in c["subjects"] + c["categories"] + c["overall"]}
    assert d["anatomy"] == pytest.approx(-0.1) and d["astronomy"] == pytest.approx(0.3)
    assert d["Other"] == pytest.approx(-0.05)
    assert d["micro (questions)"] == pytest.approx(2 / 30, abs=1e-5) and d["macro (subjects)"] == pytest.approx(2 / 30, abs=1e-5)
    from runtime.cli import app

    res = CliRunner().invoke(app, ["eval-mmlu", "--compare", str(tmp_path / "a"), str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert "astronomy" in res.output and "+30.00" in res.output and "-10.00" in res.output
    res = CliRunner().invoke(app, ["eval-mmlu", "--compare", str(tmp_path / "a"), str(tmp_path / "nope")])
    assert res.exit_code == 2 and "summary_subject_acc.json" in res.output


def test_cli_on_stories260k(tmp_path):
    """The command end to end on a tiny real model (its 512-piece tokenizer makes prompts drop shots)."""
    from runtime.cli import app

    out = tmp_path / "run"
    common = ["--limit", "3", "--batch", "2", "--max-seq-len", "1024", "--out", str(out)]
    res = CliRunner().invoke(app, ["eval-mmlu", "--model", "stories260k", "--subjects", "anatomy"] + common)
    assert res.exit_code == 0, res.output
    first = (out / "test_result" / "cache.csv").read_text().splitlines()
    args = ["eval-mmlu", "--model", "stories260k", "--subjects", "anatomy", "--subjects", "virology"] + common
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = (out / "test_result" / "cache.csv").read_text().splitlines()
    assert rows[:4] == first and len(rows) == 7  # anatomy kept as scored, virology added
    assert json.loads((out / "timing.json").read_text())["scored"] == 3
    cls = json.loads((out / "test_result" / "summary_classes_acc.json").read_text())
    assert cls["overall"]["total"] == 6 and cls["overall"]["subjects"] == 2
    res = CliRunner().invoke(app, args[:-2] + ["--subjects", "no_such_subject", "--out", str(out)])
    assert res.exit_code == 2 and "unknown MMLU subject" in res.output
