"""C++ source of the fused small ops of one decode step (bf16): RMSNorm, SiLU·mul, and RoPE + KV-cache write +
attention in one call per layer.

Why: on SmolLM2-135M a decode step ran ~60 eager ops per layer; at ~3-50 µs each (a bmm on a cache view
whose length changes every step rebuilds its oneDNN primitive) they cost more than reading the weights
(benchmarks/decode_profile.py). Each op here does one layer's worth in one call, float32 inside.

Rounding follows the eager path it replaces where that path rounds to bf16 on purpose (HF's RMSNorm rounds
the normalized row before the weight multiply; SiLU's output is bf16 before the multiply; q and k are
bf16 after RoPE, as the cache stores them); elsewhere it stays in float32 (attention scores, softmax,
probabilities), which is closer to the float64 reference than the eager path's bf16 scores.
Compiled with the GEMV kernels (decode.py) and the same flags: no fast-math, no FMA contraction.
"""

OPS_SRC = r"""
// ---------------------------------------------------------------- fused decode-step ops (bf16)
static inline float bf(const at::BFloat16 v) { return static_cast<float>(v); }
static inline float round_bf16(float v) { return static_cast<float>(at::BFloat16(v)); }

// y = bf16(w * bf16(x * 1/sqrt(mean(x^2) + eps))) per row: HF LlamaRMSNorm's arithmetic in bf16.
torch::Tensor rms_norm_bf16(torch::Tensor x, torch::Tensor w, double eps) {
  TORCH_CHECK(x.scalar_type() == torch::kBFloat16 && x.is_contiguous() && w.scalar_type() == torch::kBFloat16 &&
              w.is_contiguous() && x.size(-1) == w.numel(), "rms_norm_bf16: contiguous bf16 x [..., K], w [K]");
  const int64_t K = w.numel(), M = x.numel() / K;
  auto y = torch::empty_like(x);
  const at::BFloat16* xp = x.data_ptr<at::BFloat16>();
  const at::BFloat16* wp = w.data_ptr<at::BFloat16>();
  at::BFloat16* yp = y.data_ptr<at::BFloat16>();
  for (int64_t m = 0; m < M; ++m) {
    const at::BFloat16* r = xp + m * K;
    float ss = 0.0f;
    for (int64_t k = 0; k < K; ++k) { const float v = bf(r[k]); ss += v * v; }
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(K) + static_cast<float>(eps));
    for (int64_t k = 0; k < K; ++k) yp[m * K + k] = at::BFloat16(bf(wp[k]) * round_bf16(bf(r[k]) * inv));
  }
  return y;
}

// [..., 2f] (gate | up) -> [..., f]: bf16(bf16(silu(g)) * u), as F.silu(g) * u computes it in bf16.
torch::Tensor silu_mul_bf16(torch::Tensor gu, int64_t f) {
  TORCH_CHECK(gu.scalar_type() == torch::kBFloat16 && gu.is_contiguous() && gu.size(-1) == 2 * f, "silu_mul_bf16: contiguous bf16 [..., 2f]");
  const int64_t M = gu.numel() / (2 * f);
  auto sizes = gu.sizes().vec();
  sizes.back() = f;
  auto y = torch::empty(sizes, gu.options());
  const at::BFloat16* g = gu.data_ptr<at::BFloat16>();
  at::BFloat16* yp = y.data_ptr<at::BFloat16>();
  for (int64_t m = 0; m < M; ++m)
    for (int64_t i = 0; i < f; ++i) {
      const float a = bf(g[m * 2 * f + i]), u = bf(g[m * 2 * f + f + i]);
      yp[m * f + i] = at::BFloat16(round_bf16(a / (1.0f + std::exp(-a))) * u);
    }
  return y;
}

// x' = x * cos + roll(x, hd/2) * sin (sin carries rotate-half's sign, rope.rope_for_layers), in float32.
static inline void rope_row(const at::BFloat16* x, const at::BFloat16* c, const at::BFloat16* s, int64_t hd, float* out) {
  const int64_t h = hd / 2;
  for (int64_t i = 0; i < hd; ++i) out[i] = bf(x[i]) * bf(c[i]) + bf(x[(i + h) % hd]) * bf(s[i]);
}

TGT_F static inline float dot_bf16(const float* q, const at::BFloat16* k, int64_t hd) {
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= hd; i += 16) {
    const __m256i kb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k + i));
    const __m512 kf = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(kb), 16));
    acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_loadu_ps(q + i), kf));
  }
  float t = _mm512_reduce_add_ps(acc);
  for (; i < hd; ++i) t += q[i] * bf(k[i]);
  return t;
}

TGT_F static inline void axpy_bf16(float a, const at::BFloat16* v, float* o, int64_t hd) {
  const __m512 va = _mm512_set1_ps(a);
  int64_t i = 0;
  for (; i + 16 <= hd; i += 16) {
    const __m256i vb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + i));
    const __m512 vf = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(vb), 16));
    _mm512_storeu_ps(o + i, _mm512_add_ps(_mm512_loadu_ps(o + i), _mm512_mul_ps(va, vf)));
  }
  for (; i < hd; ++i) o[i] += a * bf(v[i]);
}

// One decode token per row: qkv [B, 1, H + 2 Hkv, hd] (the fused q/k/v linear's output) -> RoPE on q and k,
// k and v written into the caches [B, Hkv, Lmax, hd] at `pos`, then for each query head
// softmax(q·k_l / sqrt(hd)) over l <= pos (mask [B, pos + 1] bool: false = not attended) times v.
// Returns [B, 1, H * hd] bf16, o_proj's input. GQA: the G = H / Hkv heads of a kv head share its K/V reads.
torch::Tensor attn_decode_bf16(torch::Tensor qkv, torch::Tensor cos, torch::Tensor sin, torch::Tensor kc, torch::Tensor vc,
                               int64_t H, int64_t pos, c10::optional<torch::Tensor> mask) {
  TORCH_CHECK(qkv.scalar_type() == torch::kBFloat16 && qkv.is_contiguous() && qkv.dim() == 4 && qkv.size(1) == 1,
              "attn_decode_bf16: qkv contiguous bf16 [B, 1, heads, hd]");
  const int64_t B = qkv.size(0), NH = qkv.size(2), hd = qkv.size(3), Hkv = (NH - H) / 2;
  TORCH_CHECK(Hkv >= 1 && H % Hkv == 0 && NH == H + 2 * Hkv, "attn_decode_bf16: heads");
  TORCH_CHECK(kc.scalar_type() == torch::kBFloat16 && vc.scalar_type() == torch::kBFloat16 && kc.is_contiguous() &&
              vc.is_contiguous() && kc.dim() == 4 && kc.size(0) == B && kc.size(1) == Hkv && kc.size(3) == hd &&
              vc.sizes() == kc.sizes() && pos >= 0 && pos < kc.size(2), "attn_decode_bf16: caches [B, Hkv, Lmax, hd] bf16");
  TORCH_CHECK(cos.scalar_type() == torch::kBFloat16 && sin.scalar_type() == torch::kBFloat16 && cos.is_contiguous() &&
              sin.is_contiguous() && cos.numel() == B * hd && sin.numel() == B * hd, "attn_decode_bf16: cos/sin bf16 [B, hd]");
  const bool* mp = nullptr;
  torch::Tensor mc;
  if (mask.has_value() && mask->defined()) {
    mc = mask->contiguous();
    TORCH_CHECK(mc.scalar_type() == torch::kBool && mc.numel() == B * (pos + 1), "attn_decode_bf16: mask bool [B, pos + 1]");
    mp = mc.data_ptr<bool>();
  }
  const int64_t L = pos + 1, Lmax = kc.size(2), G = H / Hkv;
  const at::BFloat16* xp = qkv.data_ptr<at::BFloat16>();
  const at::BFloat16* cp = cos.data_ptr<at::BFloat16>();
  const at::BFloat16* sp = sin.data_ptr<at::BFloat16>();
  at::BFloat16* kp = kc.data_ptr<at::BFloat16>();
  at::BFloat16* vp = vc.data_ptr<at::BFloat16>();
  auto o = torch::empty({B, 1, H * hd}, qkv.options());
  at::BFloat16* op = o.data_ptr<at::BFloat16>();
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  // the new token's k (rotated) and v into the caches
  std::vector<float> tmp(hd);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < Hkv; ++j) {
      const at::BFloat16* kx = xp + (b * NH + H + j) * hd;
      const at::BFloat16* vx = xp + (b * NH + H + Hkv + j) * hd;
      rope_row(kx, cp + b * hd, sp + b * hd, hd, tmp.data());
      at::BFloat16* kd = kp + ((b * Hkv + j) * Lmax + pos) * hd;
      at::BFloat16* vd = vp + ((b * Hkv + j) * Lmax + pos) * hd;
      for (int64_t i = 0; i < hd; ++i) { kd[i] = at::BFloat16(tmp[i]); vd[i] = vx[i]; }
    }
  // a task per (row, kv head) when the cache is long enough to pay for a thread; else one thread
  const int64_t grain = L * G >= 2048 ? 1 : B * Hkv;
  at::parallel_for(0, B * Hkv, grain, [&](int64_t t0, int64_t t1) {
    std::vector<float> q(hd), acc(hd), s(L);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / Hkv, j = t % Hkv;
      const at::BFloat16* kb = kp + (b * Hkv + j) * Lmax * hd;
      const at::BFloat16* vb = vp + (b * Hkv + j) * Lmax * hd;
      const bool* mb = mp ? mp + b * L : nullptr;
      for (int64_t g = 0; g < G; ++g) {
        const int64_t h = j * G + g;
        rope_row(xp + (b * NH + h) * hd, cp + b * hd, sp + b * hd, hd, q.data());
        for (int64_t i = 0; i < hd; ++i) q[i] = round_bf16(q[i]);
        float mx = -INFINITY;
        for (int64_t l = 0; l < L; ++l) {
          s[l] = (mb && !mb[l]) ? -INFINITY : dot_bf16(q.data(), kb + l * hd, hd) * scale;
          mx = std::max(mx, s[l]);
        }
        float sum = 0.0f;
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int64_t l = 0; l < L; ++l) {
          if (s[l] == -INFINITY) continue;
          const float p = std::exp(s[l] - mx);
          sum += p;
          axpy_bf16(p, vb + l * hd, acc.data(), hd);
        }
        at::BFloat16* od = op + b * H * hd + h * hd;
        for (int64_t i = 0; i < hd; ++i) od[i] = at::BFloat16(sum > 0.0f ? acc[i] / sum : 0.0f);
      }
    }
  });
  return o;
}
"""

OPS_FUNCTIONS = ["rms_norm_bf16", "silu_mul_bf16", "attn_decode_bf16"]
