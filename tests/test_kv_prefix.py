"""The attention-sink KV prefix (artifact format 1.3; runtime/kv_prefix.py, compress/stream/prefix.py).

Runtime: a model holding the prefix's keys/values computes what transformers' Llama computes when the
prefix tokens are prepended to the input (logits of the input positions, padded batches, greedy decode,
the MMLU prefix cache). Compressor: the stored keys/values are transformers' own for anti_weight/, the
calibration statistics never see the prefix positions, the resume fingerprint carries the option.
Format: a 1.2 reader refuses a prefixed artifact, `compress verify` checks it, the exporters refuse it.
"""
import json
import shutil

import pytest
import torch

from conftest import make_tiny_hf
from kv_prefix_helpers import hf_logits, hf_prefix_kv

PREFIX = [1, 7]


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return float((a - b).abs().max()) <= 1e-4 * float(b.abs().max())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A GQA tiny Llama (8 query / 2 KV heads) and the runtime's float model with the HF prefix attached."""
    from runtime.kv_prefix import KVPrefix, attach
    from runtime.loaders import open_source
    from runtime.loading import build_model

    d = make_tiny_hf(tmp_path_factory.mktemp("kvp") / "m", heads=8, kv_heads=2, hidden=64, inter=128, layers=2)
    model = build_model(open_source(d))
    k, v = hf_prefix_kv(d, PREFIX)
    attach(model, KVPrefix(PREFIX, k, v))
    return d, model


def test_logits_equal_transformers_with_the_prefix_prepended(tiny):
    from runtime.engine import Engine

    d, model = tiny
    ids = [5, 9, 33, 100, 7, 250]
    want = hf_logits(d, PREFIX + ids)[len(PREFIX):]
    got = Engine(model, 64).logits(torch.tensor([ids]))[0]
    assert _close(got, want)
    # the comparison can fail: without the prefix the logits are another function
    assert not _close(hf_logits(d, ids), want)


def test_padded_batch_and_greedy_decode_equal_transformers(tiny):
    from runtime.engine import Engine

    d, model = tiny
    rows = [[5, 9, 33, 100, 7], [200, 3, 17]]
    S = max(map(len, rows))
    ids = torch.tensor([[0] * (S - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (S - len(r)) + [1] * len(r) for r in rows])
    eng = Engine(model, 64, eos_ids=[])
    out = eng.logits(ids, mask)
    for b, r in enumerate(rows):
        assert _close(out[b, S - len(r):], hf_logits(d, PREFIX + r)[len(PREFIX):]), b
    gen = eng.generate(ids, mask, max_new_tokens=6).output_ids
    for b, r in enumerate(rows):  # transformers' greedy continuation of [prefix, row]
        seq = PREFIX + r
        for _ in range(6):
            seq = seq + [int(hf_logits(d, seq)[-1].argmax())]
        assert gen[b].tolist() == seq[len(PREFIX) + len(r):], b


def test_shared_prefix_cache_equals_transformers(tiny):
    """MMLU's few-shot header cache sits after the fixed prefix."""
    from runtime.engine import Engine

    d, model = tiny
    eng = Engine(model, 64)
    head, tails = [11, 12, 13, 14], [[40, 41], [50, 51, 52]]
    pc = eng.prefill_prefix(head, batch=2, room=8)
    got = eng.logits_after_prefix(pc, tails)
    for b, t in enumerate(tails):
        assert _close(got[b], hf_logits(d, PREFIX + head + t)[-1]), b


def test_max_seq_len_counts_the_prefix(tiny):
    from runtime.engine import Engine
    from runtime.errors import UserError

    _, model = tiny
    eng = Engine(model, 8)
    eng.logits(torch.tensor([[5] * 6]))  # 2 + 6 = 8 positions fit
    with pytest.raises(UserError, match="KV prefix"):
        eng.logits(torch.tensor([[5] * 7]))
    with pytest.raises(UserError, match="KV prefix"):
        eng.generate(torch.tensor([[5] * 5]), None, max_new_tokens=2)


# --- the compressor -----------------------------------------------------------------------------------
def _opts(**kw):
    from compress.quantize import QuantizeOptions

    return QuantizeOptions(calib_samples=4, calib_seq_len=64, disable_level=1, sens_samples=2, **kw)


@pytest.fixture(scope="module")
def prefixed(tmp_path_factory, data_dir, stories_hf, monkeypatch_module):
    """stories260K quantized with a 1-token prefix (its BOS), recording every statistics input's length."""
    from calibration.stats import StatsCollector
    from compress.quantize import run_quantize

    hf, tok = stories_hf
    seen: list[int] = []
    observe = StatsCollector.observe
    monkeypatch_module.setattr(StatsCollector, "observe", lambda self, key, x: (seen.append(x.shape[-2]),
                                                                                observe(self, key, x))[1])
    out = tmp_path_factory.mktemp("kvp-art") / "art"
    m = run_quantize(hf, "stories260k", tok, out, data_dir / "ceval", _opts(kv_prefix=(1,)), progress=False,
                     log=lambda *a: None)
    monkeypatch_module.undo()
    return out, m, seen


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_artifact_is_format_1_3_and_verifies(prefixed):
    from runtime.format.verify import verify_dir

    out, m, _ = prefixed
    assert m["format"]["version"] == "1.3.0"
    assert m["kv_prefix"]["token_ids"] == [1] and m["kv_prefix"]["length"] == 1
    assert (out / "k_prefix.safetensors").is_file() and (out / "v_prefix.safetensors").is_file()
    assert verify_dir(out)[2] == []


def test_stored_prefix_is_transformers_cache_of_anti_weight(prefixed):
    """The prefix stream of the streamed pass (float layers, after smoothing's folds: rotate_o rotates the
    values) gives the keys/values transformers computes for the artifact's own float model."""
    from runtime.quant.artifact import ANTI_DIR, open_artifact

    out, _, _ = prefixed
    k, v = hf_prefix_kv(out / ANTI_DIR, [1])
    art = open_artifact(out)
    for i in range(len(k)):
        assert _close(art.tensor(f"model.layers.{i}.self_attn.k_prefix"), k[i]), i
        assert _close(art.tensor(f"model.layers.{i}.self_attn.v_prefix"), v[i]), i


def test_statistics_never_see_the_prefix_positions(prefixed):
    _, _, seen = prefixed
    assert seen and set(seen) == {64}, "every statistics input holds the 64 calibration positions only"


def test_runtime_loads_it_with_the_prefix_and_says_so(prefixed):
    from runtime.quant_loading import load_artifact_model

    out, _, _ = prefixed
    model, _, desc = load_artifact_model(out)
    assert model.kv_prefix is not None and model.kv_prefix.token_ids == [1]
    assert "KV prefix of 1 token(s) [1]" in desc and "start at position 1" in desc


def test_a_1_2_reader_refuses_it(prefixed, monkeypatch):
    """A 1.2 reader knows the tensor kinds up to input_hadamard: it refuses the unknown kv-prefix files."""
    import runtime.schemes as S
    from runtime.errors import UserError
    from runtime.format.verify import read_artifact_manifest

    out, _, _ = prefixed
    monkeypatch.setattr(S, "ARTIFACT_KINDS", [k for k in S.ARTIFACT_KINDS if k not in ("k_prefix", "v_prefix")])
    with pytest.raises(UserError, match=r"k_prefix.safetensors.*upgrade llama-compress"):
        read_artifact_manifest(out)


@pytest.mark.parametrize("fmt", ["compressed-tensors", "msmodelslim"])
def test_exporters_refuse_it(prefixed, tmp_path, fmt):
    from compress.export import export_artifact
    from runtime.errors import UserError

    out, _, _ = prefixed
    with pytest.raises(UserError, match=r"KV prefix.*--kv-prefix none"):
        export_artifact(out, fmt, tmp_path / "x")


def test_verify_catches_a_prefix_that_disagrees_with_the_manifest(prefixed, tmp_path):
    from runtime.format.verify import verify_dir
    from runtime.quant.artifact import write_manifest

    out, _, _ = prefixed
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    m = json.loads((bad / "artifact.json").read_text())
    m.pop("files")
    m["kv_prefix"]["token_ids"] = [1, 2]  # two tokens claimed, one stored
    m["kv_prefix"]["length"] = 2
    write_manifest(bad, m)
    assert any("expected float32" in p for p in verify_dir(bad)[2])
    del m["kv_prefix"]
    write_manifest(bad, m)
    assert any("no 'kv_prefix'" in p for p in verify_dir(bad)[2])


class Killed(BaseException):
    pass


def test_resume_with_the_prefix_and_the_fingerprint_carries_it(tmp_path, data_dir, stories_hf, prefixed):
    from compress.quantize import run_quantize

    hf, tok = stories_hf

    def kill_at_1(i):
        if i == 1:
            raise Killed

    with pytest.raises(Killed):
        run_quantize(hf, "stories260k", tok, tmp_path / "r", data_dir / "ceval", _opts(kv_prefix=(1,)),
                     progress=False, log=lambda *a: None, after_layer=kill_at_1)
    assert (tmp_path / ".r.partial" / "prefix-00002.safetensors").is_file()
    again, logs = [], []
    run_quantize(hf, "stories260k", tok, tmp_path / "r", data_dir / "ceval", _opts(kv_prefix=(1,)),
                 progress=False, log=logs.append, after_layer=again.append)
    assert again == [2, 3, 4] and any("resuming from layer 2" in s for s in logs)
    straight = prefixed[0]
    for f in ("k_prefix.safetensors", "v_prefix.safetensors", "input_scale.safetensors", "quant_weight.safetensors"):
        assert (tmp_path / "r" / f).read_bytes() == (straight / f).read_bytes(), f
    # a partial run with the prefix is not resumed by the same command without it
    with pytest.raises(Killed):
        run_quantize(hf, "stories260k", tok, tmp_path / "s", data_dir / "ceval", _opts(kv_prefix=(1,)),
                     progress=False, log=lambda *a: None, after_layer=kill_at_1)
    logs, seen = [], []
    run_quantize(hf, "stories260k", tok, tmp_path / "s", data_dir / "ceval", _opts(), progress=False,
                 log=logs.append, after_layer=seen.append)
    assert seen == [0, 1, 2, 3, 4] and any("discarding" in s for s in logs)
    assert not (tmp_path / "s" / "k_prefix.safetensors").exists()
    assert json.loads((tmp_path / "s" / "artifact.json").read_text())["format"]["version"] == "1.2.0"


def test_kv_prefix_option_and_recipe_key():
    from compress.recipe import QuantizeRecipe
    from compress.stream.prefix import parse_prefix
    from runtime.errors import UserError

    assert parse_prefix("none") is None and parse_prefix(None) is None
    assert parse_prefix("0,198") == (0, 198)
    with pytest.raises(UserError, match="comma-separated token ids"):
        parse_prefix("eot")
    with pytest.raises(UserError, match="0..9"):
        parse_prefix("12", vocab_size=10)
    assert QuantizeRecipe.parse({"kv_prefix": [0, 198]}, "t").kv_prefix == "0,198"
