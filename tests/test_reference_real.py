"""The runtime against independent references on real trained weights."""
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from runtime.engine import Engine
from runtime.loaders import open_source
from runtime.loading import build_model


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    err = (got - want).abs().max().item()
    assert err <= 1e-4 * want.abs().max().item(), f"max abs diff {err}"


@pytest.fixture(scope="module")
def smollm2_pair(smollm2_path, smollm2_hf_dir):
    # reference: transformers' own GGUF reader; ours: our GGUF import written as an HF dir
    ref = AutoModelForCausalLM.from_pretrained(str(smollm2_path.parent), gguf_file=smollm2_path.name,
                                               dtype=torch.float32).eval()
    return ref, build_model(open_source(smollm2_hf_dir))


def test_smollm2_logits_and_greedy_match_transformers_gguf(smollm2_pair):
    ref, ours = smollm2_pair
    ids = torch.tensor([[1780, 314, 260, 3575, 282, 4649, 47, 198, 504, 3575]])
    with torch.no_grad():
        want = ref(ids).logits
    _close(Engine(ours).logits(ids), want)
    prompt = torch.tensor([[504, 3575, 282, 4649, 314]])  # "The capital of France is"
    with torch.no_grad():
        want_ids = ref.generate(prompt, max_new_tokens=32, do_sample=False, eos_token_id=None, pad_token_id=2)[0, 5:]
    got = Engine(ours, eos_ids=[]).generate(prompt, max_new_tokens=32).output_ids[0]
    assert got.tolist() == want_ids.tolist()


def test_smollm2_gguf_direct_equals_import(smollm2_path, smollm2_hf_dir):
    a, b = open_source(smollm2_path), open_source(smollm2_hf_dir)
    for n in ("model.layers.3.self_attn.q_proj.weight", "model.layers.3.self_attn.k_proj.weight",
              "model.layers.0.mlp.down_proj.weight", "model.embed_tokens.weight"):
        assert torch.equal(a.get(n), b.get(n)), n


@pytest.fixture(scope="module")
def stories_reference(data_dir):
    return json.loads((data_dir / "stories260K" / "reference_greedy.json").read_text())


@pytest.mark.parametrize("fname", ["stories260K.bin", "stories260K.gguf"])
def test_stories260k_greedy_equals_reference(data_dir, stories_reference, fname):
    m = build_model(open_source(data_dir / "stories260K" / fname))
    eng = Engine(m, max_seq_len=512, eos_ids=[])
    fb = stories_reference["from_bos"]
    g = eng.generate(torch.tensor([fb["input_ids"]]), max_new_tokens=len(fb["generated_ids"]))
    assert g.output_ids[0].tolist() == fb["generated_ids"]
    top = eng.logits(torch.tensor([fb["input_ids"]]))[0, 0].topk(5)
    assert top.indices.tolist() == fb["position0_top5_ids"]
    assert torch.allclose(top.values, torch.tensor(fb["position0_top5_logits"]), atol=1e-3)
    fp = stories_reference["from_prompt"]
    n_new = fp["total_len"] - len(fp["input_ids"])
    g2 = eng.generate(torch.tensor([fp["input_ids"]]), max_new_tokens=n_new)
    assert g2.output_ids[0].tolist() == fp["generated_ids"][-n_new:]


def test_stories260k_logits_match_transformers(data_dir, tmp_path):
    from runtime.hf_export import export_hf_dir
    from runtime.tokenizer import load_tokenizer

    src = open_source(data_dir / "stories260K" / "stories260K.bin")
    d = export_hf_dir(src, load_tokenizer(data_dir / "stories260K" / "tok512.model"), tmp_path / "hf")
    ref = LlamaForCausalLM.from_pretrained(str(d), dtype=torch.float32).eval()
    gg = AutoModelForCausalLM.from_pretrained(str(data_dir / "stories260K"), gguf_file="stories260K.gguf", pad_token_id=0,
                                              dtype=torch.float32).eval()
    ids = torch.tensor([[1, 403, 407, 261, 378, 20, 30, 40, 50, 60, 70]])
    ours = Engine(build_model(src)).logits(ids)
    with torch.no_grad():
        _close(ours, ref(ids).logits)
        _close(ours, gg(ids).logits)  # transformers' own GGUF reading of the same weights
