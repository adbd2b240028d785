"""Bad input gets one clear error each, naming the problem and the fix."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import make_tiny_hf
from runtime.engine import Engine
from runtime.errors import UserError
from runtime.loaders import open_source
from runtime.loading import build_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_hf(tmp_path_factory.mktemp("tiny"))


def test_missing_path(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        open_source(tmp_path / "nope")


def test_config_that_does_not_match_tensors(tiny, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["num_hidden_layers"] = 3  # the checkpoint holds 2
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="does not match its config"):
        open_source(bad)
    cfg["num_hidden_layers"] = 2
    cfg["intermediate_size"] = 100  # wrong width
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="shape .* config.json implies"):
        build_model(open_source(bad))


def test_unsupported_gguf_type(tmp_path):
    import gguf

    p = tmp_path / "q5.gguf"
    w = gguf.GGUFWriter(str(p), "llama")
    for k, v in [("add_block_count", 1), ("add_embedding_length", 32), ("add_feed_forward_length", 64),
                 ("add_head_count", 4), ("add_context_length", 64)]:
        getattr(w, k)(v)
    w.add_tensor("token_embd.weight", np.zeros((16, 32), np.float32))
    raw = np.zeros((32, 32 // 32 * 22), np.uint8)  # Q5_0 blocks: 22 bytes per 32 values
    w.add_tensor("blk.0.attn_q.weight", raw, raw_dtype=gguf.GGMLQuantizationType.Q5_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(UserError, match="Q5_0.*not supported"):
        open_source(p)


def test_prompt_too_long_and_token_out_of_range(tiny):
    eng = Engine(build_model(open_source(tiny)), max_seq_len=16)
    with pytest.raises(UserError, match="exceeds max_seq_len 16"):
        eng.generate(torch.ones(1, 10, dtype=torch.int64), max_new_tokens=7)
    with pytest.raises(UserError, match="token id 256 is out of range"):
        eng.generate(torch.tensor([[1, 256]]), max_new_tokens=1)
    with pytest.raises(UserError, match="INT64"):
        eng.generate(torch.tensor([[1, 2]], dtype=torch.int32), max_new_tokens=1)


def test_cli_reports_error_without_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "runtime.cli", "run", "--model", str(tmp_path / "missing")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "error:" in r.stderr and "Traceback" not in r.stderr
