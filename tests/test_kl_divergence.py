"""`runtime ppl --kl-divergence`: KL(P_float || Q) and top-1 agreement, checked against an independent float64
computation on transformers' own logits, on models whose relation is known."""
import json
import math
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from conftest import DATA, make_tiny_hf

TOK = DATA / "stories260K" / "tok512.model"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny random model A (vocab 512, stories260K's tokenizer fits it) and relatives of it:
    `hot`: lm_head x 0.5 (the same logits at temperature 2: the top token never changes);
    `noisy`: lm_head plus noise (top tokens change sometimes)."""
    root = tmp_path_factory.mktemp("kl")
    a = make_tiny_hf(root / "a", layers=2, vocab=512, hidden=64, inter=128, seed=1)
    out = {"a": a}
    for name, edit in {"hot": lambda w: w * 0.5,
                       "noisy": lambda w: w + 0.02 * torch.randn(w.shape, generator=torch.Generator().manual_seed(3))}.items():
        d = root / name
        shutil.copytree(a, d)
        t = load_file(str(d / "model.safetensors"))
        t["lm_head.weight"] = edit(t["lm_head.weight"]).contiguous()
        save_file(t, str(d / "model.safetensors"), metadata={"format": "pt"})
        out[name] = d
    text = root / "text.raw"
    raw = (DATA / "wikitext-2-raw" / "wiki.test.raw").read_text(encoding="utf-8")
    text.write_text(raw[:3000], encoding="utf-8")
    out["text"] = text
    return out


def _independent(model_p, model_q, windows):
    """Per-position KL(P||Q), same-top and both NLLs from transformers' logits, in float64 numpy."""
    from transformers import LlamaForCausalLM

    hp = LlamaForCausalLM.from_pretrained(str(model_p)).eval()
    hq = LlamaForCausalLM.from_pretrained(str(model_q)).eval()
    kl, same, nllp, nllq = [], [], [], []
    with torch.no_grad():
        for ids, first in windows:
            lp = hp(input_ids=ids).logits[0, first - 1:-1].double().numpy()
            lq = hq(input_ids=ids).logits[0, first - 1:-1].double().numpy()
            tgt = ids[0, first:].numpy()
            lp = lp - lp.max(-1, keepdims=True)
            lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
            lq = lq - lq.max(-1, keepdims=True)
            lq = lq - np.log(np.exp(lq).sum(-1, keepdims=True))
            kl.append((np.exp(lp) * (lp - lq)).sum(-1))
            same.append(lp.argmax(-1) == lq.argmax(-1))
            nllp.append(-lp[np.arange(len(tgt)), tgt])
            nllq.append(-lq[np.arange(len(tgt)), tgt])
    return [np.concatenate(x) for x in (kl, same, nllp, nllq)]


def _ppl(args):
    from runtime.cli import app

    return CliRunner().invoke(app, ["ppl", "--tokenizer", str(TOK), "--window", "64", "--stride", "64"] + args)


def _windows(models):
    from runtime.perplexity import load_windows
    from runtime.tokenizer import load_tokenizer

    return load_windows(load_tokenizer(TOK), models["text"], 64, 64, None, "hf")


@pytest.mark.parametrize("q", ["hot", "noisy"])
def test_kl_matches_independent_computation(models, q, tmp_path):
    out = tmp_path / "r.json"
    res = _ppl(["--model", str(models[q]), "--base", str(models["a"]), "--kl-divergence",
                "--data", str(models["text"]), "--json", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    for k in ("ppl", "ppl_float", "kld_mean", "kld_median", "kld_p99", "top1_agreement", "windows", "tokens"):
        assert k in r, k
    kl, same, nllp, nllq = _independent(models["a"], models[q], _windows(models))
    assert r["tokens"] == kl.size and r["windows"] == len(_windows(models)) and r["windows"] > 3
    assert r["kld_mean"] == pytest.approx(kl.mean(), rel=1e-4)
    assert r["kld_median"] == pytest.approx(np.median(kl), rel=1e-4)
    assert r["kld_p99"] == pytest.approx(np.percentile(kl, 99), rel=1e-4)
    assert r["ppl_float"] == pytest.approx(math.exp(nllp.mean()), rel=1e-5)
    assert r["ppl"] == pytest.approx(math.exp(nllq.mean()), rel=1e-5)
    assert r["top1_agreement"] == pytest.approx(same.mean(), abs=0.5 / kl.size)
    assert kl.mean() > 1e-3  # the relatives really differ, so the comparison above means something
    if q == "hot":  # temperature scaling keeps every argmax
        assert r["top1_agreement"] == 1.0
    else:
        assert 0.3 < r["top1_agreement"] < 1.0


def test_kl_of_a_model_with_itself_is_zero(models, tmp_path):
    out = tmp_path / "r.json"
    res = _ppl(["--model", str(models["a"]), "--base", str(models["a"]), "--kl-divergence",
                "--data", str(models["text"]), "--json", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["kld_mean"] == 0.0 and r["kld_p99"] == 0.0 and r["top1_agreement"] == 1.0
    assert r["ppl"] == r["ppl_float"]


def test_cached_reference_gives_the_live_figures(models, tmp_path):
    cache, live, cached, plain = tmp_path / "a.kld", tmp_path / "live.json", tmp_path / "cached.json", tmp_path / "p.json"
    data = ["--data", str(models["text"])]
    # without --kl-divergence: the scored model's own logits are saved (llama.cpp's --kl-divergence-base)
    res = _ppl(["--model", str(models["a"]), "--kl-divergence-base", str(cache), "--json", str(plain)] + data)
    assert res.exit_code == 0, res.output
    assert cache.exists() and not list(tmp_path.glob(".a.kld.tmp-*"))
    res = _ppl(["--model", str(models["noisy"]), "--base", str(models["a"]), "--kl-divergence", "--json", str(live)] + data)
    assert res.exit_code == 0, res.output
    res = _ppl(["--model", str(models["noisy"]), "--kl-divergence", "--kl-divergence-base", str(cache),
                "--json", str(cached)] + data)
    assert res.exit_code == 0, res.output
    a, b, p = (json.loads(x.read_text()) for x in (live, cached, plain))
    assert b["ppl_float"] == pytest.approx(p["ppl"], rel=1e-6)  # NLL stored in float32
    assert b["ppl_float"] == pytest.approx(a["ppl_float"], rel=1e-6) and b["ppl"] == a["ppl"]
    assert b["top1_agreement"] == a["top1_agreement"]  # top-1 ids are stored exactly
    assert b["kld_mean"] == pytest.approx(a["kld_mean"], rel=1e-3)  # float16 log-probs
    res = _ppl(["--model", str(models["a"]), "--kl-divergence", "--kl-divergence-base", str(cache),
                "--json", str(cached)] + data)
    assert res.exit_code == 0, res.output
    assert json.loads(cached.read_text())["kld_mean"] < 1e-5
    # with --kl-divergence and a missing file: the live reference is used and written on the way
    second, w = tmp_path / "b.kld", tmp_path / "w.json"
    res = _ppl(["--model", str(models["noisy"]), "--base", str(models["a"]), "--kl-divergence",
                "--kl-divergence-base", str(second), "--json", str(w)] + data)
    assert res.exit_code == 0, res.output
    assert json.loads(w.read_text())["kld_mean"] == a["kld_mean"]
    from runtime.kl_divergence import CachedReference

    wins = _windows(models)
    r1, r2 = CachedReference(cache, wins, 512), CachedReference(second, wins, 512)
    for i, (ids, first) in enumerate(wins):  # the same reference, whichever way the file was written
        x, y = r1.window(i, ids, first), r2.window(i, ids, first)
        assert torch.equal(x.logprobs, y.logprobs) and torch.equal(x.top1, y.top1) and torch.equal(x.nll, y.nll)
    # other windows: refused, naming the cause
    res = _ppl(["--model", str(models["noisy"]), "--kl-divergence", "--kl-divergence-base", str(cache),
                "--windows", "2"] + data)
    assert res.exit_code == 2 and "other windows" in res.output
    res = _ppl(["--model", str(models["noisy"]), "--kl-divergence", "--kl-divergence-base", str(cache),
                "--text-recipe", "raw"] + data)
    assert res.exit_code == 2 and "other windows" in res.output
    cache.write_bytes(cache.read_bytes()[:-10])
    res = _ppl(["--model", str(models["noisy"]), "--kl-divergence", "--kl-divergence-base", str(cache)] + data)
    assert res.exit_code == 2 and "truncated" in res.output


def test_kl_needs_a_reference(models):
    res = _ppl(["--model", str(models["a"]), "--kl-divergence", "--data", str(models["text"])])
    assert res.exit_code == 2 and "--base" in res.output
    res = _ppl(["--model", str(models["a"]), "--base", str(models["a"]), "--data", str(models["text"])])
    assert res.exit_code == 2 and "--kl-divergence" in res.output
    res = _ppl(["--model", str(models["a"]), "--text-recipe", "wiki", "--data", str(models["text"])])
    assert res.exit_code == 2 and "--text-recipe 'wiki'" in res.output


def test_artifact_against_its_float_model(tmp_path, data_dir, stories_hf):
    """--quant: the reference is anti_weight/, which computes the source's function: its ppl is the source's."""
    from compress.quantize import QuantizeOptions, run_quantize
    from runtime.cli import app

    hf, tok = stories_hf
    art = tmp_path / "art"
    run_quantize(hf, "stories260k", tok, art, data_dir / "ceval",
                 QuantizeOptions(calib_samples=4, calib_seq_len=128, disable_level=0), progress=False,
                 log=lambda *a: None)
    kl, fl, q = tmp_path / "kl.json", tmp_path / "f.json", tmp_path / "q.json"
    common = ["--data", str(data_dir / "wikitext-2-raw" / "wiki.valid.raw"), "--windows", "4", "--window", "128",
              "--stride", "128"]
    for args, out in ((["--quant", str(art), "--kl-divergence"], kl), (["--model", "stories260k"], fl),
                      (["--quant", str(art)], q)):
        res = CliRunner().invoke(app, ["ppl"] + args + common + ["--json", str(out)])
        assert res.exit_code == 0, res.output
    r, f, p = (json.loads(x.read_text()) for x in (kl, fl, q))
    assert r["ppl"] == pytest.approx(p["ppl"], rel=1e-6)
    assert r["ppl_float"] == pytest.approx(f["ppl"], rel=1e-4)
    assert r["kld_mean"] > 0 and r["kld_median"] <= r["kld_p99"]
    assert 0.5 < r["top1_agreement"] < 1.0
