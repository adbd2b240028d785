"""The decode GEMV kernels (runtime/kernels) against float64 references of their own arithmetic, and their
quantization against qmath itself. Tolerances are float32-rounding bounds, true on any x86 CPU."""
import pytest
import torch

from int8_reference import assert_matches, int8_linear_reference
from runtime.kernels import cpu, decode
from runtime.quant import qmath

needs_int8 = pytest.mark.skipif(decode.int8_reason() is not None, reason=f"int8 kernel: {decode.int8_reason()}")
needs_bf16 = pytest.mark.skipif(decode.bf16_reason() is not None, reason=f"bf16 kernel: {decode.bf16_reason()}")
# the AMX paths run only on CPUs with AMX (Intel Sapphire Rapids and later); elsewhere these tests skip and
# the linears keep M > 4 on oneDNN (test_linears_send_the_kernels_only_the_rows_they_run)
needs_amx = pytest.mark.skipif(decode.amx_reason() is not None or decode.int8_reason() is not None
                               or decode.bf16_reason() is not None, reason=f"AMX: {decode.amx_reason()}")


def test_kernels_build_where_the_cpu_has_the_flags():
    if cpu.kernels_enabled() and not cpu.missing(decode.INT8_FLAGS):
        assert decode.int8_reason() is None
    if cpu.kernels_enabled() and not cpu.missing(decode.BF16_FLAGS):
        assert decode.bf16_reason() is None


def _x(M, K, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(M, K, generator=g) * 1.7 + 0.3
    x[0, :5] = torch.tensor([0.0, 1e-9, -40.0, 40.0, 2.5])  # zero, tiny, clipped both ways
    return x.to(dtype)


@needs_int8
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("hadamard", [None, 64])
def test_quantization_codes_are_qmaths(dtype, hadamard):
    K, scale, offset = 256, 0.0371, -9.0
    x = _x(8, K, 1, dtype)
    # values exactly on rounding boundaries: round half to even must agree
    x[1, :64] = ((torch.arange(64) - 32).float() + 0.5).to(dtype) * scale if dtype == torch.float32 else x[1, :64]
    xr = qmath.hadamard(x, hadamard) if hadamard else x.float()
    q, s, zp = decode.quantize_u8(x, K + 64, scale, offset, hadamard)
    assert q.shape == (8, K + 64) and bool((q[:, K:] == 0).all())
    ref = qmath.quantize_act_static(xr, scale, offset)
    assert torch.equal(q[:, :K].to(torch.int16) - 128, ref.to(torch.int16))
    assert bool((zp == int(offset) + 128).all()) and bool((s == torch.tensor(scale)).all())
    # dynamic: per-token scale and codes as qmath computes them
    q, s, zp = decode.quantize_u8(x, K, None, None, hadamard)
    sd = qmath.dynamic_scales(xr)
    assert torch.equal(s, sd[:, 0])
    assert torch.equal(q.to(torch.int16) - 128, torch.clamp(torch.round(xr / sd), -127, 127).to(torch.int16))
    assert bool((zp == 128).all())


@needs_int8
@pytest.mark.parametrize("M", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("N", [4, 37])
def test_u8s8_accumulators_are_exact(M, N):
    g = torch.Generator().manual_seed(M * 100 + N)
    K = 320
    w = torch.randint(-128, 128, (N, K), dtype=torch.int8, generator=g)
    x = torch.randint(0, 256, (M, K), dtype=torch.uint8, generator=g)
    x[0] = 255
    w[0] = -128  # the extreme products: 255 * -128 summed over K
    acc = decode.u8s8_gemv(x, w)
    assert acc.dtype == torch.int32
    assert torch.equal(acc.long(), x.long() @ w.long().t())


@needs_int8
@pytest.mark.parametrize("static", [True, False])
@pytest.mark.parametrize("M", [1, 3, 8])
@pytest.mark.parametrize("hadamard", [None, 128])
@pytest.mark.parametrize("out_bf16", [False, True])
def test_int8_linear_matches_the_float64_reference(static, M, hadamard, out_bf16):
    g = torch.Generator().manual_seed(M)
    N, K = 70, 384
    w, ws = qmath.quantize_weight(torch.randn(N, K, generator=g) * 0.05)
    bias = torch.randn(N, generator=g) * 0.1
    x = _x(M, K, M, torch.bfloat16 if out_bf16 else torch.float32)
    scale, offset = qmath.act_params(-3.0, 4.0) if static else (None, None)
    y = decode.int8_linear(x, w, w.sum(1, dtype=torch.int32), ws, bias, scale, offset, hadamard, out_bf16)
    assert y.dtype == (torch.bfloat16 if out_bf16 else torch.float32) and y.shape == (M, N)
    ref, mag = int8_linear_reference(x, w, ws, bias, scale, offset, hadamard)
    assert_matches(y, ref, mag)


def _bf16_reference(x, w, bias):
    ref = x.double() @ w.double().t() + (0 if bias is None else bias.double())
    mag = x.double().abs() @ w.double().abs().t() + (0 if bias is None else bias.double().abs())
    return ref, mag


@needs_bf16
@pytest.mark.parametrize("M", [1, 2, 4, 5, 8])
@pytest.mark.parametrize("N,K", [(4, 32), (37, 640), (130, 2048)])
@pytest.mark.parametrize("bias", [False, True])
def test_bf16_gemv_matches_the_float64_reference(M, N, K, bias):
    g = torch.Generator().manual_seed(M * N + K)
    x = torch.randn(M, K, generator=g).bfloat16()
    w = (torch.randn(N, K, generator=g) * 0.05).bfloat16()
    b = (torch.randn(N, generator=g) * 0.1).bfloat16() if bias else None
    ref, mag = _bf16_reference(x, w, b)
    # bf16 products are exact in float32; K/16 float32 additions per lane plus the lane sum: bounded by
    # K·2^-24 relative to Σ|x·w|
    y32 = decode.bf16_gemv(x, w, b, False)
    assert_matches(y32, ref, mag, rtol=max(K, 64) * 2 ** -24)
    y16 = decode.bf16_gemv(x, w, b, True)
    assert y16.dtype == torch.bfloat16
    assert_matches(y16, ref, mag, rtol=2 ** -8 + K * 2 ** -24)


@needs_bf16
def test_packed_linear_runs_the_kernel_for_decode_and_torch_for_prefill():
    from runtime.linear import PackedLinear

    g = torch.Generator().manual_seed(0)
    w = (torch.randn(96, 256, generator=g) * 0.05).bfloat16()
    lin = PackedLinear(w, (64, 32))
    assert lin.use_kernel and lin.decode_path.startswith("bf16 vdpbf16ps kernel")
    assert torch.equal(lin.weight, w)
    for M in (1, 8, 20):  # 20 rows: prefill through F.linear on the same weight
        x = torch.randn(1, M, 256, generator=g).bfloat16()
        y = lin(x)
        assert y.shape == (1, M, 96) and y.dtype == torch.bfloat16
        ref, mag = _bf16_reference(x[0], w, None)
        assert_matches(y[0], ref, mag, rtol=2 ** -7)


@needs_int8
@pytest.mark.parametrize("static", [True, False])
def test_int8_linear_module_kernel_and_fallback_both_meet_the_reference(static, monkeypatch):
    from runtime.quant.linear import Int8Linear, PartParams

    g = torch.Generator().manual_seed(3)
    parts = []
    for n in (48, 16):
        q, ws = qmath.quantize_weight(torch.randn(n, 192, generator=g) * 0.05)
        parts.append(PartParams(q, ws, 0.03 if static else None, -5.0 if static else None,
                                torch.randn(n, generator=g) * 0.1, hadamard=64))
    w = torch.cat([p.quant_weight for p in parts])
    ws = torch.cat([p.weight_scale for p in parts])
    b = torch.cat([p.fp_bias for p in parts])
    lin = Int8Linear(parts, (48, 16), torch.float32, torch.device("cpu"))
    assert lin.use_kernel and lin.decode_path.startswith("int8 vpdpbusd kernel")
    monkeypatch.setattr(decode, "int8_reason", lambda: "off for this test")
    off = Int8Linear(parts, (48, 16), torch.float32, torch.device("cpu"))
    assert not off.use_kernel and off.why_no_kernel == "off for this test"
    for M in (1, 5, 12):  # 12 rows: prefill, oneDNN in both
        x = _x(M, 192, M)
        ref, mag = int8_linear_reference(x, w, ws, b, parts[0].input_scale, parts[0].input_offset, 64)
        assert_matches(lin(x), ref, mag)
        assert_matches(off(x), ref, mag)


def test_kernels_off_by_environment(monkeypatch):
    monkeypatch.setenv("LLAMA_COMPRESS_KERNELS", "off")
    assert decode.int8_reason() == "LLAMA_COMPRESS_KERNELS=off"
    assert decode.bf16_reason() == "LLAMA_COMPRESS_KERNELS=off"


@needs_int8
def test_int8_linear_keeps_one_weight_copy_when_memory_is_short(monkeypatch):
    """A model whose int8 weights do not fit twice drops oneDNN's prepacked copy: decode still runs the
    kernel, prefill runs torch._int_mm on the same plain weight, and both meet the float64 reference."""
    from runtime.quant import weight_copies
    from runtime.quant.linear import Int8Linear, PartParams

    g = torch.Generator().manual_seed(5)
    q, ws = qmath.quantize_weight(torch.randn(64, 128, generator=g) * 0.05)
    parts = [PartParams(q, ws, 0.03, -5.0, torch.randn(64, generator=g) * 0.1)]
    monkeypatch.setenv("LLAMA_COMPRESS_MEM_AVAILABLE", str(10 << 30))
    assert weight_copies.plan_for(3 << 30) is True  # 6 GiB of two copies fit 75% of 10 GiB
    assert weight_copies.plan_for(6 << 30) is False
    lin = Int8Linear(parts, (64,), torch.float32, torch.device("cpu"))
    assert lin.use_kernel and not lin.use_onednn and not hasattr(lin, "packed")
    for M in (1, 3, 20):
        x = _x(M, 128, M)
        ref, mag = int8_linear_reference(x, q, ws, parts[0].fp_bias, 0.03, -5.0)
        assert_matches(lin(x), ref, mag)
    monkeypatch.setenv("LLAMA_COMPRESS_INT8_PREFILL", "onednn")
    assert weight_copies.plan_for(6 << 30) is True
    monkeypatch.setenv("LLAMA_COMPRESS_INT8_PREFILL", "plain")
    assert weight_copies.plan_for(1) is False
    weight_copies.plan_for(0)  # leave the module as other tests expect it
    monkeypatch.setenv("LLAMA_COMPRESS_INT8_PREFILL", "auto")
    assert weight_copies.plan_for(0) is True


# ---------------------------------------------------------------- AMX (5..8 decode rows; up to 16 accepted)
# N values cover two 16-row panels (32), one (16..31 left), and a tail of < 16 rows left to the AVX-512 kernel.
AMX_N = [4, 37, 48, 70]


@needs_amx
@pytest.mark.parametrize("M", [1, 5, 8, 16])
@pytest.mark.parametrize("N", AMX_N)
def test_amx_u8s8_accumulators_are_exact(M, N):
    g = torch.Generator().manual_seed(M * 1000 + N)
    K = 320
    w = torch.randint(-128, 128, (N, K), dtype=torch.int8, generator=g)
    x = torch.randint(0, 256, (M, K), dtype=torch.uint8, generator=g)
    x[0] = 255
    w[0] = -128
    w[N - 1] = 127  # the last row of whichever path takes it
    acc = decode.u8s8_gemv(x, w, amx=True)
    assert acc.dtype == torch.int32 and acc.shape == (M, N)
    assert torch.equal(acc.long(), x.long() @ w.long().t())


@needs_amx
@pytest.mark.parametrize("M", [1, 5, 8, 16])
@pytest.mark.parametrize("N", AMX_N)
@pytest.mark.parametrize("bias", [False, True])
def test_amx_bf16_gemv_matches_the_float64_reference(M, N, bias):
    g = torch.Generator().manual_seed(M * N + 7)
    K = 640
    x = torch.randn(M, K, generator=g).bfloat16()
    w = (torch.randn(N, K, generator=g) * 0.05).bfloat16()
    b = (torch.randn(N, generator=g) * 0.1).bfloat16() if bias else None
    ref, mag = _bf16_reference(x, w, b)
    # exact bf16 products, one float32 accumulator per output fed K products in turn: K roundings at most
    assert_matches(decode.bf16_gemv(x, w, b, False, amx=True), ref, mag, rtol=K * 2 ** -24)
    y16 = decode.bf16_gemv(x, w, b, True, amx=True)
    assert y16.dtype == torch.bfloat16
    assert_matches(y16, ref, mag, rtol=2 ** -8 + K * 2 ** -24)


@needs_amx
@pytest.mark.parametrize("static", [True, False])
@pytest.mark.parametrize("M", [5, 8])
@pytest.mark.parametrize("hadamard", [None, 128])
def test_amx_int8_linear_matches_the_float64_reference(static, M, hadamard):
    g = torch.Generator().manual_seed(M + 50)
    N, K = 70, 384
    w, ws = qmath.quantize_weight(torch.randn(N, K, generator=g) * 0.05)
    bias = torch.randn(N, generator=g) * 0.1
    x = _x(M, K, M)
    scale, offset = qmath.act_params(-3.0, 4.0) if static else (None, None)
    y = decode.int8_linear(x, w, w.sum(1, dtype=torch.int32), ws, bias, scale, offset, hadamard, False, amx=True)
    ref, mag = int8_linear_reference(x, w, ws, bias, scale, offset, hadamard)
    assert_matches(y, ref, mag)


def test_linears_send_the_kernels_only_the_rows_they_run():
    """8 rows with AMX, 4 with the AVX-512 kernels alone; LLAMA_COMPRESS_AMX=off keeps the AVX-512 bound."""
    assert decode.max_rows() == (decode.AMX_MAX_M if decode.amx_reason() is None else decode.AVX_MAX_M)
    if decode.amx_reason() is None:
        assert not decode.cpu.missing(decode.AMX_FLAGS)


def test_amx_off_switch(monkeypatch):
    monkeypatch.setenv("LLAMA_COMPRESS_AMX", "off")
    assert decode.amx_reason() == "LLAMA_COMPRESS_AMX=off" and decode.max_rows() == decode.AVX_MAX_M
