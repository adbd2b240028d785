"""The runtime against transformers' LlamaForCausalLM on random tiny configs."""
import pytest
import torch
from transformers import LlamaForCausalLM

from conftest import make_tiny_hf
from runtime.engine import Engine
from runtime.loaders import open_source
from runtime.loading import build_model

CONFIGS = {
    "mha-untied": dict(heads=4, kv_heads=4, tied=False),
    "gqa-tied": dict(heads=8, kv_heads=2, tied=True),
    "gqa-untied-theta": dict(heads=4, kv_heads=2, tied=False, rope_theta=500000.0),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def pair(request, tmp_path_factory):
    d = make_tiny_hf(tmp_path_factory.mktemp(request.param), **CONFIGS[request.param])
    ref = LlamaForCausalLM.from_pretrained(str(d), dtype=torch.float32).eval()
    ours = build_model(open_source(d))
    return ref, ours


def test_logits_match_transformers(pair):
    ref, ours = pair
    ids = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = ref(ids).logits
    got = Engine(ours).logits(ids)
    err = (got - want).abs().max().item()
    assert err <= 1e-4 * want.abs().max().item(), err


def test_greedy_matches_transformers(pair):
    ref, ours = pair
    ids = torch.tensor([[1, 17, 42, 99, 7]])
    with torch.no_grad():
        want = ref.generate(ids, max_new_tokens=32, do_sample=False, eos_token_id=None, pad_token_id=0)[0, 5:]
    got = Engine(ours, eos_ids=[]).generate(ids, max_new_tokens=32).output_ids[0]
    assert got.tolist() == want.tolist()
