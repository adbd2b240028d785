"""tokenizer.model-only checkpoints (as Meta's ship): every stage writes them without transformers' converters."""
import shutil

import pytest
from typer.testing import CliRunner


runner = CliRunner()


def _cli(app_mod, *args):
    import importlib

    return runner.invoke(importlib.import_module(app_mod).app, [str(a) for a in args])


@pytest.fixture(scope="module")
def sp_ckpt(sp_only_hf):
    d = sp_only_hf
    assert not (d / "tokenizer.json").exists() and not (d / "tokenizer_config.json").exists()
    return d


@pytest.fixture
def no_converters(monkeypatch):
    """Any use of transformers' tokenizer loading/saving/conversion fails, as without protobuf/tiktoken."""
    import importlib

    import transformers
    from transformers import tokenization_utils_base

    convert_slow_tokenizer = importlib.import_module("transformers.convert_slow_tokenizer")

    def boom(*a, **k):
        raise RuntimeError("`tiktoken` is required to read a `tiktoken` file (simulated missing converter)")

    monkeypatch.setattr(tokenization_utils_base.PreTrainedTokenizerBase, "save_pretrained", boom)
    monkeypatch.setattr(tokenization_utils_base.PreTrainedTokenizerBase, "from_pretrained", classmethod(boom))
    monkeypatch.setattr(convert_slow_tokenizer, "convert_slow_tokenizer", boom)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", boom)


def _check_sp_dir(d):
    assert (d / "tokenizer.model").is_file()
    assert not (d / "tokenizer.json").exists()  # nothing was converted
    from transformers import LlamaTokenizer

    from runtime.tokenizer import load_tokenizer

    ours = load_tokenizer(d)
    hf = LlamaTokenizer.from_pretrained(str(d))  # transformers reads the copied tokenizer.model itself
    for s in ("Hello world", "The capital of France is Paris.", "Once upon a time, 3 + 4 = 7"):
        assert hf(s)["input_ids"] == ours.encode(s), s
    assert ours.encode("Hello world") == [1, 15043, 3186]


def _quantize_args(src, out, data_dir):
    return ["quantize", "--model", src, "--calib-data", data_dir / "wikitext-2-raw" / "wiki.valid.raw",
            "--calib-samples", 2, "--calib-seq-len", 32, "--float-layers", "", "--sens-samples", 1, "--out", out]


def test_quantize_and_run_without_converters(sp_ckpt, data_dir, tmp_path, monkeypatch, no_converters):
    out = tmp_path / "art"
    r = _cli("compress.cli", *_quantize_args(sp_ckpt, out, data_dir))
    assert r.exit_code == 0, r.output
    r = _cli("runtime.cli", "run", "--quant", out, "--prompt", "Hello world", "--max-new-tokens", 2)
    assert r.exit_code == 0, r.output
    monkeypatch.undo()  # transformers' own reader back: it must load what was written
    _check_sp_dir(out / "anti_weight")


def test_import_and_sparse_without_converters(sp_ckpt, data_dir, tmp_path, monkeypatch, no_converters):
    imp = tmp_path / "imp"
    r = _cli("compress.cli", "import", sp_ckpt, "--out", imp)
    assert r.exit_code == 0, r.output
    sp = tmp_path / "sp"
    r = _cli("compress.cli", "sparse", "--model", sp_ckpt, "--sparsity", 0.5, "--calib-data",
             data_dir / "wikitext-2-raw" / "wiki.valid.raw", "--calib-samples", 2, "--calib-seq-len", 32,
             "--float-layers", "", "--out", sp)
    assert r.exit_code == 0, r.output
    monkeypatch.undo()
    _check_sp_dir(imp)
    _check_sp_dir(sp / "anti_weight")


def test_source_tokenizer_config_travels(data_dir, tmp_path):
    """A shipped tokenizer_config.json (add_bos_token false here) is copied, and the copy is honoured."""
    import json

    from runtime.tokenizer import load_tokenizer

    src = tmp_path / "src"
    src.mkdir()
    shutil.copyfile(data_dir / "llama2-tokenizer" / "tokenizer.model", src / "tokenizer.model")
    (src / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": False, "tokenizer_class": "LlamaTokenizer"}))
    load_tokenizer(src).save(tmp_path / "dst")
    assert json.loads((tmp_path / "dst" / "tokenizer_config.json").read_text())["add_bos_token"] is False
    assert load_tokenizer(tmp_path / "dst").encode("Hello world") == [15043, 3186]
