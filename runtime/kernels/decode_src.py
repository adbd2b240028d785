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
torch::Tensor bf16_gemv(torch::Tensor x, torch::Tensor w, c10::optional<torch::Tensor> bias, bool out_bf16) {
  TORCH_CHECK(x.scalar_type() == torch::kBFloat16 && x.dim() == 2 && x.is_contiguous(), "x: contiguous bf16 [M, K]");
  TORCH_CHECK(w.scalar_type() == torch::kBFloat16 && w.dim() == 2 && w.is_contiguous(), "w: contiguous bf16 [N, K]");
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  TORCH_CHECK(w.size(1) == K && K % 32 == 0 && M >= 1 && M <= 8, "bf16_gemv: K % 32 == 0, 1 <= M <= 8");
  const float* bp = nullptr;
  torch::Tensor bf;
  if (bias.has_value() && bias->defined()) { bf = bias->to(torch::kFloat32).contiguous(); bp = bf.data_ptr<float>(); }
  auto y = torch::empty({M, N}, torch::dtype(out_bf16 ? torch::kBFloat16 : torch::kFloat32));
  const uint16_t* xp = reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>());
  const uint16_t* wp = reinterpret_cast<const uint16_t*>(w.data_ptr<at::BFloat16>());
  void* yp = y.data_ptr();
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
                          int64_t hadamard, bool out_bf16) {
  TORCH_CHECK(w.scalar_type() == torch::kInt8 && w.dim() == 2 && w.is_contiguous(), "w: contiguous int8 [N, K]");
  TORCH_CHECK(rowsum.scalar_type() == torch::kInt32 && wscale.scalar_type() == torch::kFloat32, "rowsum int32, wscale float32");
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  TORCH_CHECK(w.size(1) == K && K % 64 == 0 && M >= 1 && M <= 8, "int8_linear: K % 64 == 0, 1 <= M <= 8");
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && (x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kBFloat16),
              "x: contiguous float32/bf16 [M, K]");
  uint8_t q[8 * 16384 + 64];
  std::vector<uint8_t> qbig;
  uint8_t* qp = q;
  if (M * K > 8 * 16384) { qbig.resize(M * K); qp = qbig.data(); }
  float sx[8];
  int32_t zp[8];
  quantize_rows(x, hadamard, dynamic, static_cast<float>(scale), static_cast<float>(offset), qp, K, sx, zp);
  const float* bp = nullptr;
  torch::Tensor bf;
  if (bias.has_value() && bias->defined()) { bf = bias->to(torch::kFloat32).contiguous(); bp = bf.data_ptr<float>(); }
  auto y = torch::empty({M, N}, torch::dtype(out_bf16 ? torch::kBFloat16 : torch::kFloat32));
  const int8_t* wp = w.data_ptr<int8_t>();
  const int32_t* rs = rowsum.data_ptr<int32_t>();
  const float* ws = wscale.data_ptr<float>();
  void* yp = y.data_ptr();
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
        for (int64_t r = 0; r < R; ++r) {
          float v = static_cast<float>(sums[m * 4 + r] - zp[m] * rs[n + r]) * sx[m] * ws[n + r];
          if (bp) v = v + bp[n + r];
          if (out_bf16) static_cast<at::BFloat16*>(yp)[m * N + n + r] = at::BFloat16(v);
          else static_cast<float*>(yp)[m * N + n + r] = v;
        }
    }
  });
  return y;
}

// int32 [M, N] accumulators alone (tests hold them to exact integer sums)
torch::Tensor u8s8_gemv(torch::Tensor xq, torch::Tensor w) {
  TORCH_CHECK(xq.scalar_type() == torch::kUInt8 && xq.is_contiguous() && w.scalar_type() == torch::kInt8 && w.is_contiguous(), "u8 x, s8 w");
  const int64_t M = xq.size(0), K = xq.size(1), N = w.size(0);
  TORCH_CHECK(w.size(1) == K && K % 64 == 0 && M >= 1 && M <= 8, "u8s8_gemv: K % 64 == 0, 1 <= M <= 8");
  auto y = torch::empty({M, N}, torch::dtype(torch::kInt32));
  const uint8_t* xp = xq.data_ptr<uint8_t>();
  const int8_t* wp = w.data_ptr<int8_t>();
  int32_t* yp = y.data_ptr<int32_t>();
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

FUNCTIONS = ["bf16_gemv", "int8_linear", "u8s8_gemv", "quantize_u8", "read_probe"]
