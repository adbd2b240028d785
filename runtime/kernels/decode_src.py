"""C++ source of the decode GEMV kernels (M = 1..8 rows): bf16 (vdpbf16ps) and int8 (vpdpbusd).

Layout: the plain row-major weight [N, K], kept as the only copy (prefill reads the same memory through
torch). Each thread takes a contiguous range of output rows and streams 4 rows at a time; every 64-byte
line of a row feeds one dot-product instruction per token, with a software prefetch a few lines ahead.
Tokens are taken 4 at a time; for M > 4 the same 4 rows are read again while they are still in L1/L2.
Per-row sums are reduced once per row at the end.

Activation quantization mirrors runtime/quant/qmath.py operation by operation in float32 (division, not a
reciprocal; round half to even; the Hadamard butterflies in the same order), so the codes are qmath's own;
tests/test_decode_kernels.py holds them to qmath. Compiled without -ffast-math or FMA contraction for that.
"""

SRC = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <immintrin.h>
#include <cmath>
#include <cstdint>
#include <vector>
#include <sys/syscall.h>
#include <unistd.h>

#define TGT_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#define TGT_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define TGT_F __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

static constexpr int64_t PF = 1024;  // prefetch distance in bytes along each row

// Where row r of a block of R rows (each `row` bytes, contiguous) should prefetch while at byte `at`: PF ahead
// in its own row, and over the last PF bytes the start of row r of the next block, so that each of the R
// streams runs on into the next block without a cold start (a plain p + PF would land in row r + 1).
static inline const char* prefetch_at(const char* base, int r, int R, int64_t row, int64_t at) {
  const int64_t ahead = at + PF;
  return ahead < row ? base + r * row + ahead : base + (R + r) * row + (ahead - row);
}

// ---------------------------------------------------------------- AMX, 5..8 rows (and any M <= 16 when asked)
// The weight stays the plain row-major [N, K] copy: it is the A operand (16 output rows x 64 bytes of K per
// tile, loaded with the row stride), the activations are the B operand, repacked per call into AMX's
// K-pair (bf16) / K-quad (int8) layout. One tile step reads 1 KB of each of two 16-row panels and does
// M x 16 x 32 (bf16) or M x 16 x 64 (int8) MACs in one instruction, so 8 tokens cost what 1 does: the
// AVX-512 kernels run out of registers and L1 past 4 tokens (benchmarks/KERNELS.md).
#define TGT_AMX __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,amx-tile,amx-bf16,amx-int8")))

static bool g_amx = false;

// Linux hands out the AMX tile state only on request (arch_prctl ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA);
// the permission is per process. False where the kernel refuses (old kernel, no AMX).
bool amx_enable() {
  g_amx = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
  return g_amx;
}

struct alignas(64) TileCfg {
  uint8_t palette, start_row, rsv[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// tmm0, tmm1: C (16 rows x M fp32/int32); tmm2, tmm3: A (16 weight rows x 64 bytes); tmm4: B (16 x M * 4 bytes)
TGT_AMX static void amx_config(int64_t M) {
  TileCfg c{};
  c.palette = 1;
  for (int t = 0; t < 2; ++t) { c.rows[t] = 16; c.colsb[t] = static_cast<uint16_t>(M * 4); }
  for (int t = 2; t < 4; ++t) { c.rows[t] = 16; c.colsb[t] = 64; }
  c.rows[4] = 16; c.colsb[4] = static_cast<uint16_t>(M * 4);
  _tile_loadconfig(&c);
}

// Prefetch, PF bytes ahead, the line each of `rows` weight rows (from row0, stride ld bytes) is about to need.
// Over a row's last PF bytes this points at the same row of the next panel (rows further on), so the streams
// of one panel run on into the next without a cold start (as prefetch_at does for the AVX-512 kernels).
static inline void prefetch_rows(const char* row0, int64_t ld, int rows, int64_t at) {
  const int64_t ahead = at + PF;
  const char* p = ahead < ld ? row0 + ahead : row0 + rows * ld + (ahead - ld);
  for (int r = 0; r < rows; ++r) _mm_prefetch(p + r * ld, _MM_HINT_T0);
}

// C[r][m] for r < 16 * T (T = 1 or 2 panels of 16 rows from w0), B from xb (K/step rows of M * 4 bytes).
// kstep: K values per tile step (32 bf16 or 64 int8); lda: bytes per weight row.
template <int T, bool BF16>
TGT_AMX static void amx_panels(const char* w0, int64_t lda, const char* xb, int64_t M, float* out) {
  _tile_zero(0);
  if (T == 2) _tile_zero(1);
  const int64_t bstride = M * 4;
  for (int64_t at = 0; at < lda; at += 64) {
    prefetch_rows(w0, lda, 16 * T, at);
    _tile_loadd(4, xb + (at / 4) * bstride, bstride);
    _tile_loadd(2, w0 + at, lda);
    if (BF16) _tile_dpbf16ps(0, 2, 4); else _tile_dpbsud(0, 2, 4);
    if (T == 2) {
      _tile_loadd(3, w0 + 16 * lda + at, lda);
      if (BF16) _tile_dpbf16ps(1, 3, 4); else _tile_dpbsud(1, 3, 4);
    }
  }
  _tile_stored(0, out, bstride);
  if (T == 2) _tile_stored(1, out + 16 * M, bstride);
}

// x [M, K] (2-byte bf16 or 1-byte u8 codes, row stride ldx bytes) -> B layout: for each group g of 4 bytes
// along K (a bf16 pair or a u8 quad), the M tokens' groups side by side: xb[g][m] = x[m][g].
static void amx_pack_b(const uint8_t* x, int64_t ldx, int64_t M, int64_t kbytes, uint32_t* xb) {
  const int64_t G = kbytes / 4;
  for (int64_t m = 0; m < M; ++m) {
    const uint32_t* xm = reinterpret_cast<const uint32_t*>(x + m * ldx);
    for (int64_t g = 0; g < G; ++g) xb[g * M + m] = xm[g];
  }
}

// Every output row n in [0, N): sums[m][n] (float for bf16, int32 bit patterns for int8), via AMX panels of
// 32 (then 16) rows; a tail of < 16 rows is left to `tail` (the AVX-512 kernels).
// (a lambda carries no target attribute, so the per-thread body is a function of its own)
template <bool BF16, typename Epi, typename Tail>
TGT_AMX static void amx_thread(const char* w, int64_t lda, int64_t N, const uint32_t* xb, int64_t M, Epi& epi,
                               Tail& tail, int64_t p0, int64_t p1) {
  amx_config(M);
  alignas(64) float c[32 * 16];
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t n = p * 32, R = std::min<int64_t>(32, N - n);
    const char* wn = w + n * lda;
    int64_t done = 0;
    if (R == 32) { amx_panels<2, BF16>(wn, lda, reinterpret_cast<const char*>(xb), M, c); done = 32; }
    else if (R >= 16) { amx_panels<1, BF16>(wn, lda, reinterpret_cast<const char*>(xb), M, c); done = 16; }
    epi(n, done, c);
    for (int64_t r = done; r < R; ++r) tail(n + r);
  }
  _tile_release();
}

template <bool BF16, typename Epi, typename Tail>
static void amx_gemm(const char* w, int64_t lda, int64_t N, const uint32_t* xb, int64_t M, Epi epi, Tail tail) {
  at::parallel_for(0, (N + 31) / 32, 1, [&](int64_t p0, int64_t p1) {
    amx_thread<BF16>(w, lda, N, xb, M, epi, tail, p0, p1);
  });
}

// ---------------------------------------------------------------- bf16 x bf16 -> fp32
template <int R, int MB>
TGT_BF16 static void bf16_block(const uint16_t* x, int64_t ldx, const uint16_t* w, int64_t K, float* acc_out) {
  __m512 acc[R][MB];
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < MB; ++m) acc[r][m] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 32) {
    __m512bh b[R];
    for (int r = 0; r < R; ++r) {
      const uint16_t* p = w + r * K + k;
      _mm_prefetch(prefetch_at(reinterpret_cast<const char*>(w), r, R, K * 2, k * 2), _MM_HINT_T0);
      b[r] = (__m512bh)_mm512_loadu_si512(p);
    }
    for (int m = 0; m < MB; ++m) {
      __m512bh a = (__m512bh)_mm512_loadu_si512(x + m * ldx + k);
      for (int r = 0; r < R; ++r) acc[r][m] = _mm512_dpbf16_ps(acc[r][m], a, b[r]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < MB; ++m) acc_out[m * R + r] = _mm512_reduce_add_ps(acc[r][m]);
}

template <int R>
TGT_BF16 static void bf16_rows(const uint16_t* x, int64_t M, int64_t K, const uint16_t* w, int64_t n,
                               float* sums /* [M][R] */) {
  for (int64_t m0 = 0; m0 < M; m0 += 4) {
    const int64_t mb = std::min<int64_t>(4, M - m0);
    const uint16_t* xm = x + m0 * K;
    float* s = sums + m0 * R;
    const uint16_t* wn = w + n * K;
    switch (mb) {
      case 4: bf16_block<R, 4>(xm, K, wn, K, s); break;
      case 3: bf16_block<R, 3>(xm, K, wn, K, s); break;
      case 2: bf16_block<R, 2>(xm, K, wn, K, s); break;
      default: bf16_block<R, 1>(xm, K, wn, K, s); break;
    }
  }
}

// y[M, N] = x[M, K] @ w[N, K]^T (+ bias), bf16 in, bf16 or fp32 out, fp32 accumulation.
torch::Tensor bf16_gemv(torch::Tensor x, torch::Tensor w, c10::optional<torch::Tensor> bias, bool out_bf16, bool amx) {
  TORCH_CHECK(x.scalar_type() == torch::kBFloat16 && x.dim() == 2 && x.is_contiguous(), "x: contiguous bf16 [M, K]");
  TORCH_CHECK(w.scalar_type() == torch::kBFloat16 && w.dim() == 2 && w.is_contiguous(), "w: contiguous bf16 [N, K]");
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  TORCH_CHECK(w.size(1) == K && K % 32 == 0 && M >= 1 && M <= (amx ? 16 : 8), "bf16_gemv: K % 32 == 0, 1 <= M <= 8 (16 with AMX)");
  const float* bp = nullptr;
  torch::Tensor bf;
  if (bias.has_value() && bias->defined()) { bf = bias->to(torch::kFloat32).contiguous(); bp = bf.data_ptr<float>(); }
  auto y = torch::empty({M, N}, torch::dtype(out_bf16 ? torch::kBFloat16 : torch::kFloat32));
  const uint16_t* xp = reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>());
  const uint16_t* wp = reinterpret_cast<const uint16_t*>(w.data_ptr<at::BFloat16>());
  void* yp = y.data_ptr();
  auto store = [&](int64_t m, int64_t n, float v) {
    v = v + (bp ? bp[n] : 0.0f);
    if (out_bf16) static_cast<at::BFloat16*>(yp)[m * N + n] = at::BFloat16(v);
    else static_cast<float*>(yp)[m * N + n] = v;
  };
  if (amx) {
    TORCH_CHECK(g_amx, "bf16_gemv: AMX not enabled (amx_enable() first)");
    std::vector<uint32_t> xb(M * K / 2);
    amx_pack_b(reinterpret_cast<const uint8_t*>(xp), K * 2, M, K * 2, xb.data());
    amx_gemm<true>(reinterpret_cast<const char*>(wp), K * 2, N, xb.data(), M,
      [&](int64_t n, int64_t rows, const float* c) {
        for (int64_t r = 0; r < rows; ++r) for (int64_t m = 0; m < M; ++m) store(m, n + r, c[r * M + m]);
      },
      [&](int64_t n) {
        float s1[16];
        bf16_rows<1>(xp, M, K, wp, n, s1);
        for (int64_t m = 0; m < M; ++m) store(m, n, s1[m]);
      });
    return y;
  }
  const int64_t panels = (N + 3) / 4;
  at::parallel_for(0, panels, 4, [&](int64_t p0, int64_t p1) {
    float sums[8 * 4];
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n = p * 4, R = std::min<int64_t>(4, N - n);
      if (R == 4) bf16_rows<4>(xp, M, K, wp, n, sums);
      else for (int64_t r = 0; r < R; ++r) {
        float s1[8];
        bf16_rows<1>(xp, M, K, wp, n + r, s1);
        for (int64_t m = 0; m < M; ++m) sums[m * 4 + r] = s1[m];
      }
      for (int64_t m = 0; m < M; ++m)
        for (int64_t r = 0; r < R; ++r) {
          float v = sums[m * 4 + r] + (bp ? bp[n + r] : 0.0f);
          if (out_bf16) static_cast<at::BFloat16*>(yp)[m * N + n + r] = at::BFloat16(v);
          else static_cast<float*>(yp)[m * N + n + r] = v;
        }
    }
  });
  return y;
}

// ---------------------------------------------------------------- activation quantization (qmath's)
// Walsh-Hadamard butterflies exactly as qmath.hadamard: h = 1, 2, 4, ...; (a, c) -> (a + c, a - c); then
// one multiplication by block^-1/2 rounded to float32.
static void hadamard_row(float* y, int64_t K, int64_t block) {
  for (int64_t b0 = 0; b0 < K; b0 += block)
    for (int64_t h = 1; h < block; h *= 2)
      for (int64_t j = b0; j < b0 + block; j += 2 * h)
        for (int64_t t = j; t < j + h; ++t) {
          float a = y[t], c = y[t + h];
          y[t] = a + c;
          y[t + h] = a - c;
        }
  const float f = static_cast<float>(std::pow(static_cast<double>(block), -0.5));
  for (int64_t k = 0; k < K; ++k) y[k] = y[k] * f;
}

// codes + 128 as uint8 (columns K..Kp zero), per-row scale and zero point (in the uint8 domain).
// static: c = clamp(round(x / scale) + offset, -128, 127); dynamic: s = max(amax|x| / 127, 1e-8),
// c = clamp(round(x / s), -127, 127). Division, not a reciprocal: qmath divides.
TGT_F static void quantize_rows(const torch::Tensor& x, int64_t hadamard, bool dynamic, float scale, float offset,
                                uint8_t* q, int64_t Kp, float* s_out, int32_t* zp_out) {
  const int64_t M = x.size(0), K = x.size(1);
  std::vector<float> buf(K);
  const bool is_bf16 = x.scalar_type() == torch::kBFloat16;
  for (int64_t m = 0; m < M; ++m) {
    float* f = buf.data();
    if (is_bf16) { const at::BFloat16* r = x.data_ptr<at::BFloat16>() + m * K; for (int64_t k = 0; k < K; ++k) f[k] = float(r[k]); }
    else { const float* r = x.data_ptr<float>() + m * K; for (int64_t k = 0; k < K; ++k) f[k] = r[k]; }
    if (hadamard > 1) hadamard_row(f, K, hadamard);
    float s = scale, off = offset, lo = -128.0f, hi = 127.0f;
    if (dynamic) {
      float amax = 0.0f;
      for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(f[k]));
      s = std::max(amax / 127.0f, 1e-8f);
      off = 0.0f; lo = -127.0f;
    }
    uint8_t* qm = q + m * Kp;
    const __m512 vs = _mm512_set1_ps(s), voff = _mm512_set1_ps(off), vlo = _mm512_set1_ps(lo),
                 vhi = _mm512_set1_ps(hi), v128 = _mm512_set1_ps(128.0f);
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
      __m512 v = _mm512_div_ps(_mm512_loadu_ps(f + k), vs);
      v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      v = _mm512_add_ps(v, voff);
      v = _mm512_min_ps(_mm512_max_ps(v, vlo), vhi);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(qm + k), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_add_ps(v, v128))));
    }
    for (; k < K; ++k) {
      float v = std::nearbyint(f[k] / s) + off;
      v = std::min(std::max(v, lo), hi);
      qm[k] = static_cast<uint8_t>(static_cast<int32_t>(v) + 128);
    }
    for (k = K; k < Kp; ++k) qm[k] = 0;
    s_out[m] = s;
    zp_out[m] = dynamic ? 128 : static_cast<int32_t>(offset) + 128;
  }
}

// (codes + 128 uint8 [M, Kp], scale float32 [M], zero point int32 [M]) — the packed-sparse linear's front end.
std::vector<torch::Tensor> quantize_u8(torch::Tensor x, int64_t kp, bool dynamic, double scale, double offset,
                                       int64_t hadamard) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && (x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kBFloat16),
              "x: contiguous float32/bf16 [M, K]");
  TORCH_CHECK(kp >= x.size(1), "kp < K");
  const int64_t M = x.size(0);
  auto q = torch::empty({M, kp}, torch::dtype(torch::kUInt8));
  auto s = torch::empty({M}, torch::dtype(torch::kFloat32));
  auto zp = torch::empty({M}, torch::dtype(torch::kInt32));
  quantize_rows(x, hadamard, dynamic, static_cast<float>(scale), static_cast<float>(offset), q.data_ptr<uint8_t>(), kp,
                s.data_ptr<float>(), zp.data_ptr<int32_t>());
  return {q, s, zp};
}

// ---------------------------------------------------------------- u8 x s8 -> int32
template <int R, int MB>
TGT_VNNI static void u8s8_block(const uint8_t* x, int64_t ldx, const int8_t* w, int64_t K, int32_t* acc_out) {
  __m512i acc[R][MB];
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < MB; ++m) acc[r][m] = _mm512_setzero_si512();
  for (int64_t k = 0; k < K; k += 64) {
    __m512i b[R];
    for (int r = 0; r < R; ++r) {
      const int8_t* p = w + r * K + k;
      _mm_prefetch(prefetch_at(reinterpret_cast<const char*>(w), r, R, K, k), _MM_HINT_T0);
      b[r] = _mm512_loadu_si512(p);
    }
    for (int m = 0; m < MB; ++m) {
      __m512i a = _mm512_loadu_si512(x + m * ldx + k);
      for (int r = 0; r < R; ++r) acc[r][m] = _mm512_dpbusd_epi32(acc[r][m], a, b[r]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int m = 0; m < MB; ++m) acc_out[m * R + r] = _mm512_reduce_add_epi32(acc[r][m]);
}

template <int R>
TGT_VNNI static void u8s8_rows(const uint8_t* x, int64_t M, int64_t K, const int8_t* w, int64_t n, int32_t* sums) {
  for (int64_t m0 = 0; m0 < M; m0 += 4) {
    const int64_t mb = std::min<int64_t>(4, M - m0);
    const uint8_t* xm = x + m0 * K;
    int32_t* s = sums + m0 * R;
    const int8_t* wn = w + n * K;
    switch (mb) {
      case 4: u8s8_block<R, 4>(xm, K, wn, K, s); break;
      case 3: u8s8_block<R, 3>(xm, K, wn, K, s); break;
      case 2: u8s8_block<R, 2>(xm, K, wn, K, s); break;
      default: u8s8_block<R, 1>(xm, K, wn, K, s); break;
    }
  }
}

// W8A8 linear for M <= 8 tokens: quantize x (qmath's arithmetic, optional online Hadamard), int32 dot
// products, epilogue y = float(acc - zp·rowsum) · s_x · s_w (+ bias) in that order, bf16 or fp32 out.
torch::Tensor int8_linear(torch::Tensor x, torch::Tensor w, torch::Tensor rowsum, torch::Tensor wscale,
                          c10::optional<torch::Tensor> bias, bool dynamic, double scale, double offset,
                          int64_t hadamard, bool out_bf16, bool amx) {
  TORCH_CHECK(w.scalar_type() == torch::kInt8 && w.dim() == 2 && w.is_contiguous(), "w: contiguous int8 [N, K]");
  TORCH_CHECK(rowsum.scalar_type() == torch::kInt32 && wscale.scalar_type() == torch::kFloat32, "rowsum int32, wscale float32");
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  TORCH_CHECK(w.size(1) == K && K % 64 == 0 && M >= 1 && M <= (amx ? 16 : 8), "int8_linear: K % 64 == 0, 1 <= M <= 8 (16 with AMX)");
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && (x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kBFloat16),
              "x: contiguous float32/bf16 [M, K]");
  uint8_t q[8 * 16384 + 64];  // 8 rows of K <= 16384 on the stack; more rows or K: heap
  std::vector<uint8_t> qbig;
  uint8_t* qp = q;
  if (M * K > 8 * 16384) { qbig.resize(M * K); qp = qbig.data(); }
  float sx[16];
  int32_t zp[16];
  quantize_rows(x, hadamard, dynamic, static_cast<float>(scale), static_cast<float>(offset), qp, K, sx, zp);
  const float* bp = nullptr;
  torch::Tensor bf;
  if (bias.has_value() && bias->defined()) { bf = bias->to(torch::kFloat32).contiguous(); bp = bf.data_ptr<float>(); }
  auto y = torch::empty({M, N}, torch::dtype(out_bf16 ? torch::kBFloat16 : torch::kFloat32));
  const int8_t* wp = w.data_ptr<int8_t>();
  const int32_t* rs = rowsum.data_ptr<int32_t>();
  const float* ws = wscale.data_ptr<float>();
  void* yp = y.data_ptr();
  auto store = [&](int64_t m, int64_t n, int32_t acc) {
    float v = static_cast<float>(acc - zp[m] * rs[n]) * sx[m] * ws[n];
    if (bp) v = v + bp[n];
    if (out_bf16) static_cast<at::BFloat16*>(yp)[m * N + n] = at::BFloat16(v);
    else static_cast<float*>(yp)[m * N + n] = v;
  };
  if (amx) {
    TORCH_CHECK(g_amx, "int8_linear: AMX not enabled (amx_enable() first)");
    std::vector<uint32_t> xb(M * K / 4);
    amx_pack_b(qp, K, M, K, xb.data());
    amx_gemm<false>(reinterpret_cast<const char*>(wp), K, N, xb.data(), M,
      [&](int64_t n, int64_t rows, const float* c) {
        const int32_t* ci = reinterpret_cast<const int32_t*>(c);
        for (int64_t r = 0; r < rows; ++r) for (int64_t m = 0; m < M; ++m) store(m, n + r, ci[r * M + m]);
      },
      [&](int64_t n) {
        int32_t s1[16];
        u8s8_rows<1>(qp, M, K, wp, n, s1);
        for (int64_t m = 0; m < M; ++m) store(m, n, s1[m]);
      });
    return y;
  }
  const int64_t panels = (N + 3) / 4;
  at::parallel_for(0, panels, 4, [&](int64_t p0, int64_t p1) {
    int32_t sums[8 * 4];
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n = p * 4, R = std::min<int64_t>(4, N - n);
      if (R == 4) u8s8_rows<4>(qp, M, K, wp, n, sums);
      else for (int64_t r = 0; r < R; ++r) {
        int32_t s1[8];
        u8s8_rows<1>(qp, M, K, wp, n + r, s1);
        for (int64_t m = 0; m < M; ++m) sums[m * 4 + r] = s1[m];
      }
      for (int64_t m = 0; m < M; ++m)
        for (int64_t r = 0; r < R; ++r) store(m, n + r, sums[m * 4 + r]);
    }
  });
  return y;
}

// int32 [M, N] accumulators alone (tests hold them to exact integer sums)
torch::Tensor u8s8_gemv(torch::Tensor xq, torch::Tensor w, bool amx) {
  TORCH_CHECK(xq.scalar_type() == torch::kUInt8 && xq.is_contiguous() && w.scalar_type() == torch::kInt8 && w.is_contiguous(), "u8 x, s8 w");
  const int64_t M = xq.size(0), K = xq.size(1), N = w.size(0);
  TORCH_CHECK(w.size(1) == K && K % 64 == 0 && M >= 1 && M <= (amx ? 16 : 8), "u8s8_gemv: K % 64 == 0, 1 <= M <= 8 (16 with AMX)");
  auto y = torch::empty({M, N}, torch::dtype(torch::kInt32));
  const uint8_t* xp = xq.data_ptr<uint8_t>();
  const int8_t* wp = w.data_ptr<int8_t>();
  int32_t* yp = y.data_ptr<int32_t>();
  if (amx) {
    TORCH_CHECK(g_amx, "u8s8_gemv: AMX not enabled (amx_enable() first)");
    std::vector<uint32_t> xb(M * K / 4);
    amx_pack_b(xp, K, M, K, xb.data());
    amx_gemm<false>(reinterpret_cast<const char*>(wp), K, N, xb.data(), M,
      [&](int64_t n, int64_t rows, const float* c) {
        const int32_t* ci = reinterpret_cast<const int32_t*>(c);
        for (int64_t r = 0; r < rows; ++r) for (int64_t m = 0; m < M; ++m) yp[m * N + n + r] = ci[r * M + m];
      },
      [&](int64_t n) {
        int32_t s1[16];
        u8s8_rows<1>(xp, M, K, wp, n, s1);
        for (int64_t m = 0; m < M; ++m) yp[m * N + n] = s1[m];
      });
    return y;
  }
  at::parallel_for(0, (N + 3) / 4, 4, [&](int64_t p0, int64_t p1) {
    int32_t sums[8 * 4];
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n = p * 4, R = std::min<int64_t>(4, N - n);
      if (R == 4) u8s8_rows<4>(xp, M, K, wp, n, sums);
      else for (int64_t r = 0; r < R; ++r) {
        int32_t s1[8];
        u8s8_rows<1>(xp, M, K, wp, n + r, s1);
        for (int64_t m = 0; m < M; ++m) sums[m * 4 + r] = s1[m];
      }
      for (int64_t m = 0; m < M; ++m)
        for (int64_t r = 0; r < R; ++r) yp[m * N + n + r] = sums[m * 4 + r];
    }
  });
  return y;
}

// ---------------------------------------------------------------- read-bandwidth probe
// Reads the way the GEMV kernels do: per thread one contiguous chunk cut into 4 streams read side by side,
// one 64-byte line of each per step, software prefetch PF bytes ahead. (A single-stream sum, like torch's
// or peers/membw_read.c, reads ~20% slower on the Xeon this was tuned on and would understate the floor.)
TGT_F static double sum_chunk(const float* a, int64_t n) {
  const int64_t q = (n / 4) & ~int64_t(15);
  const float* s[4] = {a, a + q, a + 2 * q, a + 3 * q};
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  for (int64_t i = 0; i < q; i += 16)
    for (int r = 0; r < 4; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(s[r] + i) + PF, _MM_HINT_T0);
      acc[r] = _mm512_add_ps(acc[r], _mm512_loadu_ps(s[r] + i));
    }
  double t = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
  for (int64_t i = 4 * q; i < n; ++i) t += a[i];
  return t;
}

double read_probe(torch::Tensor x) {
  TORCH_CHECK(x.scalar_type() == torch::kFloat32 && x.is_contiguous(), "x: contiguous float32");
  const float* a = x.data_ptr<float>();
  const int64_t n = x.numel();
  const int64_t nt = at::get_num_threads();
  std::vector<double> part(nt, 0.0);
  at::parallel_for(0, nt, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t lo = n * t / nt, hi = n * (t + 1) / nt;
      part[t] = sum_chunk(a + lo, hi - lo);
    }
  });
  double s = 0;
  for (double v : part) s += v;
  return s;
}
"""

FUNCTIONS = ["bf16_gemv", "int8_linear", "u8s8_gemv", "quantize_u8", "read_probe", "amx_enable"]
