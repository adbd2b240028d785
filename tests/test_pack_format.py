"""The packed sparse int8 format and the packed-sparse kernel: integer sums bit-exact against dense references,
float outputs against a float64 reference of the same integer arithmetic (never against oneDNN's bits)."""
import pytest
import torch

from int8_reference import assert_matches, int8_linear_reference
from runtime.sparse import kernel
from runtime.sparse.format import BLOCK, pack_int8, unpack_int8
from runtime.sparse.linear import PackedSparseInt8Linear, cat_packed


def _sparse_int8(rows, cols, density, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(-128, 128, (rows, cols), dtype=torch.int8, generator=g)
    return torch.where(torch.rand(rows, cols, generator=g) < density, q, torch.zeros_like(q))


@pytest.mark.parametrize("rows,cols,density", [(5, 100, 0.5), (64, 576, 0.5), (3, 64, 1.0), (7, 130, 0.0),
                                               (9, 1536, 0.1), (1, 1, 1.0)])
def test_pack_unpack_is_bit_exact(rows, cols, density):
    q = _sparse_int8(rows, cols, density, rows * cols)
    q[0, 0] = -128  # the extreme code survives too
    p = pack_int8(q)
    p.check()
    assert torch.equal(unpack_int8(p), q)
    nblk = (cols + BLOCK - 1) // BLOCK
    assert p.nnz == int((q != 0).sum())
    assert p.nbytes() == rows * nblk * 8 + p.nnz + (rows + 1) * 8


def test_mask_bits_follow_the_spec():
    """Bit j of word b in row r <=> W[r, 64b + j] != 0, including bit 63 (the int64 sign bit)."""
    q = torch.zeros(2, 130, dtype=torch.int8)
    q[0, 63] = 5
    q[0, 64] = -3
    q[1, 129] = 7
    p = pack_int8(q)
    assert p.mask[0, 0].item() == -(2 ** 63) and p.mask[0, 1].item() == 1 and p.mask[1, 2].item() == 2
    assert p.values.tolist() == [5, -3, 7] and p.row_ptr.tolist() == [0, 2, 3]


def test_check_rejects_damaged_packs():
    p = pack_int8(_sparse_int8(4, 70, 0.5, 0))
    p.row_ptr[2] += 1
    with pytest.raises(ValueError):
        p.check()
    p = pack_int8(_sparse_int8(4, 70, 0.5, 0))
    p.mask[0, 1] |= 1 << 40  # a bit in the padding columns
    with pytest.raises(ValueError):
        p.check()


def test_kernel_builds_on_this_cpu():
    if all(f in kernel._cpu_flags() for f in kernel.NEEDED_FLAGS):
        assert kernel.available(), kernel.why_unavailable()


@pytest.mark.skipif(not kernel.available(), reason="packed-sparse kernel unavailable here")
@pytest.mark.parametrize("M,N,K", [(1, 37, 130), (3, 64, 576), (11, 100, 1536), (1, 256, 64)])
def test_kernel_int32_accumulators_are_exact(M, N, K):
    q = _sparse_int8(N, K, 0.5, K)
    p = pack_int8(q)
    x = torch.zeros(M, p.nblk * BLOCK, dtype=torch.uint8)
    x[:, :K] = torch.randint(0, 256, (M, K), dtype=torch.uint8)
    acc = kernel.sparse_u8s8_mm(x, p.mask, p.values, p.row_ptr)
    assert acc.dtype == torch.int32
    assert torch.equal(acc.long(), x[:, :K].long() @ q.long().t())


@pytest.mark.skipif(not kernel.available(), reason="packed-sparse kernel unavailable here")
@pytest.mark.parametrize("static", [True, False])
def test_packed_linear_matches_the_dense_int8_linear_and_the_float_reference(static):
    from runtime.quant.linear import FakeQuantLinear, Int8Linear, PartParams

    parts, packed = [], []
    for i, (n, k) in enumerate([(48, 200), (16, 200)]):  # two fused parts, like q and k
        q = _sparse_int8(n, k, 0.5, i)
        ws = torch.rand(n) * 0.01 + 1e-3
        parts.append(PartParams(q, ws, 0.05 if static else None, -7.0 if static else None, torch.randn(n) * 0.1))
        packed.append(pack_int8(q))
    x = torch.randn(5, 200) * 2
    ref = FakeQuantLinear(parts, (48, 16), torch.float32)(x)
    dense = Int8Linear(parts, (48, 16), torch.float32, torch.device("cpu"))(x)
    lin = PackedSparseInt8Linear(packed, torch.cat([p.weight_scale for p in parts]), parts[0].input_scale,
                                 parts[0].input_offset, torch.cat([p.fp_bias for p in parts]), (48, 16), torch.float32)
    y = lin(x)
    assert y.shape == (5, 64)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    w = torch.cat([p.quant_weight for p in parts])
    r64, mag = int8_linear_reference(x, w, torch.cat([p.weight_scale for p in parts]),
                                     torch.cat([p.fp_bias for p in parts]), parts[0].input_scale, parts[0].input_offset)
    assert_matches(y, r64, mag)
    assert_matches(dense, r64, mag)  # oneDNN's kernel differs per CPU: held to the same reference, not to bits
    assert torch.equal(unpack_int8(cat_packed(packed)), torch.cat([p.quant_weight for p in parts]))
