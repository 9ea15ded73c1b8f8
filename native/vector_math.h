// Vectorised exponentials for the addon's softmax and GELU kernels (issue 20).
//
// std::exp is scalar: at the reference step's attention shape (16,384 rows of 256 scores) the
// softmax forward spent ~17 of the attention kernel's ~25 ms in expf, and GELU and its gradient
// (2M elements each) ~30 ms each; SiLU (the tokenizer's activation) is the same story. Here e^x is a Cephes-style expf — range reduction by ln 2 into
// |r| ≤ ln2/2, a degree-5 minimax polynomial for (e^r − 1 − r)/r², the power of two built in the
// exponent bits — on 16-lane GCC vector extensions. Every lane, the row tails included (padded
// through a small buffer), goes through the same arithmetic, so a value never depends on where it
// sits in a row.
//
// The bodies are compiled three times — AVX-512F, AVX2+FMA, and the build's baseline (x86-64-v2
// by default, any other architecture as is) — and the widest the CPU runs is picked once at run
// time, so one build runs everywhere.
//
// Accuracy (test/vector-math.test.ts, against float64): worst 8.5e-8 relative (1.4 ulp) over a dense sweep of
// [-87.3, 88]; 0 below −87.34 (where e^x is under FLT_MIN), +0 for −∞, NaN for NaN.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

namespace vmath {

typedef float VF __attribute__((vector_size(64)));
typedef int32_t VI __attribute__((vector_size(64)));
constexpr int64_t kLanes = 16;

#define VMATH_INLINE inline __attribute__((always_inline))

VMATH_INLINE VF Splat(float v) { return VF{} + v; }
VMATH_INLINE VF Load(const float* p) {
  VF v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
VMATH_INLINE void Store(float* p, VF v) { std::memcpy(p, &v, sizeof v); }
VMATH_INLINE VF Max(VF a, VF b) { return a > b ? a : b; }

constexpr float kExpLow = -87.3365478515625f;  // below: e^x < FLT_MIN, returned as 0
constexpr float kExpHigh = 88.0f;              // above: clamped (2^127 stays finite)

// e^x in every lane.
VMATH_INLINE VF Exp(VF x) {
  const VF low = Splat(kExpLow), high = Splat(kExpHigh);
  VF c = x < low ? low : x;
  c = c > high ? high : c;
  const VF magic = Splat(12582912.0f);  // 1.5·2^23: adding it rounds to the nearest integer
  const VF t = c * Splat(1.44269504088896341f) + magic;
  const VF n = t - magic;
  // r = c − n·ln 2, with ln 2 split in two so that n·ln2_hi is exact.
  VF r = c - n * Splat(0.693359375f);
  r = r - n * Splat(-2.12194440e-4f);
  VF p = Splat(1.9875691500e-4f);
  p = p * r + Splat(1.3981999507e-3f);
  p = p * r + Splat(8.3334519073e-3f);
  p = p * r + Splat(4.1665795894e-2f);
  p = p * r + Splat(1.6666665459e-1f);
  p = p * r + Splat(5.0000001201e-1f);
  p = p * (r * r) + r + Splat(1.0f);
  // 2^n: n sits in the low bits of t's mantissa; |n| ≤ 127 keeps the exponent normal.
  const VI two_n = (((VI)t - (VI)magic) + 127) << 23;
  const VF e = p * (VF)two_n;
  return x < low ? Splat(0.0f) : e;
}

VMATH_INLINE float HorizontalMax(VF v) {
  float m = v[0];
  for (int i = 1; i < kLanes; ++i) m = v[i] > m ? v[i] : m;
  return m;
}

VMATH_INLINE double HorizontalSum(VF v) {
  double s = 0;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

// Softmax of one row of d values, x → y (y may be x): max, shifted exponentials, one scale.
// Returns the row's log-sum-exp, max + log Σ e^{x − max} (−∞ for an all −∞ row).
VMATH_INLINE double SoftmaxRowBody(const float* x, float* y, int64_t d) {
  const int64_t whole = d - d % kLanes, tail = d - whole;
  VF vmax = Splat(-INFINITY);
  for (int64_t i = 0; i < whole; i += kLanes) vmax = Max(vmax, Load(x + i));
  float m = HorizontalMax(vmax);
  for (int64_t i = whole; i < d; ++i) m = x[i] > m ? x[i] : m;
  // An all −∞ row (everything masked) has no finite maximum: shift by 0 (its sum is 0, the row NaN,
  // as 0/0 in the unfused form).
  const float shift_value = std::isfinite(m) ? m : 0.0f;
  const VF shift = Splat(shift_value);
  VF sum = Splat(0.0f);
  for (int64_t i = 0; i < whole; i += kLanes) {
    const VF e = Exp(Load(x + i) - shift);
    Store(y + i, e);
    sum += e;
  }
  if (tail > 0) {
    float buf[kLanes];
    for (int64_t i = 0; i < kLanes; ++i) buf[i] = i < tail ? x[whole + i] : -INFINITY;
    const VF e = Exp(Load(buf) - shift);
    Store(buf, e);
    sum += e;
    for (int64_t i = 0; i < tail; ++i) y[whole + i] = buf[i];
  }
  const double total = HorizontalSum(sum);
  const VF inv = Splat(static_cast<float>(1.0 / total));
  for (int64_t i = 0; i < whole; i += kLanes) Store(y + i, Load(y + i) * inv);
  for (int64_t i = whole; i < d; ++i) y[i] *= inv[0];
  return shift_value + std::log(total);
}

// tanh form of GELU, 0.5·z·(1 + tanh(c·(z + a·z³))), with tanh(u) = 1 − 2/(e^{2u} + 1), and its
// derivative 0.5·(1 + t) + 0.5·z·(1 − t²)·c·(1 + 3a·z²).
constexpr float kGeluC = 0.7978845608028654f;
constexpr float kGeluA = 0.044715f;

VMATH_INLINE VF GeluTanh(VF z) {
  const VF u = Splat(kGeluC) * (z + Splat(kGeluA) * z * z * z);
  return Splat(1.0f) - Splat(2.0f) / (Exp(u + u) + Splat(1.0f));
}

VMATH_INLINE VF GeluValue(VF z) { return Splat(0.5f) * z * (Splat(1.0f) + GeluTanh(z)); }

VMATH_INLINE VF GeluSlope(VF z) {
  const VF t = GeluTanh(z);
  return Splat(0.5f) * (Splat(1.0f) + t) +
         Splat(0.5f) * z * (Splat(1.0f) - t * t) * Splat(kGeluC) * (Splat(1.0f) + Splat(3.0f * kGeluA) * z * z);
}

// SiLU, z·σ(z) with σ(z) = 1/(1 + e^{−z}) (safe at both ends: e^{−z} → ∞ gives σ → 0), and its
// derivative σ·(1 + z·(1 − σ)).
VMATH_INLINE VF Sigmoid(VF z) { return Splat(1.0f) / (Splat(1.0f) + Exp(-z)); }
VMATH_INLINE VF SiluValue(VF z) { return z * Sigmoid(z); }
VMATH_INLINE VF SiluSlope(VF z) {
  const VF s = Sigmoid(z);
  return s * (Splat(1.0f) + z * (Splat(1.0f) - s));
}

// y = f(x) elementwise over n values (tail through a buffer, so every value takes the same path).
template <typename F>
VMATH_INLINE void MapBody(const float* x, float* y, int64_t n, F f) {
  const int64_t whole = n - n % kLanes;
  for (int64_t i = 0; i < whole; i += kLanes) Store(y + i, f(Load(x + i)));
  if (whole < n) {
    float buf[kLanes] = {};
    std::memcpy(buf, x + whole, static_cast<size_t>(n - whole) * sizeof(float));
    Store(buf, f(Load(buf)));
    std::memcpy(y + whole, buf, static_cast<size_t>(n - whole) * sizeof(float));
  }
}

// dx = dy · f'(x) elementwise over n values (dx may be dy).
template <typename F>
VMATH_INLINE void MapGradBody(const float* dy, const float* x, float* dx, int64_t n, F slope) {
  const int64_t whole = n - n % kLanes;
  for (int64_t i = 0; i < whole; i += kLanes) Store(dx + i, Load(dy + i) * slope(Load(x + i)));
  if (whole < n) {
    float bx[kLanes] = {}, bd[kLanes] = {};
    const size_t bytes = static_cast<size_t>(n - whole) * sizeof(float);
    std::memcpy(bx, x + whole, bytes);
    std::memcpy(bd, dy + whole, bytes);
    Store(bd, Load(bd) * slope(Load(bx)));
    std::memcpy(dx + whole, bd, bytes);
  }
}

VMATH_INLINE void ExpBody(const float* x, float* y, int64_t n) { MapBody(x, y, n, [](VF v) __attribute__((always_inline)) { return Exp(v); }); }
VMATH_INLINE void GeluBody(const float* x, float* y, int64_t n) { MapBody(x, y, n, [](VF v) __attribute__((always_inline)) { return GeluValue(v); }); }
VMATH_INLINE void GeluGradBody(const float* dy, const float* x, float* dx, int64_t n) {
  MapGradBody(dy, x, dx, n, [](VF v) __attribute__((always_inline)) { return GeluSlope(v); });
}
VMATH_INLINE void SiluBody(const float* x, float* y, int64_t n) { MapBody(x, y, n, [](VF v) __attribute__((always_inline)) { return SiluValue(v); }); }
VMATH_INLINE void SiluGradBody(const float* dy, const float* x, float* dx, int64_t n) {
  MapGradBody(dy, x, dx, n, [](VF v) __attribute__((always_inline)) { return SiluSlope(v); });
}

// Layer norm of one row of d values: y = (x − mean)·rstd·g + b, rstd = 1/√(var + eps); mean and
// variance from lane sums added in double (two passes, so the variance is not a difference of
// large squares).
VMATH_INLINE void LayerNormRowBody(const float* x, const float* g, const float* b, float* y, int64_t d, double eps,
                                   float* mean_out, float* rstd_out) {
  const int64_t whole = d - d % kLanes;
  VF acc = Splat(0.0f);
  for (int64_t i = 0; i < whole; i += kLanes) acc += Load(x + i);
  double sum = HorizontalSum(acc);
  for (int64_t i = whole; i < d; ++i) sum += x[i];
  const double m = d > 0 ? sum / static_cast<double>(d) : 0.0;
  const float mf = static_cast<float>(m);
  const VF vm = Splat(mf);
  acc = Splat(0.0f);
  for (int64_t i = 0; i < whole; i += kLanes) {
    const VF c = Load(x + i) - vm;
    acc += c * c;
  }
  double var = HorizontalSum(acc);
  for (int64_t i = whole; i < d; ++i) var += (x[i] - m) * (x[i] - m);
  const float inv = static_cast<float>(1.0 / std::sqrt(var / static_cast<double>(d > 0 ? d : 1) + eps));
  const VF vi = Splat(inv);
  for (int64_t i = 0; i < whole; i += kLanes) Store(y + i, (Load(x + i) - vm) * vi * Load(g + i) + Load(b + i));
  for (int64_t i = whole; i < d; ++i) y[i] = (x[i] - mf) * inv * g[i] + b[i];
  *mean_out = mf;
  *rstd_out = inv;
}

// Layer norm's gradient for one row: dx = rstd·(h − mean(h) − x̂·mean(h·x̂)), h = dy·g, x̂ =
// (x − mean)·rstd; adds dy·x̂ into pg and dy into pb (the caller's per-worker sums of dg and db).
VMATH_INLINE void LayerNormGradRowBody(const float* dy, const float* x, const float* g, float mean, float rstd,
                                       float* dx, float* pg, float* pb, int64_t d) {
  const int64_t whole = d - d % kLanes;
  const VF vm = Splat(mean), vr = Splat(rstd);
  VF acc_h = Splat(0.0f), acc_hx = Splat(0.0f);
  for (int64_t i = 0; i < whole; i += kLanes) {
    const VF xh = (Load(x + i) - vm) * vr;
    const VF d_ = Load(dy + i);
    const VF h = d_ * Load(g + i);
    acc_h += h;
    acc_hx += h * xh;
    Store(pg + i, Load(pg + i) + d_ * xh);
    Store(pb + i, Load(pb + i) + d_);
  }
  double sum_h = HorizontalSum(acc_h), sum_hx = HorizontalSum(acc_hx);
  for (int64_t i = whole; i < d; ++i) {
    const float xh = (x[i] - mean) * rstd;
    const float h = dy[i] * g[i];
    sum_h += h;
    sum_hx += h * xh;
    pg[i] += dy[i] * xh;
    pb[i] += dy[i];
  }
  const float mh = static_cast<float>(sum_h / static_cast<double>(d)),
              mhx = static_cast<float>(sum_hx / static_cast<double>(d));
  const VF vmh = Splat(mh), vmhx = Splat(mhx);
  for (int64_t i = 0; i < whole; i += kLanes) {
    const VF xh = (Load(x + i) - vm) * vr;
    Store(dx + i, vr * (Load(dy + i) * Load(g + i) - vmh - xh * vmhx));
  }
  for (int64_t i = whole; i < d; ++i) {
    const float xh = (x[i] - mean) * rstd;
    dx[i] = rstd * (dy[i] * g[i] - mh - xh * mhx);
  }
}

// Each entry point compiled per instruction set; Isa() picks once.
enum class IsaLevel { kBaseline, kAvx2, kAvx512 };

#if defined(__x86_64__) && defined(__GNUC__)
#define VMATH_VARIANTS(RET, NAME, PARAMS, ARGS, BODY)                                     \
  __attribute__((target("avx512f"))) inline RET NAME##Avx512 PARAMS { return BODY ARGS; } \
  __attribute__((target("avx2,fma"))) inline RET NAME##Avx2 PARAMS { return BODY ARGS; }  \
  inline RET NAME##Baseline PARAMS { return BODY ARGS; }                                   \
  inline RET NAME PARAMS {                                                                  \
    switch (Isa()) {                                                                        \
      case IsaLevel::kAvx512:                                                               \
        return NAME##Avx512 ARGS;                                                           \
      case IsaLevel::kAvx2:                                                                 \
        return NAME##Avx2 ARGS;                                                             \
      default:                                                                              \
        return NAME##Baseline ARGS;                                                         \
    }                                                                                       \
  }

inline IsaLevel DetectIsa() {
  const char* force = std::getenv("MUSE_VECTOR_ISA");  // "baseline" | "avx2": tests and A/B runs
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (force && std::strcmp(force, "baseline") == 0) return IsaLevel::kBaseline;
  if (force && std::strcmp(force, "avx2") == 0) return avx2 ? IsaLevel::kAvx2 : IsaLevel::kBaseline;
  return avx512 ? IsaLevel::kAvx512 : avx2 ? IsaLevel::kAvx2 : IsaLevel::kBaseline;
}
#else
#define VMATH_VARIANTS(RET, NAME, PARAMS, ARGS, BODY) \
  inline RET NAME PARAMS { return BODY ARGS; }
inline IsaLevel DetectIsa() { return IsaLevel::kBaseline; }
#endif

inline IsaLevel Isa() {
  static const IsaLevel level = DetectIsa();
  return level;
}

inline const char* IsaName() {
  switch (Isa()) {
    case IsaLevel::kAvx512:
      return "avx512f";
    case IsaLevel::kAvx2:
      return "avx2";
    default:
      return "baseline";
  }
}

VMATH_VARIANTS(double, SoftmaxRowLse, (const float* x, float* y, int64_t d), (x, y, d), SoftmaxRowBody)

// Softmax of one row (SoftmaxRowLse without its log-sum-exp).
inline void SoftmaxRow(const float* x, float* y, int64_t d) { SoftmaxRowLse(x, y, d); }
VMATH_VARIANTS(void, ExpSpan, (const float* x, float* y, int64_t n), (x, y, n), ExpBody)
VMATH_VARIANTS(void, GeluSpan, (const float* x, float* y, int64_t n), (x, y, n), GeluBody)
VMATH_VARIANTS(void, GeluGradSpan, (const float* dy, const float* x, float* dx, int64_t n), (dy, x, dx, n), GeluGradBody)
VMATH_VARIANTS(void, LayerNormRow,
               (const float* x, const float* g, const float* b, float* y, int64_t d, double eps, float* mean,
                float* rstd),
               (x, g, b, y, d, eps, mean, rstd), LayerNormRowBody)
VMATH_VARIANTS(void, LayerNormGradRow,
               (const float* dy, const float* x, const float* g, float mean, float rstd, float* dx, float* pg,
                float* pb, int64_t d),
               (dy, x, g, mean, rstd, dx, pg, pb, d), LayerNormGradRowBody)
VMATH_VARIANTS(void, SiluSpan, (const float* x, float* y, int64_t n), (x, y, n), SiluBody)
VMATH_VARIANTS(void, SiluGradSpan, (const float* dy, const float* x, float* dx, int64_t n), (dy, x, dx, n), SiluGradBody)

#undef VMATH_VARIANTS

}  // namespace vmath

#pragma GCC diagnostic pop
