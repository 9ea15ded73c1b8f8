// Small products in bf16 on AVX-512 BF16 (vdpbf16ps), fp32 accumulation and output:
// c = alpha · a · b, for the attention kernel's per-(batch, head) products, whose inner dimension
// (dh = 32 for the scores) is too short for a library call per item to pay and whose operands are
// strided views of fp32 tensors (native/muse_native.cc, attentionStrided*).
//
// Both operands are rounded to bf16 (round to nearest even, as vcvtne*ps2bf16 does) while they are
// packed; products of bf16 values are exact in fp32 and summed in fp32, so the result differs from an
// fp32 product only by the rounding of the inputs (relative 2⁻⁹ each). vdpbf16ps multiplies pairs of
// bf16 along the inner dimension k, so both packed operands keep the pairs (x(2κ), x(2κ+1)) together in
// one 32-bit word:
//   a, row-major:  word (i, κ) at ap[i·kh + κ]       (when a's rows are contiguous in k),
//   a, pair-major: word (i, κ) at ap[κ·mp + i]       (when a's columns are: a transposed operand),
//   b, pair-major: word (κ, j) at bp[κ·np + j]       (16 columns per vector load),
// with kh = ⌈k/2⌉ (an odd k is padded with a zero) and m, n padded to multiples of 16 with zeros.
// The micro-kernel holds an up-to-8 × 32 block of c in 16 registers and broadcasts one word of a
// per row and step. Compiled for AVX-512 BF16 by target attributes and called only where the CPU has
// it (Available()), so the same build runs everywhere.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace bf16_gemm {

// Element (r, c) of an fp32 operand at data[r·rs + c·cs].
struct Operand {
  const float* data;
  int64_t rs, cs;
  float at(int64_t r, int64_t c) const { return data[r * rs + c * cs]; }
};

inline bool Available() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
  return has;
}

// bf16 of x, round to nearest even (the packers' scalar tails; NaN is not expected here).
inline uint32_t Bf16Bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

inline uint32_t PairWord(float lo, float hi) { return Bf16Bits(lo) | (Bf16Bits(hi) << 16); }

inline int64_t RoundUp16(int64_t x) { return (x + 15) / 16 * 16; }

#define BF16_TARGET __attribute__((target("avx512f,avx512bf16")))

// out[κ·ld + x] = (X(x, 2κ), X(x, 2κ+1)) for x < n, zero for n ≤ x < ld; X(x, k) = data[x·xs + k·ks].
BF16_TARGET inline void PackPairMajor(const float* data, int64_t xs, int64_t ks, int64_t n, int64_t k, uint32_t* out,
                                      int64_t ld) {
  const int64_t kh = (k + 1) / 2;
  for (int64_t p = 0; p < kh; ++p) {
    const float* lo = data + 2 * p * ks;
    const float* hi = 2 * p + 1 < k ? lo + ks : nullptr;
    uint32_t* row = out + p * ld;
    int64_t x = 0;
    if (xs == 1) {
      for (; x + 16 <= n; x += 16) {
        const __m512i l = _mm512_cvtepu16_epi32(reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_loadu_ps(lo + x))));
        __m512i word = l;
        if (hi) {
          const __m512i h =
              _mm512_cvtepu16_epi32(reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_loadu_ps(hi + x))));
          word = _mm512_or_si512(l, _mm512_slli_epi32(h, 16));
        }
        _mm512_storeu_si512(row + x, word);
      }
    }
    for (; x < n; ++x) row[x] = PairWord(lo[x * xs], hi ? hi[x * xs] : 0.0f);
    std::fill(row + n, row + ld, 0u);
  }
}

// out[x·kh + κ] = (X(x, 2κ), X(x, 2κ+1)); X(x, k) = data[x·xs + k·ks].
BF16_TARGET inline void PackRowMajor(const float* data, int64_t xs, int64_t ks, int64_t n, int64_t k, uint32_t* out) {
  const int64_t kh = (k + 1) / 2;
  for (int64_t x = 0; x < n; ++x) {
    const float* src = data + x * xs;
    uint32_t* row = out + x * kh;
    int64_t p = 0;
    if (ks == 1) {
      // cvtne2ps_pbh(hi, lo): bf16 of lo's 16 floats in the low half, hi's in the high half, so the
      // 32 consecutive values land as 16 words of consecutive pairs.
      for (; 2 * p + 32 <= k; p += 16) {
        const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + 2 * p + 16), _mm512_loadu_ps(src + 2 * p));
        _mm512_storeu_si512(row + p, reinterpret_cast<__m512i>(v));
      }
    }
    for (; p < kh; ++p) row[p] = PairWord(src[2 * p * ks], 2 * p + 1 < k ? src[(2 * p + 1) * ks] : 0.0f);
  }
}

// c[r·ldc + j] = alpha · Σκ a(r, κ)·b(κ, j) for r < MR and j < cols (≤ 16·NV); a's word (r, κ) at
// a[r·a_row + κ·a_pair]; b's words for κ at b + κ·ldb (16·NV of them, zero-padded past cols).
template <int MR, int NV>
BF16_TARGET void MicroKernel(const uint32_t* a, int64_t a_row, int64_t a_pair, const uint32_t* b, int64_t ldb,
                             int64_t kh, float alpha, float* c, int64_t ldc, int64_t cols) {
  __m512 acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kh; ++p) {
    __m512bh bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(b + p * ldb + 16 * v));
    for (int r = 0; r < MR; ++r) {
      const __m512bh av =
          reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(a[r * a_row + p * a_pair])));
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
    }
  }
  const __m512 scale = _mm512_set1_ps(alpha);
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) {
      const int64_t left = cols - 16 * v;
      float* dst = c + r * ldc + 16 * v;
      const __m512 out = _mm512_mul_ps(acc[r][v], scale);
      if (left >= 16)
        _mm512_storeu_ps(dst, out);
      else if (left > 0)
        _mm512_mask_storeu_ps(dst, static_cast<__mmask16>((1u << left) - 1u), out);
    }
}

template <int NV>
BF16_TARGET void RowBlock(int64_t rows, const uint32_t* a, int64_t a_row, int64_t a_pair, const uint32_t* b,
                          int64_t ldb, int64_t kh, float alpha, float* c, int64_t ldc, int64_t cols) {
  switch (rows) {
    case 8: return MicroKernel<8, NV>(a, a_row, a_pair, b, ldb, kh, alpha, c, ldc, cols);
    case 7: return MicroKernel<7, NV>(a, a_row, a_pair, b, ldb, kh, alpha, c, ldc, cols);
    case 6: return MicroKernel<6, NV>(a, a_row, a_pair, b, ldb, kh, alpha, c, ldc, cols);
    case 5: return MicroKernel<5, NV>(a, a_row, a_pair, b, ldb, kh, alpha, c, ldc, cols);
    case 4: return MicroKernel<4, NV>(a, a_row, a_pair, b, ldb, kh, alpha, c, ldc, cols);
    case 3: return MicroKernel<3, NV>(a, a_row, a_pair, b, ldb, kh, alpha, c, ldc, cols);
    case 2: return MicroKernel<2, NV>(a, a_row, a_pair, b, ldb, kh, alpha, c, ldc, cols);
    default: return MicroKernel<1, NV>(a, a_row, a_pair, b, ldb, kh, alpha, c, ldc, cols);
  }
}

// c (m × n, rows ldc apart, columns contiguous) = alpha · a (m × k) · b (k × n). Scratch is per
// calling thread. Only where Available().
BF16_TARGET inline void Gemm(int64_t m, int64_t n, int64_t k, float alpha, const Operand& a, const Operand& b,
                             float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  thread_local std::vector<uint32_t> ap, bp;
  const int64_t kh = (k + 1) / 2, np = RoundUp16(n);
  int64_t a_row, a_pair;
  if (a.cs != 1 && a.rs == 1) {  // a's columns are contiguous: pack pair-major
    const int64_t mp = RoundUp16(m);
    ap.resize(static_cast<size_t>(std::max<int64_t>(kh * mp, 1)));
    PackPairMajor(a.data, a.rs, a.cs, m, k, ap.data(), mp);
    a_row = 1;
    a_pair = mp;
  } else {
    ap.resize(static_cast<size_t>(std::max<int64_t>(m * kh, 1)));
    PackRowMajor(a.data, a.rs, a.cs, m, k, ap.data());
    a_row = kh;
    a_pair = 1;
  }
  bp.resize(static_cast<size_t>(std::max<int64_t>(kh * np, 1)));
  PackPairMajor(b.data, b.cs, b.rs, n, k, bp.data(), np);
  constexpr int64_t kRows = 8, kCols = 32;
  for (int64_t j = 0; j < n; j += kCols) {
    const int64_t cols = std::min(kCols, n - j);
    for (int64_t i = 0; i < m; i += kRows) {
      const int64_t rows = std::min(kRows, m - i);
      const uint32_t* ai = ap.data() + i * a_row;
      if (cols > 16)
        RowBlock<2>(rows, ai, a_row, a_pair, bp.data() + j, np, kh, alpha, c + i * ldc + j, ldc, cols);
      else
        RowBlock<1>(rows, ai, a_row, a_pair, bp.data() + j, np, kh, alpha, c + i * ldc + j, ldc, cols);
    }
  }
}

#undef BF16_TARGET

}  // namespace bf16_gemm
