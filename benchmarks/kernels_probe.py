"""Micro-benchmark probe: which PyTorch CPU ops are fastest for LLaMA-2-7B linears.

Measures (2 threads by default):
  * plain memory bandwidth (sum / copy) for a roofline floor
  * bf16 x bf16 linear variants (F.linear, mm, addmm, mkldnn prepacked, ...)
  * W8A8 int8 variants (onednn qlinear, torch._int_mm, fbgemm static/dynamic)
  * bf16 attention (SDPA vs manual) for decode and causal prefill

Usage:  python benchmarks/kernels_probe.py [--threads 2] [--quick] [--only bw,bf16,int8,attn]
Prints tables; timings are medians over repeats after warm-up. For small M the
weights are rotated over several copies (>= ~256 MB total) so that they cannot
stay resident in the 32 MB L3, i.e. M=1 numbers are DRAM-bound numbers.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import time
import warnings

import torch
import torch.nn.functional as F

warnings.filterwarnings("ignore")

SHAPES = [  # (name, K=in, N=out)
    ("q/o 4096->4096", 4096, 4096),
    ("qkv 4096->12288", 4096, 12288),
    ("up 4096->11008", 4096, 11008),
    ("gate+up 4096->22016", 4096, 22016),
    ("down 11008->4096", 11008, 4096),
]
MS = [1, 8, 32, 128, 512]
ROTATE_BYTES = 256 << 20


def _cpu_jiffies():
    with open("/proc/stat") as f:
        v = [int(t) for t in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def others_busy(dt=0.1):
    """Fraction of the machine's CPU used by *other* processes during dt seconds."""
    b0, t0 = _cpu_jiffies()
    p0 = time.process_time()
    time.sleep(dt)
    b1, t1 = _cpu_jiffies()
    own = (time.process_time() - p0) * os.sysconf("SC_CLK_TCK")
    return max(0.0, (b1 - b0 - own)) / max(1, t1 - t0)


WAIT_IDLE_S = 0.0  # set by --wait-idle
CONTENDED = [0]


def wait_idle():
    """Wait (bounded) until other processes leave the CPUs alone. Returns True if idle."""
    deadline = time.time() + WAIT_IDLE_S
    while True:
        if others_busy() < 0.10:
            return True
        if time.time() > deadline:
            CONTENDED[0] += 1
            return False
        time.sleep(0.5)


def bench(fn, n_items=1, min_reps=5, max_reps=40, budget_s=0.25):
    """fn(i) runs one op on rotating item i. Returns (min, median) seconds per call.

    The machine may be shared: we wait for idle CPUs first, and min-of-reps is the
    primary (contention only ever adds time); the median is reported alongside.
    A call slower than 20x the first timed call's floor stops the loop early.
    """
    wait_idle()
    for i in range(max(n_items, 2)):  # warm-up, touch every copy once
        t0 = time.perf_counter()
        fn(i % n_items)
        if time.perf_counter() - t0 > 2.0:  # pathological (reference) kernel: don't loop
            min_reps, max_reps = 1, 2
            break
    times = []
    t_start = time.perf_counter()
    i = 0
    while len(times) < max_reps:
        t0 = time.perf_counter()
        fn(i % n_items)
        times.append(time.perf_counter() - t0)
        i += 1
        if len(times) >= min_reps and time.perf_counter() - t_start > budget_s:
            break
    return min(times), statistics.median(times)


def n_copies(nbytes, M):
    if M >= 128:
        return 1
    return max(2, math.ceil(ROTATE_BYTES / nbytes))


def rel_err(y, ref):
    return ((y.double() - ref).abs().max() / ref.abs().max()).item()


# --------------------------------------------------------------------------- #
def bandwidth():
    print("\n== memory bandwidth, 2 GiB buffers (best | median GB/s) ==")
    n = 512 << 20  # 512 Mi float32 = 2 GiB
    a = torch.empty(n, dtype=torch.float32).uniform_()
    gb = a.numel() * 4 / 1e9
    rows = []
    kw = dict(min_reps=4, max_reps=8, budget_s=1.0)
    rows.append(("sum float32", gb, bench(lambda i: a.sum(), **kw)))
    rows.append(("amax float32", gb, bench(lambda i: a.amax(), **kw)))
    bb = a.view(torch.bfloat16)
    rows.append(("sum bf16 (same bytes)", gb, bench(lambda i: bb.sum(), **kw)))
    # NB: int8.sum() -> int64 is a slow, compute-bound reduction (~0.3 GB/s); the
    # int8 bytes are read at the float32 rate when viewed as float32.
    src = a[: n // 2]
    dst = torch.empty_like(src)
    dst.copy_(src)
    cgb = src.numel() * 4 / 1e9
    t = bench(lambda i: dst.copy_(src), **kw)
    rows.append(("copy 1 GiB (bytes read)", cgb, t))
    rows.append(("copy 1 GiB (read+write bytes)", 2 * cgb, t))
    for name, g, (tmin, tmed) in rows:
        print(f"  {name:34s} {g/tmin:7.1f} | {g/tmed:7.1f} GB/s")
    del a, dst
    return rows


# --------------------------------------------------------------------------- #
def bf16_variants(K, N, M, copies):
    """Returns dict name -> (fn(i), check_fn() -> output) ; weights per copy."""
    ws = [torch.randn(N, K).div_(math.sqrt(K)).bfloat16() for _ in range(copies)]
    x = torch.randn(M, K).bfloat16()
    v = {}
    v["F.linear w[N,K]"] = lambda i: F.linear(x, ws[i])
    v["torch.mm x@w.t()"] = lambda i: torch.mm(x, ws[i].t())
    zb = torch.zeros(N, dtype=torch.bfloat16)
    v["torch.addmm(0,x,w.t())"] = lambda i: torch.addmm(zb, x, ws[i].t())
    wts = [w.t().contiguous() for w in ws]  # [K,N]
    v["torch.mm x@wT[K,N]"] = lambda i: torch.mm(x, wts[i])
    v["F.linear wT[K,N].t()"] = lambda i: F.linear(x, wts[i].t())
    del wts  # keep them alive only via the closures
    pk = [torch.ops.mkldnn._reorder_linear_weight(w, M) for w in ws]
    v["mkldnn._linear_pointwise pk(bs=M)"] = lambda i: torch.ops.mkldnn._linear_pointwise(
        x, pk[i], None, "none", [], "")
    pkn = [torch.ops.mkldnn._reorder_linear_weight(w, None) for w in ws]
    v["mkldnn._linear_pointwise pk(bs=None)"] = lambda i: torch.ops.mkldnn._linear_pointwise(
        x, pkn[i], None, "none", [], "")
    # torch.utils.mkldnn MkldnnLinear (dense in/out, mkldnn weight)
    try:
        import torch.utils.mkldnn as um
        mls = []
        for w in ws:
            lin = torch.nn.Linear(K, N, bias=False)
            lin.weight.data = w.float()
            mls.append(um.to_mkldnn(lin, torch.bfloat16))
        v["utils.mkldnn.MkldnnLinear"] = lambda i: mls[i](x)
    except Exception as e:  # pragma: no cover
        print("  MkldnnLinear unavailable:", e)
    # W8A16 reference point: bf16 activations, int8 per-channel weights
    w8 = [torch.randint(-127, 128, (N, K), dtype=torch.int8) for _ in range(copies)]
    s8 = torch.rand(N).bfloat16() / 127
    v["[W8A16] _weight_int8pack_mm"] = lambda i: torch._weight_int8pack_mm(x, w8[i], s8)
    ref = x.double() @ ws[0].double().t()
    return v, ref


def run_bf16(shapes, ms, quick):
    print("\n== bf16 x bf16 linear (median ms | GB/s of weight bytes | TFLOP/s) ==")
    results = []  # (shape, M, variant, ms, GBs, TFs, relerr)
    for sname, K, N in shapes:
        for M in ms:
            wbytes = K * N * 2
            c = n_copies(wbytes, M)
            v, ref = bf16_variants(K, N, M, c)
            for name, fn in v.items():
                if quick and M >= 128 and name.startswith(("F.linear wT", "torch.addmm", "mkldnn._linear_pointwise pk(bs=None)")):
                    continue
                try:
                    err = rel_err(fn(0), ref) if not name.startswith("[W8A16]") else float("nan")
                    t, tmed = bench(fn, c, budget_s=0.15 if M < 128 else 0.3, min_reps=5 if M < 128 else 3)
                except Exception as e:
                    print(f"  {sname} M={M} {name}: FAILED {str(e)[:120]}")
                    continue
                bts = K * N * (1 if name.startswith("[W8A16]") else 2)
                gbs = bts / t / 1e9
                tfs = 2 * M * K * N / t / 1e12
                results.append((sname, M, name, t * 1e3, gbs, tfs, err))
                print(f"  {sname:20s} M={M:<4d} {name:38s} {t*1e3:8.3f} ms (med {tmed*1e3:8.3f}) "
                      f"{gbs:6.1f} GB/s {tfs:6.3f} TF/s relerr={err:.1e}", flush=True)
            del v
    return results


# --------------------------------------------------------------------------- #
def make_int8_problem(K, N, M, copies, seed=0):
    g = torch.Generator().manual_seed(seed)
    wqs, sws = [], []
    for _ in range(copies):
        w = torch.randn(N, K, generator=g)
        sw = w.abs().amax(1) / 127.0
        wq = torch.clamp(torch.round(w / sw[:, None]), -127, 127).to(torch.int8)
        wqs.append(wq)
        sws.append(sw)
    x = torch.randn(M, K, generator=g) * 1.5 + 0.3  # asymmetric activations
    lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    sx = (hi - lo) / 255.0
    zp = int(round(-lo / sx))
    xq = torch.clamp(torch.round(x / sx) + zp, 0, 255).to(torch.uint8)
    xdq = (xq.float() - zp) * sx  # dequantized activations (float input for fbgemm static)
    ref = ((xq.double() - zp) * sx) @ (wqs[0].double() * sws[0].double()[:, None]).t()
    return wqs, sws, x, xdq, xq, sx, zp, ref


def int8_variants(K, N, M, copies):
    wqs, sws, x, xdq, xq, sx, zp, ref = make_int8_problem(K, N, M, copies)
    v = {}
    # --- oneDNN qlinear (uint8 activations, static per-tensor scale/zp) ---
    wzp = torch.zeros(N, dtype=torch.long)
    pk = [torch.ops.onednn.qlinear_prepack(wq, [M, K]) for wq in wqs]
    v["onednn.qlinear u8 ->f32"] = lambda i: torch.ops.onednn.qlinear_pointwise(
        xq, sx, zp, pk[i], sws[i], wzp, None, 1.0, 0, torch.float32, "none", [], "")
    v["onednn.qlinear u8 ->bf16"] = lambda i: torch.ops.onednn.qlinear_pointwise(
        xq, sx, zp, pk[i], sws[i], wzp, None, 1.0, 0, torch.bfloat16, "none", [], "")
    pkn = [torch.ops.onednn.qlinear_prepack(wq, None) for wq in wqs]
    v["onednn.qlinear u8 ->f32 pk(None)"] = lambda i: torch.ops.onednn.qlinear_pointwise(
        xq, sx, zp, pkn[i], sws[i], wzp, None, 1.0, 0, torch.float32, "none", [], "")
    xs8 = (xq.to(torch.int16) - 128).to(torch.int8)  # same values, s8 storage, zp-128
    v["onednn.qlinear s8 ->f32"] = lambda i: torch.ops.onednn.qlinear_pointwise(
        xs8, sx, zp - 128, pk[i], sws[i], wzp, None, 1.0, 0, torch.float32, "none", [], "")
    # end-to-end incl. activation quantization from float (what a runtime would do)
    inv = 1.0 / sx

    def onednn_e2e(i):
        q = torch.clamp(torch.round(x * inv) + zp, 0, 255).to(torch.uint8)
        return torch.ops.onednn.qlinear_pointwise(
            q, sx, zp, pk[i], sws[i], wzp, None, 1.0, 0, torch.float32, "none", [], "")
    v["onednn.qlinear +quant(x) ->f32"] = onednn_e2e
    # --- torch._int_mm (s8 x s8 -> s32) + zero-point correction + rescale ---
    wts = [wq.t().contiguous() for wq in wqs]  # [K,N] int8
    colsum = [wq.sum(1, dtype=torch.int32) for wq in wqs]  # [N]
    zps8 = zp - 128
    scl = [(sx * sw).float() for sw in sws]

    def intmm(i):
        acc = torch._int_mm(xs8, wts[i])
        acc = acc - zps8 * colsum[i]
        return acc.float() * scl[i]
    v["_int_mm s8 wT[K,N] + rescale"] = intmm

    def intmm_t(i):
        acc = torch._int_mm(xs8, wqs[i].t())
        acc = acc - zps8 * colsum[i]
        return acc.float() * scl[i]
    v["_int_mm s8 w[N,K].t() + rescale"] = intmm_t
    # --- fbgemm packed weights ---
    torch.backends.quantized.engine = "fbgemm"
    fpk = []
    for wq, sw in zip(wqs, sws):
        qw = torch._make_per_channel_quantized_tensor(wq, sw.double(), torch.zeros(N, dtype=torch.long), 0)
        fpk.append(torch.ops.quantized.linear_prepack(qw, None))
    v["fbgemm static fp32in->fp32 (q_dq)"] = lambda i: torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
        xdq, sx, zp, fpk[i])
    qx = torch._make_per_tensor_quantized_tensor(xq, sx, zp)
    # output quint8 (requantized) -> not exact; use a fine output scale only for timing
    osc = float(ref.abs().max() / 127.0)
    v["fbgemm quantized.linear quint8->quint8"] = lambda i: torch.ops.quantized.linear(qx, fpk[i], osc, 128)
    v["fbgemm linear_dynamic (ref)"] = lambda i: torch.ops.quantized.linear_dynamic(xdq, fpk[i], False)
    return v, ref, (sx, zp)


def run_int8(shapes, ms, quick):
    print("\n== W8A8 int8 linear (median ms | GB/s of int8 weight bytes | TOP/s) ==")
    results = []
    for sname, K, N in shapes:
        for M in ms:
            c = n_copies(K * N, M)
            v, ref, _ = int8_variants(K, N, M, c)
            for name, fn in v.items():
                if quick and M >= 128 and name in ("onednn.qlinear u8 ->f32 pk(None)", "_int_mm s8 w[N,K].t() + rescale"):
                    continue
                try:
                    y = fn(0)
                    if y.is_quantized:
                        y = y.dequantize()
                    err = rel_err(y, ref)
                    t, tmed = bench(fn, c, budget_s=0.15 if M < 128 else 0.3, min_reps=5 if M < 128 else 3)
                except Exception as e:
                    print(f"  {sname} M={M} {name}: FAILED {str(e)[:160]}")
                    continue
                gbs = K * N / t / 1e9
                tops = 2 * M * K * N / t / 1e12
                results.append((sname, M, name, t * 1e3, gbs, tops, err))
                print(f"  {sname:20s} M={M:<4d} {name:38s} {t*1e3:8.3f} ms (med {tmed*1e3:8.3f}) "
                      f"{gbs:6.1f} GB/s {tops:6.3f} TOP/s relerr={err:.1e}", flush=True)
            del v
    return results


# --------------------------------------------------------------------------- #
def manual_attn(q, k, v, causal=False, softmax_f32=True):
    s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        L, S = s.shape[-2], s.shape[-1]
        mask = torch.ones(L, S, dtype=torch.bool).triu_(S - L + 1)
        s = s.masked_fill(mask, float("-inf"))
    if softmax_f32:
        p = torch.softmax(s.float(), dim=-1).to(q.dtype)
    else:
        p = torch.softmax(s, dim=-1)
    return torch.matmul(p, v)


def run_attn(quick):
    print("\n== bf16 attention, 32 heads x 128 (median ms | GB/s of KV bytes for decode) ==")
    H, D = 32, 128
    results = []
    dt = torch.bfloat16
    for B in (1, 8):
        for L in (512, 2048):
            q = torch.randn(B, H, 1, D, dtype=dt)
            k = torch.randn(B, H, L, D, dtype=dt)
            vv = torch.randn(B, H, L, D, dtype=dt)
            kc = torch.randn(B, H, 4096, D, dtype=dt)
            vc = torch.randn(B, H, 4096, D, dtype=dt)
            kv_bytes = 2 * B * H * L * D * 2
            ref = manual_attn(q.double(), k.double(), vv.double())
            cands = {
                "SDPA contiguous": lambda: F.scaled_dot_product_attention(q, k, vv),
                "SDPA on cache[:,:,:L] view": lambda: F.scaled_dot_product_attention(q, kc[:, :, :L], vc[:, :, :L]),
                "manual (softmax f32)": lambda: manual_attn(q, k, vv),
                "manual (softmax bf16)": lambda: manual_attn(q, k, vv, softmax_f32=False),
                "manual on cache view": lambda: manual_attn(q, kc[:, :, :L], vc[:, :, :L]),
            }
            for name, fn in cands.items():
                y = fn()
                err = rel_err(y, ref) if "cache" not in name else float("nan")
                t, tmed = bench(lambda i: fn(), 1, budget_s=0.2)
                results.append((f"decode B={B} L={L}", name, t * 1e3, kv_bytes / t / 1e9, err))
                print(f"  decode B={B} kv={L:<5d} {name:30s} {t*1e3:8.3f} ms (med {tmed*1e3:8.3f}) "
                      f"{kv_bytes/t/1e9:6.1f} GB/s(KV) relerr={err:.1e}", flush=True)
    for L in ((512,) if quick else (512, 2048)):
        q = torch.randn(1, H, L, D, dtype=dt)
        k = torch.randn(1, H, L, D, dtype=dt)
        vv = torch.randn(1, H, L, D, dtype=dt)
        flops = 4 * H * L * L * D / 2  # causal: half
        ref = manual_attn(q.float(), k.float(), vv.float(), causal=True).double()
        mask = torch.ones(L, L, dtype=torch.bool).tril_()
        cands = {
            "SDPA is_causal=True": lambda: F.scaled_dot_product_attention(q, k, vv, is_causal=True),
            "SDPA bool attn_mask": lambda: F.scaled_dot_product_attention(q, k, vv, attn_mask=mask),
            "manual causal (softmax f32)": lambda: manual_attn(q, k, vv, causal=True),
        }
        for name, fn in cands.items():
            err = rel_err(fn(), ref)
            t, tmed = bench(lambda i: fn(), 1, min_reps=3, budget_s=0.5)
            results.append((f"prefill L={L}", name, t * 1e3, flops / t / 1e12, err))
            print(f"  prefill B=1 L={L:<5d} {name:30s} {t*1e3:8.3f} ms (med {tmed*1e3:8.3f}) "
                  f"{flops/t/1e12:6.3f} TF/s(causal) relerr={err:.1e}", flush=True)
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="bw,bf16,int8,attn")
    ap.add_argument("--shapes", default="all", help="comma list of shape indices 0-4 or 'all'")
    ap.add_argument("--ms", default=",".join(map(str, MS)))
    ap.add_argument("--wait-idle", type=float, default=20.0,
                    help="max seconds to wait for other processes to leave the CPUs before each measurement")
    a = ap.parse_args()
    global WAIT_IDLE_S
    WAIT_IDLE_S = a.wait_idle
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    shapes = SHAPES if a.shapes == "all" else [SHAPES[int(i)] for i in a.shapes.split(",")]
    ms = [int(m) for m in a.ms.split(",")]
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, "
          f"mkldnn bf16={torch.ops.mkldnn._is_mkldnn_bf16_supported()}")
    only = set(a.only.split(","))
    t0 = time.time()
    if "bw" in only:
        bandwidth()
    if "bf16" in only:
        run_bf16(shapes, ms, a.quick)
    if "int8" in only:
        run_int8(shapes, ms, a.quick)
    if "attn" in only:
        run_attn(a.quick)
    print(f"\ntotal {time.time()-t0:.0f}s; measurements started while other processes were busy: {CONTENDED[0]}")


if __name__ == "__main__":
    main()
