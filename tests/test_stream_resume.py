"""The layer-streamed compress quantize: an interrupted run resumes from its last finished layer and writes the
same bytes as a straight run; a partial run of another command is discarded, not resumed."""
import hashlib

import pytest


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


class Killed(BaseException):
    """Stands for a kill: not an Exception, so nothing on the way up may swallow it."""


def _opts(**kw):
    from compress.quantize import QuantizeOptions

    return QuantizeOptions(calib_samples=4, calib_seq_len=64, disable_level=1, sens_samples=2, **kw)


def test_interrupted_run_resumes_and_gives_the_straight_runs_bytes(tmp_path, data_dir, stories_hf):
    from compress.quantize import run_quantize

    hf, tok = stories_hf
    quiet = dict(progress=False, log=lambda *a: None)
    run_quantize(hf, "stories260k", tok, tmp_path / "straight", data_dir / "ceval", _opts(), **quiet)

    done = []

    def kill_after_layer_2(i):
        done.append(i)
        if i == 2:
            raise Killed

    with pytest.raises(Killed):
        run_quantize(hf, "stories260k", tok, tmp_path / "resumed", data_dir / "ceval", _opts(), **quiet,
                     after_layer=kill_after_layer_2)
    partial = tmp_path / ".resumed.partial"
    assert partial.is_dir() and not (tmp_path / "resumed").exists()
    assert done == [0, 1, 2]
    logs = []
    again = []
    run_quantize(hf, "stories260k", tok, tmp_path / "resumed", data_dir / "ceval", _opts(), progress=False,
                 log=logs.append, after_layer=again.append)
    assert again == [3, 4], "layers 0-2 were finished and must not be redone"
    assert any("resuming from layer 3" in s for s in logs)
    assert not partial.exists(), "the working directory is removed once the artifact is written"
    assert _digest(tmp_path / "resumed") == _digest(tmp_path / "straight")


def test_partial_run_of_another_command_is_discarded(tmp_path, data_dir, stories_hf):
    from compress.quantize import run_quantize

    hf, tok = stories_hf

    def stop(i):
        raise Killed

    with pytest.raises(Killed):
        run_quantize(hf, "stories260k", tok, tmp_path / "a", data_dir / "ceval", _opts(), progress=False,
                     log=lambda *a: None, after_layer=stop)
    logs, seen = [], []
    run_quantize(hf, "stories260k", tok, tmp_path / "a", data_dir / "ceval", _opts(range_search="minmax"),
                 progress=False, log=logs.append, after_layer=seen.append)
    assert seen == [0, 1, 2, 3, 4]
    assert any("discarding" in s and "different command" in s for s in logs)


def test_anti_weight_shards_are_the_work_files_linked_or_copied_alike(tmp_path, data_dir, stories_hf, monkeypatch):
    """anti_weight/ takes the work directory's float files as hard links; where the file system has none it
    copies them, to the same bytes; and transformers loads the shards it is made of."""
    import os

    import torch
    from transformers import LlamaForCausalLM

    from compress.quantize import run_quantize
    from compress.stream import assemble

    hf, tok = stories_hf
    quiet = dict(progress=False, log=lambda *a: None)
    links = []
    real_link = os.link
    monkeypatch.setattr(assemble.os, "link", lambda a, b: (links.append(b), real_link(a, b)))
    run_quantize(hf, "stories260k", tok, tmp_path / "linked", data_dir / "ceval", _opts(), **quiet)
    shards = [p for p in links if p.parent.name == "anti_weight"]  # (the pre-flight's probe links too)
    assert len(shards) == 1 + 5, "the head and one shard per layer (stories260K: 5 layers)"

    def no_links(a, b):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(assemble.os, "link", no_links)
    logs = []
    run_quantize(hf, "stories260k", tok, tmp_path / "copied", data_dir / "ceval", _opts(), progress=False,
                 log=logs.append)
    assert any("no hard links" in s for s in logs)
    assert _digest(tmp_path / "copied") == _digest(tmp_path / "linked")
    anti = tmp_path / "linked" / "anti_weight"
    assert (anti / "model.safetensors.index.json").is_file() and len(list(anti.glob("model-*.safetensors"))) == 6
    m = LlamaForCausalLM.from_pretrained(str(anti))  # refuses missing or unexpected tensors loudly enough:
    from runtime.loaders import open_source

    src = open_source(anti)
    sd = m.state_dict()
    for n in src.names():
        assert torch.equal(sd[n], src.get(n)), n


def test_unset_options_are_not_in_the_resume_fingerprint(tmp_path, data_dir, stories_hf):
    """A partial run written before an option existed (so without its key) resumes when that option is unset."""
    import json

    from compress.quantize import run_quantize

    hf, tok = stories_hf

    def stop(i):
        if i == 1:
            raise Killed

    with pytest.raises(Killed):
        run_quantize(hf, "stories260k", tok, tmp_path / "a", data_dir / "ceval", _opts(), progress=False,
                     log=lambda *a: None, after_layer=stop)
    run = tmp_path / ".a.partial" / "run.json"
    fp = json.loads(run.read_text())
    assert "kv_prefix" not in fp["fingerprint"]["options"], "an unset option is left out"
    logs, seen = [], []
    run_quantize(hf, "stories260k", tok, tmp_path / "a", data_dir / "ceval", _opts(), progress=False,
                 log=logs.append, after_layer=seen.append)
    assert seen == [2, 3, 4]
