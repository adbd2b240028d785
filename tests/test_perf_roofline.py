"""The roofline's byte count against a plain count of the tensors, and the random-shape source."""
import pytest
import torch

from runtime.config import ModelConfig
from runtime.errors import UserError
from runtime.loaders.random_weights import RandomSource
from runtime.loading import build_model
from runtime.perf import decode_bytes, shape_config, weight_bytes_per_token
from runtime.perf.shapes import FastRandomSource

CFG = ModelConfig(hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=300)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_weight_bytes_match_checkpoint_count(dtype):
    src = RandomSource(CFG, 0, torch.float32)
    model = build_model(src, dtype)
    elt = torch.empty((), dtype=dtype).element_size()
    # independent count: every checkpoint tensor except the embedding, plus the embedding rows a step reads
    numel = sum(src.get(n).numel() for n in src.names() if n != "model.embed_tokens.weight")
    for batch in (1, 4):
        assert weight_bytes_per_token(model, batch) == (numel + batch * CFG.hidden_size) * elt
    kv = 2 * CFG.num_hidden_layers * 4 * CFG.num_key_value_heads * (100 + 50 / 2) * CFG.head_dim * elt
    assert decode_bytes(model, 4, 100, 50) == pytest.approx(weight_bytes_per_token(model, 4) + kv)


def test_shape_configs():
    c7 = shape_config("llama2-7b", 8)
    assert (c7.hidden_size, c7.intermediate_size, c7.num_hidden_layers, c7.num_key_value_heads) == (4096, 11008, 8, 32)
    t = shape_config("tinyllama-1.1b")
    assert (t.hidden_size, t.intermediate_size, t.num_hidden_layers, t.num_attention_heads,
            t.num_key_value_heads, t.head_dim) == (2048, 5632, 22, 32, 4, 64)
    assert shape_config("llama2-13b").hidden_size == 5120
    with pytest.raises(UserError):
        shape_config("llama2-70b")
    with pytest.raises(UserError):
        shape_config("llama2-7b", 33)


def test_fast_random_source_shapes_dtype_and_distinct_tensors():
    src = FastRandomSource(CFG, seed=0, dtype=torch.bfloat16)
    q0 = src.get("model.layers.0.self_attn.q_proj.weight")
    q1 = src.get("model.layers.1.self_attn.q_proj.weight")
    assert q0.dtype == torch.bfloat16 and q0.shape == (64, 64)
    assert q0.data_ptr() != q1.data_ptr() and not torch.equal(q0, q1)  # real, distinct memory per layer
    big = FastRandomSource(shape_config("tinyllama-1.1b", 1), 0, torch.bfloat16).get("model.layers.0.mlp.up_proj.weight")
    assert big.float().std().item() == pytest.approx(0.02, rel=0.05)  # the std RandomSource's normals have
    assert torch.equal(FastRandomSource(CFG, 0, torch.bfloat16).get("lm_head.weight"), src.get("lm_head.weight"))
