"""The packed-sparse int8 kernel's int32 sums are exact: equal to x·Wᵀ in int64 for every row, including the
matrix's last rows, where the decode loop's full 64-byte loads must stop short of the buffer's end."""
import pytest
import torch

from runtime.sparse import kernel
from runtime.sparse.format import pack_int8

pytestmark = pytest.mark.skipif(not kernel.available(), reason=f"packed-sparse kernel: {kernel.why_unavailable()}")


@pytest.mark.parametrize("M", [1, 3, 8])
@pytest.mark.parametrize("density", [0.02, 0.5, 1.0])
def test_sparse_accumulators_are_exact(M, density):
    g = torch.Generator().manual_seed(int(density * 100) + M)
    N, K = 37, 640
    w = torch.randint(-128, 128, (N, K), dtype=torch.int8, generator=g)
    w[torch.rand(N, K, generator=g) >= density] = 0
    w[-1, :] = 0
    w[-1, -3:] = torch.tensor([-128, 127, 5], dtype=torch.int8)  # the last row: 3 values at the buffer's end
    x = torch.randint(0, 256, (M, K), dtype=torch.uint8, generator=g)
    x[0] = 255
    p = pack_int8(w)
    acc = kernel.sparse_u8s8_mm(x, p.mask, p.values, p.row_ptr)
    assert acc.dtype == torch.int32
    assert torch.equal(acc.long(), x.long() @ w.long().t())
