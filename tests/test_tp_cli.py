"""`runtime run` under torchrun: single node (sliced at load, --bind-cpu) and two nodes over a c10d
rendezvous on 127.0.0.1 (a `compress cut` directory), against the single-process run."""
import json

import pytest
import torch
from typer.testing import CliRunner

from tp_helpers import finish, free_port, torchrun

PROMPT = "Once upon a time"
NEW = 24


@pytest.fixture(scope="module")
def tp1_ids():
    from runtime.commands.run import encode_batch, load_for_run

    engine, tok, _ = load_for_run("stories260k", None, None, None, "fp32", "cpu", 256)
    ids, mask = encode_batch(tok, [PROMPT])
    return engine.generate(ids, mask, NEW).output_ids.tolist()


def run_args(model: str, out) -> list[str]:
    return ["-m", "runtime.cli", "run", "--model", model, "--prompt", PROMPT, "--max-new-tokens", str(NEW),
            "--max-seq-len", "256", "--json", str(out)]


def test_single_node_tp2_sliced_at_load(tmp_path, tp1_ids):
    out = torchrun(run_args("stories260k", tmp_path / "o.json") + ["--bind-cpu"], nproc=2)
    assert json.loads((tmp_path / "o.json").read_text())["output_ids"] == tp1_ids
    assert out.count("model: ") == 1 and "TP 2" in out  # only rank 0 prints


def test_two_nodes_on_loopback_from_cut_dir(tmp_path, tp1_ids):
    from compress.cut import cut

    cut("stories260k", 4, tmp_path / "cut4", progress=False)
    port = free_port()
    rdzv = ["--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "tp-test"]
    nodes = [torchrun(run_args(str(tmp_path / "cut4"), tmp_path / f"o{n}.json"), nproc=2,
                      extra=rdzv + ["--node-rank", str(n)], wait=False) for n in (0, 1)]
    outs = [finish(p) for p in nodes]
    assert json.loads((tmp_path / "o0.json").read_text())["output_ids"] == tp1_ids
    assert not (tmp_path / "o1.json").exists() and "model: " not in outs[1]  # node 1 holds ranks 2, 3


def test_cut_dir_needs_its_world_size(tmp_path):
    from compress.cli import app as compress_app
    from runtime.cli import app

    r = CliRunner().invoke(compress_app, ["cut", "stories260k", "--tp", "2", "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(compress_app, ["cut", "stories260k", "--tp", "3", "--out", str(tmp_path / "d")])
    assert r.exit_code == 2 and "does not divide the model's 8 attention heads" in r.output
    r = CliRunner().invoke(app, ["run", "--model", str(tmp_path / "c"), "--max-new-tokens", "2"])
    assert r.exit_code == 2 and "cut for 2 ranks but this run has 1" in r.output
