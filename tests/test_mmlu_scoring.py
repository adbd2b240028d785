"""MMLU scoring on real data with SmolLM2-135M: against transformers, batch 1 vs 8, prefix reuse vs full."""
import csv

import pytest
import torch

from runtime.engine import Engine
from runtime.loaders import open_source
from runtime.loading import build_model
from runtime.mmlu import run_mmlu
from runtime.mmlu.data import read_csv, split_path
from runtime.mmlu.prompt import full_prompt, letter_token_ids
from runtime.mmlu.scoring import encode_items
from runtime.tokenizer import load_tokenizer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol(smollm2_hf_dir):
    model = build_model(open_source(smollm2_hf_dir))
    return model, load_tokenizer(smollm2_hf_dir)


def _rows(out):
    with open(out / "test_result" / "cache.csv", newline="") as f:
        return list(csv.reader(f))[1:]


def test_letter_logits_match_transformers(smol, smollm2_hf_dir, data_dir):
    """The scored logits equal an independent forward pass over the same protocol prompt."""
    from transformers import LlamaForCausalLM

    model, tok = smol
    ref = LlamaForCausalLM.from_pretrained(str(smollm2_hf_dir), dtype=torch.float32).eval()
    mm = data_dir / "mmlu"
    dev = read_csv(split_path(mm, "dev", "astronomy"), "astronomy")
    qs = read_csv(split_path(mm, "test", "astronomy"), "astronomy")[:2]
    letters = letter_token_ids(tok)
    eng = Engine(model)
    for q in qs:
        ids = tok.encode(full_prompt(q, dev, 5))
        with torch.no_grad():
            want = ref(torch.tensor([ids])).logits[0, -1, letters]
        got = eng.logits(torch.tensor([ids]), last_only=True)[0, -1, letters]
        assert (got - want).abs().max() < 1e-3 * want.abs().max()
        assert int(got.argmax()) == int(want.argmax())


def test_prefix_reuse_equals_full_recompute(smol):
    """Engine.logits_after_prefix over a shared prefix equals Engine.logits on the whole prompts."""
    model, tok = smol
    eng = Engine(model)
    prefix = tok.encode("The following are multiple choice questions (with answers) about  anatomy.\n\nWhat is")
    suffixes = [tok.encode(" the largest bone?\nAnswer:"), tok.encode(" a cell?"), tok.encode(" it")]
    pc = eng.prefill_prefix(prefix, batch=3, room=max(map(len, suffixes)))
    got = eng.logits_after_prefix(pc, suffixes)
    fulls = [prefix + s for s in suffixes]
    for i, f in enumerate(fulls):
        want = eng.logits(torch.tensor([f]), last_only=True)[0, -1]
        assert torch.allclose(got[i], want, atol=1e-4, rtol=1e-4), i
    # a smaller last batch reuses the same cache rows; the prefix survives earlier calls
    again = eng.logits_after_prefix(pc, suffixes[1:2])
    assert torch.allclose(again[0], got[1], atol=1e-4, rtol=1e-4)


def test_batch1_batch8_and_full_recompute_agree_on_real_mmlu(smol, tmp_path):
    model, tok = smol
    eng = Engine(model, max_seq_len=2048)
    subjects = ["high_school_geography", "college_physics"]
    runs = {}
    for name, kw in {"b1": dict(batch=1), "b8": dict(batch=8),
                     "full_b8": dict(batch=8, prefix_cache=False, limit=8)}.items():
        kw = {"limit": 16, **kw}
        run_mmlu(eng, tok, None, tmp_path / name, subjects=subjects, progress=False, **kw)
        runs[name] = {(r[0], r[1]): r for r in _rows(tmp_path / name)}
    assert len(runs["b1"]) == 32 and runs["b1"].keys() == runs["b8"].keys()
    # identical predictions; the scores may differ in the last float bits only
    assert [r[3] for r in runs["b1"].values()] == [runs["b8"][k][3] for k in runs["b1"]]
    for k, r in runs["full_b8"].items():  # no prefix reuse, left-padded batches
        assert r[3] == runs["b1"][k][3], k
        assert all(abs(float(a) - float(b)) < 1e-4 for a, b in zip(r[4:8], runs["b1"][k][4:8]))


def test_too_long_prompts_drop_shots_and_still_agree(smol, tmp_path):
    """Prompts over the limit drop shots (the protocol); prefix reuse then groups by shot count."""
    from runtime.errors import UserError
    from runtime.mmlu.data import default_data_dir

    model, tok = smol
    d, s = default_data_dir(), "high_school_european_history"  # 5-shot prompts exceed 2048 tokens here
    dev = read_csv(split_path(d, "dev", s), s)
    qs = read_csv(split_path(d, "test", s), s)[:12]
    items = encode_items(tok, qs, dev, 5, "hendrycks", 2048)
    assert all(len(it.ids) <= 2048 and it.shots < 5 for it in items)
    for it in items:  # one more shot would not have fitted
        assert len(tok.encode(full_prompt(it.q, dev, it.shots + 1))) > 2048
    with pytest.raises(UserError, match="even with no shots"):
        encode_items(tok, qs, dev, 5, "hendrycks", 420)
    eng = Engine(model, max_seq_len=420)  # college_medicine: 5-shot 450-574 tokens, 0-shot under 190
    subj = ["college_medicine"]
    run_mmlu(eng, tok, None, tmp_path / "p", subjects=subj, limit=6, batch=3, progress=False)
    run_mmlu(eng, tok, None, tmp_path / "f", subjects=subj, limit=6, batch=3, progress=False, prefix_cache=False)
    a, b = _rows(tmp_path / "p"), _rows(tmp_path / "f")
    assert len(a) == 6 and all(int(r[8]) < 5 for r in a)
    assert [r[3] for r in a] == [r[3] for r in b]
