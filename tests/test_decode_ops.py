"""The fused bf16 decode ops (runtime/kernels/decode_ops_src.py) against float64 references of the same
arithmetic, and a bf16 model with them against the same model without them and against transformers in
float32. Tolerances are bf16/float32 rounding bounds, true on any x86 CPU with AVX-512."""
import math

import pytest
import torch
from transformers import LlamaForCausalLM

from conftest import make_tiny_hf
from runtime.kernels import decode

pytestmark = pytest.mark.skipif(decode.ops_reason() is not None, reason=f"fused ops: {decode.ops_reason()}")
BF16_HALF_ULP = 2 ** -8  # relative rounding error of one bf16 rounding, with room


@pytest.mark.parametrize("rows,K", [(1, 576), (3, 64), (8, 4096)])
def test_rms_norm_matches_float64(rows, K):
    g = torch.Generator().manual_seed(K + rows)
    x = (torch.randn(1, rows, K, generator=g) * 3).bfloat16()
    w = (torch.rand(K, generator=g) + 0.5).bfloat16()
    y = decode.rms_norm_bf16(x, w, 1e-5)
    xd = x.double()
    ref = w.double() * xd / torch.sqrt(xd.pow(2).mean(-1, keepdim=True) + 1e-5)
    # two bf16 roundings (the normalized row, the product) plus float32 sums
    assert y.dtype == torch.bfloat16 and y.shape == x.shape
    assert bool(((y.double() - ref).abs() <= 2 * BF16_HALF_ULP * ref.abs() + 1e-30).all())


def test_silu_mul_matches_float64():
    g = torch.Generator().manual_seed(0)
    f = 1536
    gu = (torch.randn(2, 1, 2 * f, generator=g) * 4).bfloat16()
    y = decode.silu_mul_bf16(gu, f)
    a, u = gu[..., :f].double(), gu[..., f:].double()
    ref = a * torch.sigmoid(a) * u
    assert y.shape == (2, 1, f)
    assert bool(((y.double() - ref).abs() <= 2 * BF16_HALF_ULP * ref.abs() + 1e-30).all())


def _rope64(x, cos, sin):
    h = x.shape[-1] // 2
    rot = torch.cat([-x[..., h:], x[..., :h]], -1)
    return x * cos + rot * sin


@pytest.mark.parametrize("B,H,Hkv,hd,pos", [(1, 9, 3, 64, 0), (2, 8, 2, 128, 37), (1, 4, 4, 16, 5)])
@pytest.mark.parametrize("masked", [False, True])
def test_attention_step_matches_float64(B, H, Hkv, hd, pos, masked):
    from runtime.config import ModelConfig
    from runtime.rope import rope_for_layers, rope_tables

    g = torch.Generator().manual_seed(B * 100 + pos + hd)
    Lmax = pos + 4
    qkv = torch.randn(B, 1, H + 2 * Hkv, hd, generator=g).bfloat16()
    kc = torch.randn(B, Hkv, Lmax, hd, generator=g).bfloat16()
    vc = torch.randn(B, Hkv, Lmax, hd, generator=g).bfloat16()
    kc0, vc0 = kc.clone(), vc.clone()
    cfg = ModelConfig(vocab_size=8, hidden_size=H * hd, intermediate_size=8, num_hidden_layers=1,
                      num_attention_heads=H, num_key_value_heads=Hkv, head_dim=hd)
    cos_t, sin_t = rope_tables(cfg, Lmax, torch.bfloat16, "cpu")
    cos, sin = rope_for_layers(cos_t[pos].expand(B, 1, 1, hd), sin_t[pos].expand(B, 1, 1, hd))
    cos, sin = cos.contiguous(), sin.contiguous()
    mask = None
    if masked:
        mask = torch.ones(B, pos + 1, dtype=torch.bool)
        mask[0, : pos // 2] = False  # left padding of row 0
    o = decode.attn_decode_bf16(qkv, cos, sin, kc, vc, H, pos, mask)
    assert o.shape == (B, 1, H * hd) and o.dtype == torch.bfloat16
    # the cache: only position pos changed; k there is RoPE(k) in bf16, v is v itself
    c64, s64 = cos_t[pos].double(), sin_t[pos].double()
    x = qkv[:, 0].double()
    q = _rope64(x[:, :H], c64, s64)
    k_new = _rope64(x[:, H:H + Hkv], c64, s64)
    keep = torch.ones(Lmax, dtype=torch.bool)
    keep[pos] = False
    assert torch.equal(kc[:, :, keep], kc0[:, :, keep]) and torch.equal(vc[:, :, keep], vc0[:, :, keep])
    assert torch.equal(vc[:, :, pos], qkv[:, 0, H + Hkv:])
    assert bool(((kc[:, :, pos].double() - k_new).abs() <= 2 * BF16_HALF_ULP * (x[:, H:H + Hkv].abs()
                 + x[:, H:H + Hkv].abs().roll(hd // 2, -1)) + 1e-30).all())
    # attention in float64 over the cache as written
    G = H // Hkv
    K = kc[:, :, : pos + 1].double().repeat_interleave(G, 1)
    V = vc[:, :, : pos + 1].double().repeat_interleave(G, 1)
    s = torch.einsum("bhd,bhld->bhl", q, K) / math.sqrt(hd)
    if mask is not None:
        s = s.masked_fill(~mask[:, None, :], float("-inf"))
    ref = torch.einsum("bhl,bhld->bhd", torch.softmax(s, -1), V).reshape(B, 1, H * hd)
    # q is rounded to bf16 (as the eager path and HF round it): scores move by <= 2^-8 sum|q k| / sqrt(hd), the
    # probabilities by e^(2 ds) - 1, the output by that times max|v|; plus the output's own bf16 rounding
    ds = 2 * BF16_HALF_ULP * torch.einsum("bhd,bhld->bhl", q.abs(), K.abs()).amax() / math.sqrt(hd)
    bound = (math.exp(2 * float(ds)) - 1) * V.abs().amax() + BF16_HALF_ULP * ref.abs()
    assert bool(((o.double() - ref).abs() <= bound + 1e-6).all())


def _decode_logits(model, ids, valid):
    """Prefill ids [B, S] (left-padded by `valid`), then feed 6 fixed tokens one at a time: logits per step."""
    from runtime.engine import Engine

    eng = Engine(model, max_seq_len=32)
    B, S = ids.shape
    pos = (valid.long().cumsum(1) - 1).clamp(min=0)
    cache = model.new_cache(B, S + 8)
    cos, sin = eng._rope(pos)
    mask = eng._prefill_mask(valid).unsqueeze(1)
    out = [model(ids, cos, sin, cache, 0, mask, last_only=True)[:, -1]]
    p = pos[:, -1]
    for t in range(6):
        p = p + 1
        valid = torch.cat([valid, torch.ones(B, 1, dtype=torch.bool)], 1)
        cos, sin = eng._rope(p[:, None])
        tok = torch.full((B, 1), 10 + 7 * t)
        out.append(model(tok, cos, sin, cache, S + t, valid[:, None, None, :])[:, -1])
    return torch.stack(out, 1)


def test_bf16_model_with_fused_ops_meets_transformers_as_the_eager_path_does(tmp_path):
    from runtime.loaders import open_source
    from runtime.loading import build_model

    d = make_tiny_hf(tmp_path, heads=8, kv_heads=2, tied=True)
    ids = torch.randint(0, 256, (2, 7), generator=torch.Generator().manual_seed(2))
    valid = torch.ones(2, 7, dtype=torch.bool)
    valid[1, :3] = False  # row 1 is left-padded: the mask path
    fused = build_model(open_source(d), torch.bfloat16, "cpu")
    eager = build_model(open_source(d), torch.bfloat16, "cpu")
    flags = [m for m in fused.modules() if getattr(m, "fused", False)]
    assert len(flags) >= 3 * len(fused.layers)  # norms, attention and MLP of every layer
    for m in eager.modules():
        if hasattr(m, "fused"):
            m.fused = False
    with torch.inference_mode():
        got, base = _decode_logits(fused, ids, valid.clone()), _decode_logits(eager, ids, valid.clone())
        # transformers in float32 on the same tokens, row by row without the padding
        ref = LlamaForCausalLM.from_pretrained(str(d), dtype=torch.float32).eval()
        full = torch.cat([ids, torch.tensor([[10 + 7 * t for t in range(6)]] * 2)], 1)
        want = torch.stack([ref(full[r:r + 1, (~valid[r]).sum():]).logits[0, -7:] for r in range(2)])
    scale = want.abs().max().item()
    err_f, err_e = (got - want).abs().max().item(), (base - want).abs().max().item()
    # bf16 weights and activations put both paths ~1% of the logits' range from float32; the fused path
    # must be no worse than the eager one
    assert err_e <= 0.05 * scale, (err_e, scale)
    assert err_f <= max(1.25 * err_e, 0.01 * scale), (err_f, err_e, scale)
