"""Engine behaviour: padding, masks, KV cache, sampling, per-sequence EOS."""
import pytest
import torch

from runtime.engine import Engine
from runtime.loaders import open_source
from runtime.loading import build_model
from runtime.sampling import SamplingParams


@pytest.fixture(scope="module")
def stories(data_dir):
    return build_model(open_source(data_dir / "stories260K" / "stories260K.bin"))


PROMPTS = [[1, 403, 407, 261, 378], [1, 20, 33], [1, 403, 407, 261, 378, 11, 45, 300, 22, 9], [1]]


def _left_padded(prompts, pad=0):
    S = max(map(len, prompts))
    ids = torch.full((len(prompts), S), pad, dtype=torch.int64)
    mask = torch.zeros(len(prompts), S, dtype=torch.int64)
    for i, p in enumerate(prompts):
        ids[i, S - len(p):] = torch.tensor(p)
        mask[i, S - len(p):] = 1
    return ids, mask


def test_mixed_length_batch_equals_each_alone(stories):
    eng = Engine(stories, max_seq_len=512, eos_ids=[])
    ids, mask = _left_padded(PROMPTS)
    batch = eng.generate(ids, mask, max_new_tokens=24).output_ids
    for i, p in enumerate(PROMPTS):
        alone = eng.generate(torch.tensor([p]), max_new_tokens=24).output_ids[0]
        assert batch[i].tolist() == alone.tolist(), i


def test_right_padding_and_4d_mask_are_understood(stories):
    eng = Engine(stories, max_seq_len=512, eos_ids=[])
    ids, mask = _left_padded(PROMPTS)
    want = eng.generate(ids, mask, max_new_tokens=8).output_ids
    S = ids.shape[1]
    rids = torch.zeros_like(ids)
    rmask = torch.zeros_like(mask)
    for i, p in enumerate(PROMPTS):  # the same prompts padded on the right
        rids[i, : len(p)] = torch.tensor(p)
        rmask[i, : len(p)] = 1
    assert eng.generate(rids, rmask, max_new_tokens=8).output_ids.tolist() == want.tolist()
    # the guide's FLOAT32 [B,1,S,S] additive mask (causal + padding)
    causal = torch.ones(S, S, dtype=torch.bool).tril()
    allowed = causal[None] & mask.bool()[:, None, :]
    add = torch.zeros(len(PROMPTS), 1, S, S).masked_fill(~allowed[:, None], float("-inf"))
    assert eng.generate(ids, add, max_new_tokens=8).output_ids.tolist() == want.tolist()


def test_kv_cache_decode_equals_full_recompute(stories):
    eng = Engine(stories, max_seq_len=512, eos_ids=[])
    prompt = torch.tensor([PROMPTS[0]])
    g = eng.generate(prompt, max_new_tokens=16)
    full = torch.cat([prompt, g.output_ids], 1)
    ref = eng.logits(full)  # no cache: the whole sequence at once
    # logits the cached decode saw at each step = recomputed logits at the same positions
    cache = eng.model.new_cache(1, full.shape[1])
    pos = torch.arange(full.shape[1])[None]
    cos, sin = eng._rope(pos[:, :5])
    steps = [eng.model(full[:, :5], cos, sin, cache, 0, None)[:, -1]]
    for t in range(5, full.shape[1]):
        cos, sin = eng._rope(pos[:, t:t + 1])
        steps.append(eng.model(full[:, t:t + 1], cos, sin, cache, t, None)[:, -1])
    got = torch.stack(steps, 1)
    want = ref[:, 4:]
    assert (got - want).abs().max().item() <= 1e-4 * want.abs().max().item()


def test_batched_logits_equal_single(stories):
    eng = Engine(stories, max_seq_len=512)
    ids, mask = _left_padded(PROMPTS)
    last = eng.logits(ids, mask, last_only=True)[:, 0]
    for i, p in enumerate(PROMPTS):
        one = eng.logits(torch.tensor([p]), last_only=True)[0, 0]
        assert torch.allclose(last[i], one, atol=1e-4, rtol=1e-4)


def test_sampling_is_seeded(stories):
    eng = Engine(stories, max_seq_len=512, eos_ids=[])
    ids = torch.tensor([PROMPTS[0]])
    sp = SamplingParams(temperature=1.0, top_k=40, top_p=0.9, seed=7)
    a = eng.generate(ids, max_new_tokens=20, sampling=sp).output_ids
    b = eng.generate(ids, max_new_tokens=20, sampling=sp).output_ids
    c = eng.generate(ids, max_new_tokens=20, sampling=SamplingParams(1.0, 40, 0.9, seed=8)).output_ids
    greedy = eng.generate(ids, max_new_tokens=20).output_ids
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist() or a.tolist() != greedy.tolist()


def test_each_sequence_stops_at_its_own_eos(stories):
    eng = Engine(stories, max_seq_len=512, eos_ids=[])
    ids, mask = _left_padded(PROMPTS[:2])
    free = eng.generate(ids, mask, max_new_tokens=12).output_ids
    eos = int(free[0, 3])  # pretend the 4th token of row 0 is an end-of-sequence id
    eng2 = Engine(stories, max_seq_len=512, eos_ids=[eos], pad_id=0)
    g = eng2.generate(ids, mask, max_new_tokens=12)
    assert g.lengths[0] == 4 and g.output_ids[0, 3] == eos
    assert (g.output_ids[0, 4:] == 0).all()
    row1 = free[1].tolist()
    n1 = row1.index(eos) + 1 if eos in row1 else 12
    assert g.output_ids[1, :n1].tolist() == row1[:n1]
