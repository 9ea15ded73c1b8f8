// muse_native: optional native kernels for muse-ts, written against the plain
// C Node-API (no node-addon-api). The tfjs-wasm kernels call these on
// Float32Array views of the wasm heap (SharedArrayBuffer when wasm runs
// threaded, a plain ArrayBuffer otherwise).
//
// Layout of this file:
//   1. argument helpers (type checks, integer/array parsing, bounds checks)
//   2. threading helpers (OpenBLAS thread count, batch-parallel runner)
//   3. kernels (one napi_callback per export)
//   4. module registration (a single table; add new kernels there)
//
// Every kernel validates that each element it will read or write lies inside
// the typed arrays it was given and throws a JS error otherwise; nothing is
// ever accessed out of bounds.

#define NAPI_VERSION 8
#include <node_api.h>

#include <cblas.h>

#if defined(MUSE_HAVE_DNNL)
#include <oneapi/dnnl/dnnl.hpp>
extern "C" void omp_set_num_threads(int num_threads);
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "bf16_gemm.h"
#include "vector_math.h"

// OpenBLAS extensions. OpenBLAS's cblas.h declares these already; repeating
// identical declarations keeps the file building against a cblas.h that does
// not (the library we link is always OpenBLAS).
extern "C" {
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char* openblas_get_config(void);
}

namespace {

// ---------------------------------------------------------------------------
// 1. Argument helpers
// ---------------------------------------------------------------------------

// Largest integer a JS number represents exactly.
constexpr double kMaxSafeInteger = 9007199254740991.0;

// Throws (once) and makes the caller return nullptr. Every helper below
// returns false after throwing, so a kernel can simply `if (!ok) return
// nullptr;`.
bool ThrowType(napi_env env, const std::string& msg) {
  napi_throw_type_error(env, "ERR_MUSE_NATIVE_ARG", msg.c_str());
  return false;
}

bool ThrowRange(napi_env env, const std::string& msg) {
  napi_throw_range_error(env, "ERR_MUSE_NATIVE_RANGE", msg.c_str());
  return false;
}

bool ThrowError(napi_env env, const std::string& msg) {
  napi_throw_error(env, "ERR_MUSE_NATIVE", msg.c_str());
  return false;
}

// Checks that a N-API call succeeded; throws a generic error if not (and no
// exception is already pending).
bool NapiOk(napi_env env, napi_status status, const char* what) {
  if (status == napi_ok) return true;
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) ThrowError(env, std::string("muse_native: N-API call failed: ") + what);
  return false;
}

struct Args {
  napi_value values[16];
  size_t count = 0;
};

bool GetArgs(napi_env env, napi_callback_info info, const char* fn, size_t expected, Args* out) {
  size_t argc = 16;
  if (!NapiOk(env, napi_get_cb_info(env, info, &argc, out->values, nullptr, nullptr), "napi_get_cb_info"))
    return false;
  out->count = argc;
  if (argc < expected) {
    return ThrowType(env, std::string(fn) + ": expected " + std::to_string(expected) + " arguments, got " +
                              std::to_string(argc));
  }
  return true;
}

bool GetBool(napi_env env, napi_value v, const char* fn, const char* name, bool* out) {
  napi_valuetype t;
  if (!NapiOk(env, napi_typeof(env, v, &t), "napi_typeof")) return false;
  if (t != napi_boolean) return ThrowType(env, std::string(fn) + ": " + name + " must be a boolean");
  return NapiOk(env, napi_get_value_bool(env, v, out), "napi_get_value_bool");
}

bool GetNumber(napi_env env, napi_value v, const char* fn, const char* name, double* out) {
  napi_valuetype t;
  if (!NapiOk(env, napi_typeof(env, v, &t), "napi_typeof")) return false;
  if (t != napi_number) return ThrowType(env, std::string(fn) + ": " + name + " must be a number");
  return NapiOk(env, napi_get_value_double(env, v, out), "napi_get_value_double");
}

// A non-negative integer no larger than `max`.
bool GetIndex(napi_env env, napi_value v, const char* fn, const char* name, double max, int64_t* out) {
  double d;
  if (!GetNumber(env, v, fn, name, &d)) return false;
  if (!std::isfinite(d) || d != std::floor(d) || d < 0 || d > max) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", d);
    return ThrowRange(env, std::string(fn) + ": " + name + " must be an integer in [0, " +
                               std::to_string(static_cast<int64_t>(max)) + "], got " + buf);
  }
  *out = static_cast<int64_t>(d);
  return true;
}

template <typename T>
struct TypedView {
  T* data = nullptr;
  uint64_t length = 0;  // in elements
};
using F32View = TypedView<float>;
using U16View = TypedView<uint16_t>;

// A typed array of `want` (over an ArrayBuffer or a SharedArrayBuffer). The data
// pointer already includes the view's byteOffset.
template <typename T>
bool GetTyped(napi_env env, napi_value v, const char* fn, const char* name, napi_typedarray_type want,
              const char* type_name, TypedView<T>* out) {
  bool is_ta = false;
  if (!NapiOk(env, napi_is_typedarray(env, v, &is_ta), "napi_is_typedarray")) return false;
  if (!is_ta) return ThrowType(env, std::string(fn) + ": " + name + " must be a " + type_name);
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (!NapiOk(env, napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr),
              "napi_get_typedarray_info"))
    return false;
  if (type != want) return ThrowType(env, std::string(fn) + ": " + name + " must be a " + type_name);
  // A detached buffer reports length 0 / data NULL; the bounds checks then
  // reject any non-empty access.
  out->data = static_cast<T*>(data);
  out->length = data == nullptr ? 0 : static_cast<uint64_t>(length);
  return true;
}

bool GetF32(napi_env env, napi_value v, const char* fn, const char* name, F32View* out) {
  return GetTyped(env, v, fn, name, napi_float32_array, "Float32Array", out);
}

bool GetU16(napi_env env, napi_value v, const char* fn, const char* name, U16View* out) {
  return GetTyped(env, v, fn, name, napi_uint16_array, "Uint16Array", out);
}

// Number of elements spanned by `batch` blocks of `block` elements whose
// starts are `stride` apart: (batch-1)*stride + block, 0 when empty.
// Returns false on uint64 overflow.
bool Span(uint64_t batch, uint64_t stride, uint64_t block, uint64_t* out) {
  if (batch == 0 || block == 0) {
    *out = 0;
    return true;
  }
  uint64_t head;
  if (__builtin_mul_overflow(batch - 1, stride, &head)) return false;
  return !__builtin_add_overflow(head, block, out);
}

bool CheckSpan(napi_env env, const char* fn, const char* name, const F32View& view, uint64_t batch,
               uint64_t stride, uint64_t block, const char* detail, uint64_t* span) {
  const bool fits = Span(batch, stride, block, span);
  if (fits && *span <= view.length) return true;
  const std::string need = fits ? std::to_string(*span) : std::string("more than 2^64");
  return ThrowRange(env, std::string(fn) + ": " + name + " is too small: needs " + need + " elements (" + detail +
                             "), has " + std::to_string(view.length));
}

// Whether n elements at p and m elements at q share any byte (the element types may differ).
template <typename P, typename Q>
bool Overlaps(const P* p, uint64_t n, const Q* q, uint64_t m) {
  if (n == 0 || m == 0) return false;
  auto a0 = reinterpret_cast<uintptr_t>(p), b0 = reinterpret_cast<uintptr_t>(q);
  return a0 < b0 + m * sizeof(Q) && b0 < a0 + n * sizeof(P);
}

napi_value MakeInt(napi_env env, int64_t v) {
  napi_value out = nullptr;
  NapiOk(env, napi_create_int64(env, v, &out), "napi_create_int64");
  return out;
}

napi_value Undefined(napi_env env) {
  napi_value out = nullptr;
  napi_get_undefined(env, &out);
  return out;
}

// ---------------------------------------------------------------------------
// 2. Threading helpers
// ---------------------------------------------------------------------------

// A process-wide pool of worker threads, created on first use and kept for
// the life of the process. Reusing threads matters: creating one costs ~20 us,
// and OpenBLAS gives every thread that calls it its own work buffer (allocated
// on the first call, freed at thread exit). Idle workers spin for a short
// while (kSpin) before blocking, so back-to-back calls (one per layer/head)
// do not pay a futex wake-up each; after that they sleep on a condition
// variable and cost nothing. The pool is deliberately never destroyed:
// workers stay blocked on it until the process exits.
class WorkerPool {
 public:
  static WorkerPool& Get() {
    static WorkerPool* pool = new WorkerPool();  // leaked on purpose, see above
    return *pool;
  }

  // Runs job() on the calling thread and on up to `extra` pool threads, and
  // returns when all of them have returned. Returns false, having run
  // nothing, if the pool is busy with another caller (another JS thread);
  // that caller then does the work alone.
  template <typename Job>
  bool Run(int extra, const Job& job) {
    std::unique_lock<std::mutex> busy(run_mutex_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    extra = Grow(extra);
    if (extra > 0) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        job_ = [&job]() { job(); };
        wanted_ = extra;
        pending_.store(extra, std::memory_order_relaxed);
        generation_.fetch_add(1, std::memory_order_release);
      }
      work_cv_.notify_all();
    }
    job();
    if (extra > 0) {
      // The workers finish at about the same time as this thread: spin first.
      const auto deadline = std::chrono::steady_clock::now() + kSpin;
      while (pending_.load(std::memory_order_acquire) != 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::yield();
      std::unique_lock<std::mutex> lock(mutex_);
      done_cv_.wait(lock, [this] { return pending_.load(std::memory_order_acquire) == 0; });
      job_ = nullptr;
    }
    return true;
  }

 private:
  static constexpr std::chrono::microseconds kSpin{200};

  WorkerPool() = default;

  // Makes sure at least n pool threads exist; returns how many are usable.
  // Called with run_mutex_ held.
  int Grow(int n) {
    while (count_ < n) {
      try {
        std::thread(&WorkerPool::Loop, this, count_).detach();
      } catch (const std::system_error&) {
        break;
      }
      ++count_;
    }
    return std::min(n, count_);
  }

  void Loop(int index) {
    uint64_t seen = 0;
    for (;;) {
      const auto deadline = std::chrono::steady_clock::now() + kSpin;
      while (generation_.load(std::memory_order_acquire) == seen && std::chrono::steady_clock::now() < deadline)
        std::this_thread::yield();
      std::unique_lock<std::mutex> lock(mutex_);
      work_cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      seen = generation_.load(std::memory_order_relaxed);
      if (index >= wanted_) continue;
      std::function<void()> job = job_;
      lock.unlock();
      job();
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        lock.lock();  // pairs with the waiter's predicate check
        done_cv_.notify_one();
      }
    }
  }

  std::mutex run_mutex_;  // one Run at a time
  std::mutex mutex_;      // guards job_ and wanted_; generation_ is bumped under it
  std::condition_variable work_cv_, done_cv_;
  std::function<void()> job_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  int wanted_ = 0;
  int count_ = 0;  // threads created (only touched under run_mutex_)
};

// Runs body(i) for i in [0, count) on `workers` threads (the calling thread
// included). Indices are handed out dynamically in chunks of `chunk`.
template <typename Body>
void ParallelFor(int64_t count, int workers, int64_t chunk, const Body& body) {
  std::atomic<int64_t> next{0};
  auto run = [&]() {
    for (;;) {
      const int64_t begin = next.fetch_add(chunk, std::memory_order_relaxed);
      if (begin >= count) return;
      const int64_t end = std::min(count, begin + chunk);
      for (int64_t i = begin; i < end; ++i) body(i);
    }
  };
  if (workers <= 1 || !WorkerPool::Get().Run(workers - 1, run)) run();
}

// Temporarily forces OpenBLAS to run single-threaded, restoring the previous
// count on scope exit (openblas_set_num_threads only stores a number here; it
// costs nanoseconds). It is process-global: callers on different JS threads
// (worker_threads) overlapping in time can see each other's setting for the
// duration of a call, which affects speed, never results.
class BlasSingleThreadScope {
 public:
  explicit BlasSingleThreadScope(int previous) : previous_(previous) { openblas_set_num_threads(1); }
  ~BlasSingleThreadScope() { openblas_set_num_threads(previous_); }
  BlasSingleThreadScope(const BlasSingleThreadScope&) = delete;
  BlasSingleThreadScope& operator=(const BlasSingleThreadScope&) = delete;

 private:
  int previous_;
};

// Threading policy for sgemmBatched (measured on 2 cores, OpenBLAS 0.3.21):
//
// - For a batch of small products, running whole products on separate
//   threads, each with single-threaded BLAS, beats letting OpenBLAS split
//   each small product across its threads: 64 x (256x64 @ 64x256) runs at
//   ~210 GFLOP/s this way against ~145 with OpenBLAS threading per product
//   (~107 on one thread).
// - Since 2026-12-02 every call is one block of kRowBlock rows (RunOpenblas: a
//   row's result must not depend on the call's row count), so large products
//   are split into blocks on the pool too instead of OpenBLAS's own threading.
// - Blocks under kBatchParallelMinItemFlops stay on one thread: OpenBLAS's
//   per-call overhead dominates there and concurrent tiny calls contend
//   (1024 x 16^3 ran 2x slower on two threads than on one).
// - Each extra thread must get at least kBatchParallelMinFlopsPerThread of
//   work: waking a sleeping pool thread costs ~20 us, so below ~2 MFLOP per
//   thread a cold hand-off loses (with the pool still spinning from the
//   previous call it wins down to ~0.25 MFLOP).
constexpr double kBatchParallelMinItemFlops = 2.0 * 32 * 32 * 32;          // ~66 KFLOP
constexpr double kBatchParallelMinFlopsPerThread = 2.0 * 128 * 128 * 64;  // ~2.1 MFLOP

// ---------------------------------------------------------------------------
// 3. Kernels
// ---------------------------------------------------------------------------

// sgemmBatched(transA, transB, batch, M, N, K, a, aBatchStride, b, bBatchStride,
//              c, alpha, beta)
//
// For each i < batch: C_i = alpha * op(A_i) * op(B_i) + beta * C_i, with
//   op(A_i): M x K; A_i starts at a[i * aBatchStride], stored M x K row-major
//            (K x M when transA); stride 0 broadcasts one A to every batch.
//   op(B_i): K x N; B_i starts at b[i * bBatchStride], stored K x N row-major
//            (N x K when transB).
//   C_i:     M x N row-major at c[i * M * N] (contiguous batches).
// As in BLAS, beta == 0 means C is not read (NaNs in C are overwritten).
// The parsed and bounds-checked arguments of sgemmBatched / matmulBatched.
struct Gemm {
  bool trans_a, trans_b;
  int64_t batch, m, n, k, a_stride, b_stride;
  float alpha, beta;
  const float* a;
  const float* b;
  float* c;
  uint64_t a_span, b_span, c_span;  // elements read of a and b, written of c
};

// Reads the 13 gemm arguments starting at v[0]; false (having thrown) when one is wrong.
// `*empty` is set when nothing is to be read or written.
bool ParseGemm(napi_env env, const char* fn, napi_value* v, Gemm* g, bool* empty) {
  constexpr double kMaxDim = 2147483647.0;  // cblas takes 32-bit ints
  bool trans_a, trans_b;
  int64_t batch, m, n, k, a_stride, b_stride;
  double alpha, beta;
  F32View a, b, c;
  if (!GetBool(env, v[0], fn, "transA", &trans_a) || !GetBool(env, v[1], fn, "transB", &trans_b) ||
      !GetIndex(env, v[2], fn, "batch", kMaxDim, &batch) || !GetIndex(env, v[3], fn, "M", kMaxDim, &m) ||
      !GetIndex(env, v[4], fn, "N", kMaxDim, &n) || !GetIndex(env, v[5], fn, "K", kMaxDim, &k) ||
      !GetF32(env, v[6], fn, "a", &a) || !GetIndex(env, v[7], fn, "aBatchStride", kMaxSafeInteger, &a_stride) ||
      !GetF32(env, v[8], fn, "b", &b) || !GetIndex(env, v[9], fn, "bBatchStride", kMaxSafeInteger, &b_stride) ||
      !GetF32(env, v[10], fn, "c", &c) || !GetNumber(env, v[11], fn, "alpha", &alpha) ||
      !GetNumber(env, v[12], fn, "beta", &beta))
    return false;

  const uint64_t um = static_cast<uint64_t>(m), un = static_cast<uint64_t>(n), uk = static_cast<uint64_t>(k);
  const uint64_t ub = static_cast<uint64_t>(batch);
  // Each factor is < 2^31, so the products fit in uint64.
  const uint64_t a_block = um * uk, b_block = uk * un, c_block = um * un;

  *empty = batch == 0 || c_block == 0;
  if (*empty) return true;  // nothing is read or written

  // When K == 0 nothing of A/B is read (C = beta * C).
  uint64_t a_span = 0, b_span = 0, c_span = 0;
  const std::string a_detail = "batch " + std::to_string(batch) + ", aBatchStride " + std::to_string(a_stride) +
                               ", M*K " + std::to_string(a_block);
  const std::string b_detail = "batch " + std::to_string(batch) + ", bBatchStride " + std::to_string(b_stride) +
                               ", K*N " + std::to_string(b_block);
  const std::string c_detail = "batch " + std::to_string(batch) + " * M*N " + std::to_string(c_block);
  if (!CheckSpan(env, fn, "a", a, ub, static_cast<uint64_t>(a_stride), a_block, a_detail.c_str(), &a_span) ||
      !CheckSpan(env, fn, "b", b, ub, static_cast<uint64_t>(b_stride), b_block, b_detail.c_str(), &b_span) ||
      !CheckSpan(env, fn, "c", c, ub, c_block, c_block, c_detail.c_str(), &c_span))
    return false;
  if (Overlaps(c.data, c_span, a.data, a_span) || Overlaps(c.data, c_span, b.data, b_span))
    return ThrowRange(env, std::string(fn) + ": the elements of c it writes overlap those of a or b it reads");
  *g = {trans_a, trans_b, batch, m, n, k, a_stride, b_stride, static_cast<float>(alpha), static_cast<float>(beta),
        a.data, b.data, c.data, a_span, b_span, c_span};
  return true;
}

// Rows per cblas_sgemm call of RunOpenblas. OpenBLAS's result for a row depends on how many rows the
// call has (measured 2026-12-02 on a Zen 4 VM with Debian's OpenBLAS 0.3.21 running its Haswell
// kernels: the first M rows of an (M, 2M)-row product differ from the M-row product's in hundreds of
// elements), so one image of a batch of two came out other than the same image alone
// (test/amused-edit.test.ts). Every call therefore computes exactly kRowBlock rows, single-threaded;
// an item's last block is padded with zero rows in scratch. A row's result then depends on its own
// values only, whatever the batch.
constexpr int64_t kRowBlock = 64;

// The product through OpenBLAS: blocks of kRowBlock rows of every item, on the pool's threads when
// that pays (see the policy above), each block one single-threaded cblas_sgemm.
void RunOpenblas(const Gemm& g) {
  const int64_t m = g.m, n = g.n, k = g.k, batch = g.batch;
  const CBLAS_TRANSPOSE ta = g.trans_a ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb = g.trans_b ? CblasTrans : CblasNoTrans;
  // Leading dimensions follow from the storage shapes; BLAS requires >= 1.
  const blasint lda = static_cast<blasint>(std::max<int64_t>(1, g.trans_a ? m : k));
  const blasint ldb = static_cast<blasint>(std::max<int64_t>(1, g.trans_b ? k : n));
  const blasint ldc = static_cast<blasint>(std::max<int64_t>(1, n));
  const uint64_t c_block = static_cast<uint64_t>(m) * static_cast<uint64_t>(n);
  const int64_t blocks = (m + kRowBlock - 1) / kRowBlock;
  const auto rb = static_cast<blasint>(kRowBlock), bn = static_cast<blasint>(n), bk = static_cast<blasint>(k);

  auto one = [&](int64_t t) {
    const int64_t i = t / blocks, r0 = (t % blocks) * kRowBlock, rows = std::min(kRowBlock, m - r0);
    const float* a = g.a + static_cast<uint64_t>(i) * static_cast<uint64_t>(g.a_stride);
    const float* b = g.b + static_cast<uint64_t>(i) * static_cast<uint64_t>(g.b_stride);
    float* c = g.c + static_cast<uint64_t>(i) * c_block + static_cast<uint64_t>(r0) * static_cast<uint64_t>(n);
    if (rows == kRowBlock) {
      const float* ab = g.trans_a ? a + r0 : a + static_cast<uint64_t>(r0) * static_cast<uint64_t>(lda);
      cblas_sgemm(CblasRowMajor, ta, tb, rb, bn, bk, g.alpha, ab, lda, b, ldb, g.beta, c, ldc);
      return;
    }
    // The last, partial block: its rows (of a and, with beta, of c) in zero-padded scratch, in a's own
    // layout (k × kRowBlock when a is transposed), so the call is the one a full block makes.
    thread_local std::vector<float> sa, sc;
    sa.assign(static_cast<size_t>(kRowBlock * k), 0.0f);
    sc.assign(static_cast<size_t>(kRowBlock * n), 0.0f);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < k; ++j) {
        if (g.trans_a)
          sa[static_cast<size_t>(j * kRowBlock + r)] = a[static_cast<uint64_t>(j) * static_cast<uint64_t>(lda) + r0 + r];
        else
          sa[static_cast<size_t>(r * k + j)] = a[static_cast<uint64_t>(r0 + r) * static_cast<uint64_t>(lda) + j];
      }
    if (g.beta != 0.0f) std::copy(c, c + rows * n, sc.begin());
    const blasint slda = g.trans_a ? rb : static_cast<blasint>(std::max<int64_t>(1, k));
    cblas_sgemm(CblasRowMajor, ta, tb, rb, bn, bk, g.alpha, sa.data(), slda, b, ldb, g.beta, sc.data(), ldc);
    std::copy(sc.begin(), sc.begin() + rows * n, c);
  };

  const int64_t tasks = batch * blocks;
  const double task_flops =
      2.0 * static_cast<double>(std::min(m, kRowBlock)) * static_cast<double>(n) * static_cast<double>(k);
  const int blas_threads = openblas_get_num_threads();
  BlasSingleThreadScope single(blas_threads);
  int workers = 1;
  if (tasks >= 2 && blas_threads > 1 && task_flops >= kBatchParallelMinItemFlops) {
    const double by_work = std::floor(task_flops * static_cast<double>(tasks) / kBatchParallelMinFlopsPerThread);
    workers = static_cast<int>(std::min({static_cast<double>(blas_threads), static_cast<double>(tasks), by_work}));
  }
  if (workers > 1) {
    const int64_t chunk = std::max<int64_t>(1, tasks / (static_cast<int64_t>(workers) * 8));
    ParallelFor(tasks, workers, chunk, one);
  } else {
    for (int64_t t = 0; t < tasks; ++t) one(t);
  }
}

napi_value SgemmBatched(napi_env env, napi_callback_info info) {
  static const char* fn = "sgemmBatched";
  Args args;
  if (!GetArgs(env, info, fn, 13, &args)) return nullptr;
  Gemm g;
  bool empty = false;
  if (!ParseGemm(env, fn, args.values, &g, &empty)) return nullptr;
  if (!empty) RunOpenblas(g);
  return Undefined(env);
}

// Elementwise and row kernels for the fused ops (src/tensor/ops/*), the hot
// non-matmul work of a training step. Each runs on the batch-parallel pool.

// Reads `count` Float32Array arguments starting at args.values[first].
bool GetF32s(napi_env env, const Args& args, const char* fn, size_t first, std::initializer_list<const char*> names,
             F32View* out) {
  size_t i = 0;
  for (const char* name : names) {
    if (!GetF32(env, args.values[first + i], fn, name, &out[i])) return false;
    ++i;
  }
  return true;
}

template <typename T>
bool NeedLength(napi_env env, const char* fn, const char* name, const TypedView<T>& v, uint64_t n) {
  if (v.length >= n) return true;
  return ThrowRange(env, std::string(fn) + ": " + name + " is too small: needs " + std::to_string(n) +
                             " elements, has " + std::to_string(v.length));
}

int PoolWorkers(double work_items, double min_items_per_worker) {
  const int threads = std::max(1, openblas_get_num_threads());
  return static_cast<int>(std::max(1.0, std::min<double>(threads, work_items / min_items_per_worker)));
}

// Elementwise kernels in chunks on the pool, each chunk through one of vector_math.h's span
// functions: y = f(x) (MapSpans) and dx = dy · f'(x) (MapGradSpans).
template <typename Span>
napi_value MapSpans(napi_env env, napi_callback_info info, const char* fn, Span span) {
  Args args;
  F32View v[2];
  int64_t n;
  if (!GetArgs(env, info, fn, 3, &args) || !GetF32s(env, args, fn, 0, {"x", "y"}, v) ||
      !GetIndex(env, args.values[2], fn, "n", kMaxSafeInteger, &n) || !NeedLength(env, fn, "x", v[0], n) ||
      !NeedLength(env, fn, "y", v[1], n))
    return nullptr;
  const float* x = v[0].data;
  float* y = v[1].data;
  const int64_t chunk = 1 << 14;
  ParallelFor((n + chunk - 1) / chunk, PoolWorkers(n, 1 << 16), 1, [&](int64_t c) {
    const int64_t begin = c * chunk;
    span(x + begin, y + begin, std::min<int64_t>(n, begin + chunk) - begin);
  });
  return Undefined(env);
}

template <typename Span>
napi_value MapGradSpans(napi_env env, napi_callback_info info, const char* fn, Span span) {
  Args args;
  F32View v[3];
  int64_t n;
  if (!GetArgs(env, info, fn, 4, &args) || !GetF32s(env, args, fn, 0, {"dy", "x", "dx"}, v) ||
      !GetIndex(env, args.values[3], fn, "n", kMaxSafeInteger, &n) || !NeedLength(env, fn, "dy", v[0], n) ||
      !NeedLength(env, fn, "x", v[1], n) || !NeedLength(env, fn, "dx", v[2], n))
    return nullptr;
  const float* dy = v[0].data;
  const float* x = v[1].data;
  float* dx = v[2].data;
  const int64_t chunk = 1 << 14;
  ParallelFor((n + chunk - 1) / chunk, PoolWorkers(n, 1 << 16), 1, [&](int64_t c) {
    const int64_t begin = c * chunk;
    span(dy + begin, x + begin, dx + begin, std::min<int64_t>(n, begin + chunk) - begin);
  });
  return Undefined(env);
}

// geluForward(x, y, n): tanh form, 0.5 x (1 + tanh(c (x + a x^3))) (vector_math.h).
napi_value GeluForward(napi_env env, napi_callback_info info) {
  return MapSpans(env, info, "geluForward", vmath::GeluSpan);
}

// geluBackward(dy, x, dx, n): dx = dy * d/dx gelu(x)
napi_value GeluBackward(napi_env env, napi_callback_info info) {
  return MapGradSpans(env, info, "geluBackward", vmath::GeluGradSpan);
}

// expForward(x, y, n): y = e^x (vector_math.h's exponential, the one softmax, GELU and SiLU use).
napi_value ExpForward(napi_env env, napi_callback_info info) {
  return MapSpans(env, info, "expForward", vmath::ExpSpan);
}

// Row-wise softmax over `rows` rows of `d` (attention scores: [B·H·Sq, Sk]); one pass over memory
// each way instead of tfjs's max/sub/exp/sum/div forward and mul/sum/mul/sub backward.
bool GetRows(napi_env env, const Args& args, const char* fn, size_t first, int64_t* rows, int64_t* d) {
  return GetIndex(env, args.values[first], fn, "rows", kMaxSafeInteger, rows) &&
         GetIndex(env, args.values[first + 1], fn, "d", kMaxSafeInteger, d);
}

// softmaxForward(x, y, rows, d): y = exp(x - max) / sum exp(x - max), per row (vector_math.h's
// SoftmaxRow: vectorised exponentials, lane sums added in double).
using vmath::SoftmaxRow;

// Softmax's gradient for one row from its output y: dx = y·(dy − Σ dy·y) (dx may be dy; dot in double).
inline void SoftmaxGradRow(const float* dy, const float* y, float* dx, int64_t d) {
  double dot = 0;
  for (int64_t i = 0; i < d; ++i) dot += static_cast<double>(dy[i]) * y[i];
  const float df = static_cast<float>(dot);
  for (int64_t i = 0; i < d; ++i) dx[i] = y[i] * (dy[i] - df);
}

napi_value SoftmaxForward(napi_env env, napi_callback_info info) {
  static const char* fn = "softmaxForward";
  Args args;
  F32View v[2];
  int64_t rows, d;
  if (!GetArgs(env, info, fn, 4, &args) || !GetF32s(env, args, fn, 0, {"x", "y"}, v) ||
      !GetRows(env, args, fn, 2, &rows, &d))
    return nullptr;
  const uint64_t n = static_cast<uint64_t>(rows) * static_cast<uint64_t>(d);
  if (!NeedLength(env, fn, "x", v[0], n) || !NeedLength(env, fn, "y", v[1], n)) return nullptr;
  const float* x = v[0].data;
  float* y = v[1].data;
  ParallelFor(rows, PoolWorkers(static_cast<double>(n), 1 << 15), 16,
              [&](int64_t r) { SoftmaxRow(x + r * d, y + r * d, d); });
  return Undefined(env);
}

// softmaxBackward(dy, y, dx, rows, d): dx = y (dy - sum(dy y)), per row (sum in double).
napi_value SoftmaxBackward(napi_env env, napi_callback_info info) {
  static const char* fn = "softmaxBackward";
  Args args;
  F32View v[3];
  int64_t rows, d;
  if (!GetArgs(env, info, fn, 5, &args) || !GetF32s(env, args, fn, 0, {"dy", "y", "dx"}, v) ||
      !GetRows(env, args, fn, 3, &rows, &d))
    return nullptr;
  const uint64_t n = static_cast<uint64_t>(rows) * static_cast<uint64_t>(d);
  if (!NeedLength(env, fn, "dy", v[0], n) || !NeedLength(env, fn, "y", v[1], n) || !NeedLength(env, fn, "dx", v[2], n))
    return nullptr;
  const float *dy = v[0].data, *y = v[1].data;
  float* dx = v[2].data;
  ParallelFor(rows, PoolWorkers(static_cast<double>(n), 1 << 15), 16,
              [&](int64_t r) { SoftmaxGradRow(dy + r * d, y + r * d, dx + r * d, d); });
  return Undefined(env);
}

// Throws (returning false) when an output overlaps an input or another output.
bool CheckDisjoint(napi_env env, const char* fn, std::initializer_list<std::pair<const F32View*, uint64_t>> outs,
                   std::initializer_list<std::pair<const F32View*, uint64_t>> ins) {
  for (auto o = outs.begin(); o != outs.end(); ++o) {
    for (const auto& i : ins)
      if (Overlaps(o->first->data, o->second, i.first->data, i.second))
        return ThrowRange(env, std::string(fn) + ": an output overlaps an input");
    for (auto o2 = o + 1; o2 != outs.end(); ++o2)
      if (Overlaps(o->first->data, o->second, o2->first->data, o2->second))
        return ThrowRange(env, std::string(fn) + ": two outputs overlap");
  }
  return true;
}

// Cross-entropy against soft targets, one row per masked position (the transformers' loss with
// label smoothing, src/tensor/ops/cross-entropy.ts): where tfjs ran logSoftmax (max, sub, exp, sum,
// log, sub), a multiply, a sum and their gradients over [rows, d], one pass each way.
// softCrossEntropyForward(x, q, p, loss, rows, d): p = softmax(x) per row and
//   loss[r] = Σ_c q_c·(lse − x_c) = −Σ_c q_c·log p_c, in double from the log-sum-exp, so a p that
//   underflows to 0 still gives a finite loss.
napi_value SoftCrossEntropyForward(napi_env env, napi_callback_info info) {
  static const char* fn = "softCrossEntropyForward";
  Args args;
  F32View v[4];
  int64_t rows, d;
  if (!GetArgs(env, info, fn, 6, &args) || !GetF32s(env, args, fn, 0, {"x", "q", "p", "loss"}, v) ||
      !GetRows(env, args, fn, 4, &rows, &d))
    return nullptr;
  const uint64_t n = static_cast<uint64_t>(rows) * static_cast<uint64_t>(d), r64 = static_cast<uint64_t>(rows);
  if (!NeedLength(env, fn, "x", v[0], n) || !NeedLength(env, fn, "q", v[1], n) || !NeedLength(env, fn, "p", v[2], n) ||
      !NeedLength(env, fn, "loss", v[3], r64) ||
      !CheckDisjoint(env, fn, {{&v[2], n}, {&v[3], r64}}, {{&v[0], n}, {&v[1], n}}))
    return nullptr;
  const float *x = v[0].data, *q = v[1].data;
  float *p = v[2].data, *loss = v[3].data;
  ParallelFor(rows, PoolWorkers(static_cast<double>(n), 1 << 15), 16, [&](int64_t r) {
    const float* xr = x + r * d;
    const float* qr = q + r * d;
    const double lse = vmath::SoftmaxRowLse(xr, p + r * d, d);
    double acc = 0;
    for (int64_t c = 0; c < d; ++c)
      if (qr[c] != 0.0f) acc += static_cast<double>(qr[c]) * (lse - xr[c]);
    loss[r] = static_cast<float>(acc);
  });
  return Undefined(env);
}

// softCrossEntropyBackward(dloss, p, q, dx, rows, d): dx = dloss[r]·(p·Σ_c q_c − q) per row.
napi_value SoftCrossEntropyBackward(napi_env env, napi_callback_info info) {
  static const char* fn = "softCrossEntropyBackward";
  Args args;
  F32View v[4];
  int64_t rows, d;
  if (!GetArgs(env, info, fn, 6, &args) || !GetF32s(env, args, fn, 0, {"dloss", "p", "q", "dx"}, v) ||
      !GetRows(env, args, fn, 4, &rows, &d))
    return nullptr;
  const uint64_t n = static_cast<uint64_t>(rows) * static_cast<uint64_t>(d), r64 = static_cast<uint64_t>(rows);
  if (!NeedLength(env, fn, "dloss", v[0], r64) || !NeedLength(env, fn, "p", v[1], n) ||
      !NeedLength(env, fn, "q", v[2], n) || !NeedLength(env, fn, "dx", v[3], n) ||
      !CheckDisjoint(env, fn, {{&v[3], n}}, {{&v[0], r64}, {&v[1], n}, {&v[2], n}}))
    return nullptr;
  const float *dl = v[0].data, *p = v[1].data, *q = v[2].data;
  float* dx = v[3].data;
  ParallelFor(rows, PoolWorkers(static_cast<double>(n), 1 << 15), 16, [&](int64_t r) {
    const float* pr = p + r * d;
    const float* qr = q + r * d;
    float* dr = dx + r * d;
    double mass = 0;
    for (int64_t c = 0; c < d; ++c) mass += qr[c];
    const float a = dl[r] * static_cast<float>(mass), b = dl[r];
    for (int64_t c = 0; c < d; ++c) dr[c] = a * pr[c] - b * qr[c];
  });
  return Undefined(env);
}

// Scaled dot-product attention per (batch, head) item, forward and backward, in one call each way
// (src/tensor/ops/attention.ts). Items run whole on the pool's threads, each with single-threaded
// OpenBLAS: the [Sq, Sk] scores go through one product, one softmax pass and one product, where tfjs
// ran a scale, a batched product, a bias add, a softmax and a batched product over the whole batch.
//
// Every operand is strided: element (b, h, s, d) of q, k, v, o (and dq, dk, dv, dO, which take
// their operand's layout) sits at offset + b·batchStride + h·headStride + s·rowStride + d. The
// head layout [B, H, S, dh] is (H·S·dh, S·dh, dh, 0); the row layout of a projection [B, S, n·H·dh]
// whose heads start at column c is (S·n·H·dh, dh, n·H·dh, c) — so q, k and v are read straight out
// of a packed [B, S, 3D] projection and o written as [B, S, D], with no head split or merge.
// bias [B, Sk] is added to every head's and query's scores (length 0: none); p [B, H, Sq, Sk] keeps
// the probabilities for the backward (length 0: none kept — a forward with no gradient to come works
// each item in a per-thread scratch that stays in cache).
struct AttentionDims {
  int64_t b, h, sq, sk, dh;
  float scale;
};

bool GetAttentionDims(napi_env env, const Args& args, const char* fn, size_t first, AttentionDims* d) {
  constexpr double kMaxDim = 2147483647.0;
  double scale;
  if (!GetIndex(env, args.values[first], fn, "B", kMaxDim, &d->b) ||
      !GetIndex(env, args.values[first + 1], fn, "H", kMaxDim, &d->h) ||
      !GetIndex(env, args.values[first + 2], fn, "Sq", kMaxDim, &d->sq) ||
      !GetIndex(env, args.values[first + 3], fn, "Sk", kMaxDim, &d->sk) ||
      !GetIndex(env, args.values[first + 4], fn, "dh", kMaxDim, &d->dh) ||
      !GetNumber(env, args.values[first + 5], fn, "scale", &scale))
    return false;
  d->scale = static_cast<float>(scale);
  return true;
}

struct Strides {
  int64_t batch, head, row, offset;
};

// The four layouts of one call: q (and dq), k (and dk), v (and dv), o (and dO).
struct AttentionLayout {
  Strides q, k, v, o;
};

// layout: a Float64Array of 16 — batch, head, row stride and offset of q, k, v and o in turn.
bool GetAttentionLayout(napi_env env, napi_value v, const char* fn, AttentionLayout* out) {
  TypedView<double> view;
  if (!GetTyped(env, v, fn, "layout", napi_float64_array, "Float64Array", &view)) return false;
  if (view.length != 16) return ThrowRange(env, std::string(fn) + ": layout must have 16 entries");
  Strides* all[] = {&out->q, &out->k, &out->v, &out->o};
  for (int t = 0; t < 4; ++t) {
    int64_t values[4];
    for (int j = 0; j < 4; ++j) {
      const double x = view.data[t * 4 + j];
      if (!(x >= 0 && x <= kMaxSafeInteger && std::floor(x) == x))
        return ThrowRange(env, std::string(fn) + ": layout entries must be non-negative integers");
      values[j] = static_cast<int64_t>(x);
    }
    *all[t] = {values[0], values[1], values[2], values[3]};
  }
  return true;
}

// Elements an operand of `rows` rows per head must have under `st` (0 when it is empty).
uint64_t StridedExtent(const AttentionDims& d, const Strides& st, int64_t rows) {
  if (d.b == 0 || d.h == 0 || rows == 0 || d.dh == 0) return 0;
  return static_cast<uint64_t>((d.b - 1) * st.batch + (d.h - 1) * st.head + (rows - 1) * st.row + st.offset + d.dh);
}

// Rows of one item must hold dh contiguous values (rowStride ≥ dh when there are several rows).
bool CheckRows(napi_env env, const char* fn, const char* name, const AttentionDims& d, const Strides& st, int64_t rows) {
  if (rows > 1 && st.row < d.dh) return ThrowRange(env, std::string(fn) + ": " + name + "'s row stride is under dh");
  return true;
}

// Elements q, k, v and o (and the kept probabilities p) span under a call's layout.
struct AttentionExtents {
  uint64_t q, k, v, o, p;
};

// The row checks of all four operands (o named o_name: "o" forward, "dO" backward) and their extents.
bool CheckAttentionOperands(napi_env env, const char* fn, const AttentionDims& d, const AttentionLayout& lay,
                            const char* o_name, AttentionExtents* e) {
  *e = {StridedExtent(d, lay.q, d.sq), StridedExtent(d, lay.k, d.sk), StridedExtent(d, lay.v, d.sk),
        StridedExtent(d, lay.o, d.sq), static_cast<uint64_t>(d.b * d.h) * d.sq * d.sk};
  return CheckRows(env, fn, "q", d, lay.q, d.sq) && CheckRows(env, fn, "k", d, lay.k, d.sk) &&
         CheckRows(env, fn, "v", d, lay.v, d.sk) && CheckRows(env, fn, o_name, d, lay.o, d.sq);
}

// Outputs must not overlap inputs. Two outputs may share one buffer (dq, dk and dv of a packed
// projection) only with the same batch and row strides, head stride dh and column ranges
// [offset, offset + H·dh) that do not meet; otherwise they must not overlap either.
bool CheckAttentionOutputs(napi_env env, const char* fn, const AttentionDims& d,
                           std::initializer_list<std::tuple<const F32View*, uint64_t, Strides>> outs,
                           std::initializer_list<std::pair<const F32View*, uint64_t>> ins) {
  for (auto o = outs.begin(); o != outs.end(); ++o) {
    const auto& [ov, on, os] = *o;
    for (const auto& i : ins)
      if (Overlaps(ov->data, on, i.first->data, i.second))
        return ThrowRange(env, std::string(fn) + ": an output overlaps an input");
    for (auto o2 = o + 1; o2 != outs.end(); ++o2) {
      const auto& [pv, pn, ps] = *o2;
      if (!Overlaps(ov->data, on, pv->data, pn)) continue;
      const int64_t width = d.h * d.dh;
      const bool shared_columns = ov->data == pv->data && os.batch == ps.batch && os.row == ps.row &&
                                  os.head == d.dh && ps.head == d.dh &&
                                  (os.offset + width <= ps.offset || ps.offset + width <= os.offset) &&
                                  std::max(os.offset, ps.offset) + width <= os.row;
      if (!shared_columns) return ThrowRange(env, std::string(fn) + ": two outputs overlap");
    }
  }
  return true;
}

template <typename Body>
void ForEachHead(const AttentionDims& d, const Body& body) {
  const int64_t items = d.b * d.h;
  const double work = static_cast<double>(items) * static_cast<double>(d.sq) * static_cast<double>(d.sk) *
                      static_cast<double>(d.dh);
  const int workers = std::min<int>(PoolWorkers(work, 1 << 18), static_cast<int>(std::max<int64_t>(items, 1)));
  BlasSingleThreadScope single(openblas_get_num_threads());
  ParallelFor(items, workers, 1, body);
}

inline int64_t At(const Strides& st, int64_t i, int64_t heads) {
  return st.offset + (i / heads) * st.batch + (i % heads) * st.head;
}

// One product of an attention item, c = alpha · op(a) · op(b) (row-major, leading dimensions, c
// overwritten): single-threaded OpenBLAS in fp32, or bf16_gemm.h (operands rounded to bf16, fp32
// accumulation) when the call asked for bf16.
void ItemProduct(bool bf16, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc) {
  if (bf16) {
    bf16_gemm::Gemm(m, n, k, alpha, {a, ta ? 1 : lda, ta ? lda : 1}, {b, tb ? 1 : ldb, tb ? ldb : 1}, c, ldc);
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), alpha, a, static_cast<blasint>(lda), b,
              static_cast<blasint>(ldb), 0.0f, c, static_cast<blasint>(ldc));
}

// The trailing `bf16` argument of both attention calls: the item products in bf16 (AVX-512 BF16).
bool GetAttentionBf16(napi_env env, napi_value v, const char* fn, bool* bf16) {
  if (!GetBool(env, v, fn, "bf16", bf16)) return false;
  if (*bf16 && !bf16_gemm::Available())
    return ThrowRange(env, std::string(fn) + ": bf16 products need a CPU with AVX-512 BF16 (info().attentionBf16)");
  return true;
}

// attentionStridedForward(q, k, v, bias, o, p, B, H, Sq, Sk, dh, scale, layout, bf16)
napi_value AttentionStridedForward(napi_env env, napi_callback_info info) {
  static const char* fn = "attentionStridedForward";
  Args args;
  AttentionDims d;
  AttentionLayout lay;
  bool bf16;
  if (!GetArgs(env, info, fn, 14, &args) || !GetAttentionDims(env, args, fn, 6, &d) ||
      !GetAttentionLayout(env, args.values[12], fn, &lay) || !GetAttentionBf16(env, args.values[13], fn, &bf16))
    return nullptr;
  F32View q, k, v, bias, o, p;
  if (!GetF32(env, args.values[0], fn, "q", &q) || !GetF32(env, args.values[1], fn, "k", &k) ||
      !GetF32(env, args.values[2], fn, "v", &v) || !GetF32(env, args.values[3], fn, "bias", &bias) ||
      !GetF32(env, args.values[4], fn, "o", &o) || !GetF32(env, args.values[5], fn, "p", &p))
    return nullptr;
  AttentionExtents e;
  if (!CheckAttentionOperands(env, fn, d, lay, "o", &e)) return nullptr;
  const uint64_t nq = e.q, nk = e.k, nv = e.v, no = e.o, np = e.p;
  const bool has_bias = bias.length > 0, keep_p = p.length > 0;
  if (!NeedLength(env, fn, "q", q, nq) || !NeedLength(env, fn, "k", k, nk) || !NeedLength(env, fn, "v", v, nv) ||
      !NeedLength(env, fn, "o", o, no) || (keep_p && !NeedLength(env, fn, "p", p, np)) ||
      (has_bias && !NeedLength(env, fn, "bias", bias, static_cast<uint64_t>(d.b * d.sk))) ||
      !CheckDisjoint(env, fn, {{&o, no}, {&p, keep_p ? np : 0}},
                     {{&q, nq}, {&k, nk}, {&v, nv}, {&bias, has_bias ? bias.length : 0}}))
    return nullptr;
  if (d.b * d.h == 0 || d.sq == 0) return Undefined(env);
  const int64_t sq = d.sq, sk = d.sk, dh = d.dh, H = d.h;
  ForEachHead(d, [&](int64_t i) {
    const float* qi = q.data + At(lay.q, i, H);
    const float* ki = k.data + At(lay.k, i, H);
    const float* vi = v.data + At(lay.v, i, H);
    thread_local std::vector<float> scratch;
    if (!keep_p) scratch.resize(static_cast<size_t>(sq * sk));
    float* pi = keep_p ? p.data + i * sq * sk : scratch.data();
    float* oi = o.data + At(lay.o, i, H);
    if (sk == 0 || dh == 0) {
      for (int64_t r = 0; r < sq; ++r) std::fill(oi + r * lay.o.row, oi + r * lay.o.row + dh, 0.0f);
      std::fill(pi, pi + sq * sk, sk == 0 ? 0.0f : 1.0f / static_cast<float>(sk));
      return;
    }
    ItemProduct(bf16, false, true, sq, sk, dh, d.scale, qi, lay.q.row, ki, lay.k.row, pi, sk);
    const float* bi = has_bias ? bias.data + (i / H) * sk : nullptr;
    for (int64_t r = 0; r < sq; ++r) {
      float* row = pi + r * sk;
      if (bi)
        for (int64_t c = 0; c < sk; ++c) row[c] += bi[c];
      SoftmaxRow(row, row, sk);
    }
    ItemProduct(bf16, false, false, sq, dh, sk, 1.0f, pi, sk, vi, lay.v.row, oi, lay.o.row);
  });
  return Undefined(env);
}

// attentionStridedBackward(dO, q, k, v, p, dq, dk, dv, B, H, Sq, Sk, dh, scale, layout, bf16):
//   dV = Pᵀ dO, dP = dO Vᵀ, dS = P ⊙ (dP − rowsum(dP ⊙ P)), dQ = scale · dS K, dK = scale · dSᵀ Q.
napi_value AttentionStridedBackward(napi_env env, napi_callback_info info) {
  static const char* fn = "attentionStridedBackward";
  Args args;
  AttentionDims d;
  AttentionLayout lay;
  bool bf16;
  if (!GetArgs(env, info, fn, 16, &args) || !GetAttentionDims(env, args, fn, 8, &d) ||
      !GetAttentionLayout(env, args.values[14], fn, &lay) || !GetAttentionBf16(env, args.values[15], fn, &bf16))
    return nullptr;
  F32View dout, q, k, v, p, dq, dk, dv;
  if (!GetF32(env, args.values[0], fn, "dO", &dout) || !GetF32(env, args.values[1], fn, "q", &q) ||
      !GetF32(env, args.values[2], fn, "k", &k) || !GetF32(env, args.values[3], fn, "v", &v) ||
      !GetF32(env, args.values[4], fn, "p", &p) || !GetF32(env, args.values[5], fn, "dq", &dq) ||
      !GetF32(env, args.values[6], fn, "dk", &dk) || !GetF32(env, args.values[7], fn, "dv", &dv))
    return nullptr;
  AttentionExtents e;
  if (!CheckAttentionOperands(env, fn, d, lay, "dO", &e)) return nullptr;
  const uint64_t nq = e.q, nk = e.k, nv = e.v, no = e.o, np = e.p;
  if (!NeedLength(env, fn, "dO", dout, no) || !NeedLength(env, fn, "q", q, nq) || !NeedLength(env, fn, "k", k, nk) ||
      !NeedLength(env, fn, "v", v, nv) || !NeedLength(env, fn, "p", p, np) || !NeedLength(env, fn, "dq", dq, nq) ||
      !NeedLength(env, fn, "dk", dk, nk) || !NeedLength(env, fn, "dv", dv, nv) ||
      !CheckAttentionOutputs(env, fn, d, {{&dq, nq, lay.q}, {&dk, nk, lay.k}, {&dv, nv, lay.v}},
                             {{&dout, no}, {&q, nq}, {&k, nk}, {&v, nv}, {&p, np}}))
    return nullptr;
  if (d.b * d.h == 0) return Undefined(env);
  const int64_t sq = d.sq, sk = d.sk, dh = d.dh, H = d.h;
  const int64_t lq = lay.q.row, lk = lay.k.row, lv = lay.v.row, lo = lay.o.row;
  ForEachHead(d, [&](int64_t i) {
    const float* doi = dout.data + At(lay.o, i, H);
    const float* qi = q.data + At(lay.q, i, H);
    const float* ki = k.data + At(lay.k, i, H);
    const float* vi = v.data + At(lay.v, i, H);
    const float* pi = p.data + i * sq * sk;
    float* dqi = dq.data + At(lay.q, i, H);
    float* dki = dk.data + At(lay.k, i, H);
    float* dvi = dv.data + At(lay.v, i, H);
    if (sq == 0 || sk == 0 || dh == 0) {
      for (int64_t r = 0; r < sq; ++r) std::fill(dqi + r * lay.q.row, dqi + r * lay.q.row + dh, 0.0f);
      for (int64_t r = 0; r < sk; ++r) {
        std::fill(dki + r * lay.k.row, dki + r * lay.k.row + dh, 0.0f);
        std::fill(dvi + r * lay.v.row, dvi + r * lay.v.row + dh, 0.0f);
      }
      return;
    }
    thread_local std::vector<float> ds;
    ds.resize(static_cast<size_t>(sq * sk));
    ItemProduct(bf16, true, false, sk, dh, sq, 1.0f, pi, sk, doi, lo, dvi, lv);
    ItemProduct(bf16, false, true, sq, sk, dh, 1.0f, doi, lo, vi, lv, ds.data(), sk);
    for (int64_t r = 0; r < sq; ++r) SoftmaxGradRow(ds.data() + r * sk, pi + r * sk, ds.data() + r * sk, sk);
    ItemProduct(bf16, false, false, sq, dh, sk, d.scale, ds.data(), sk, ki, lk, dqi, lq);
    ItemProduct(bf16, true, false, sk, dh, sq, d.scale, ds.data(), sk, qi, lq, dki, lk);
  });
  return Undefined(env);
}

// addCyclic(a, b, y, n, m): y[i] = a[i] + b[i mod m] — tfjs's Add of two same-shaped tensors (m = n)
// or of a tensor and one broadcast over its leading axes (a bias, m = its length), on the addon's
// threads in rows of m (tfjs-wasm's Add is one thread). y may be a or b only when it is exactly one.
napi_value AddCyclic(napi_env env, napi_callback_info info) {
  static const char* fn = "addCyclic";
  Args args;
  F32View v[3];
  int64_t n, m;
  if (!GetArgs(env, info, fn, 5, &args) || !GetF32s(env, args, fn, 0, {"a", "b", "y"}, v) ||
      !GetIndex(env, args.values[3], fn, "n", kMaxSafeInteger, &n) ||
      !GetIndex(env, args.values[4], fn, "m", kMaxSafeInteger, &m))
    return nullptr;
  if (n == 0) return Undefined(env);
  if (m == 0 || n % m != 0) {
    ThrowRange(env, std::string(fn) + ": n must be a multiple of m ≥ 1");
    return nullptr;
  }
  const uint64_t un = static_cast<uint64_t>(n), um = static_cast<uint64_t>(m);
  if (!NeedLength(env, fn, "a", v[0], un) || !NeedLength(env, fn, "b", v[1], um) || !NeedLength(env, fn, "y", v[2], un))
    return nullptr;
  const bool same_a = v[2].data == v[0].data, same_b = v[2].data == v[1].data && m == n;
  if ((!same_a && Overlaps(v[2].data, un, v[0].data, un)) || (!same_b && Overlaps(v[2].data, un, v[1].data, um))) {
    ThrowRange(env, std::string(fn) + ": y overlaps an input");
    return nullptr;
  }
  const float *a = v[0].data, *b = v[1].data;
  float* y = v[2].data;
  constexpr int64_t kChunk = 1 << 15;
  ParallelFor((n + kChunk - 1) / kChunk, PoolWorkers(static_cast<double>(n), 1 << 17), 1, [&](int64_t c) {
    const int64_t begin = c * kChunk, end = std::min<int64_t>(n, begin + kChunk);
    int64_t i = begin;
    while (i < end) {
      const int64_t j0 = i % m, len = std::min<int64_t>(end - i, m - j0);
      const float* ai = a + i;
      const float* bj = b + j0;
      float* yi = y + i;
      for (int64_t j = 0; j < len; ++j) yi[j] = ai[j] + bj[j];
      i += len;
    }
  });
  return Undefined(env);
}

// sumRows(x, y, rows, d): y[c] = sum over r of x[r·d + c] — a reduction over the leading axes (bias
// gradients), which tfjs-wasm does by transposing the whole tensor first. Column blocks in parallel,
// each streamed row by row, sums in double.
napi_value SumRows(napi_env env, napi_callback_info info) {
  static const char* fn = "sumRows";
  Args args;
  F32View v[2];
  int64_t rows, d;
  if (!GetArgs(env, info, fn, 4, &args) || !GetF32s(env, args, fn, 0, {"x", "y"}, v) ||
      !GetRows(env, args, fn, 2, &rows, &d))
    return nullptr;
  const uint64_t n = static_cast<uint64_t>(rows) * static_cast<uint64_t>(d);
  if (!NeedLength(env, fn, "x", v[0], n) || !NeedLength(env, fn, "y", v[1], static_cast<uint64_t>(d)))
    return nullptr;
  if (Overlaps(v[0].data, n, v[1].data, static_cast<uint64_t>(d))) {
    ThrowRange(env, std::string(fn) + ": x and y overlap");
    return nullptr;
  }
  const float* x = v[0].data;
  float* y = v[1].data;
  constexpr int64_t kBlock = 256;
  const int64_t blocks = (d + kBlock - 1) / kBlock;
  ParallelFor(blocks, std::min<int>(PoolWorkers(static_cast<double>(n), 1 << 16), static_cast<int>(std::max<int64_t>(blocks, 1))), 1,
              [&](int64_t blk) {
                const int64_t c0 = blk * kBlock, c1 = std::min(d, c0 + kBlock);
                double acc[kBlock] = {0};
                for (int64_t r = 0; r < rows; ++r) {
                  const float* xr = x + r * d;
                  for (int64_t c = c0; c < c1; ++c) acc[c - c0] += xr[c];
                }
                for (int64_t c = c0; c < c1; ++c) y[c] = static_cast<float>(acc[c - c0]);
              });
  return Undefined(env);
}

// layerNormForward(x, g, b, y, mean, rstd, rows, d, eps)
napi_value LayerNormForward(napi_env env, napi_callback_info info) {
  static const char* fn = "layerNormForward";
  Args args;
  F32View v[6];
  int64_t rows, d;
  double eps;
  if (!GetArgs(env, info, fn, 9, &args) || !GetF32s(env, args, fn, 0, {"x", "g", "b", "y", "mean", "rstd"}, v) ||
      !GetIndex(env, args.values[6], fn, "rows", kMaxSafeInteger, &rows) ||
      !GetIndex(env, args.values[7], fn, "d", kMaxSafeInteger, &d) || !GetNumber(env, args.values[8], fn, "eps", &eps))
    return nullptr;
  const uint64_t n = static_cast<uint64_t>(rows) * d;
  if (!NeedLength(env, fn, "x", v[0], n) || !NeedLength(env, fn, "g", v[1], d) || !NeedLength(env, fn, "b", v[2], d) ||
      !NeedLength(env, fn, "y", v[3], n) || !NeedLength(env, fn, "mean", v[4], rows) ||
      !NeedLength(env, fn, "rstd", v[5], rows))
    return nullptr;
  const float *x = v[0].data, *g = v[1].data, *b = v[2].data;
  float *y = v[3].data, *mean = v[4].data, *rstd = v[5].data;
  ParallelFor(rows, PoolWorkers(static_cast<double>(n), 1 << 15), 16, [&](int64_t r) {
    vmath::LayerNormRow(x + r * d, g, b, y + r * d, d, eps, mean + r, rstd + r);
  });
  return Undefined(env);
}

// layerNormBackward(dy, x, g, mean, rstd, dx, dg, db, rows, d)
//   dx = r (h - mean(h) - xh mean(h xh)), h = dy g;  dg = sum dy xh;  db = sum dy
napi_value LayerNormBackward(napi_env env, napi_callback_info info) {
  static const char* fn = "layerNormBackward";
  Args args;
  F32View v[8];
  int64_t rows, d;
  if (!GetArgs(env, info, fn, 10, &args) ||
      !GetF32s(env, args, fn, 0, {"dy", "x", "g", "mean", "rstd", "dx", "dg", "db"}, v) ||
      !GetIndex(env, args.values[8], fn, "rows", kMaxSafeInteger, &rows) ||
      !GetIndex(env, args.values[9], fn, "d", kMaxSafeInteger, &d))
    return nullptr;
  const uint64_t n = static_cast<uint64_t>(rows) * d;
  if (!NeedLength(env, fn, "dy", v[0], n) || !NeedLength(env, fn, "x", v[1], n) || !NeedLength(env, fn, "g", v[2], d) ||
      !NeedLength(env, fn, "mean", v[3], rows) || !NeedLength(env, fn, "rstd", v[4], rows) ||
      !NeedLength(env, fn, "dx", v[5], n) || !NeedLength(env, fn, "dg", v[6], d) || !NeedLength(env, fn, "db", v[7], d))
    return nullptr;
  const float *dy = v[0].data, *x = v[1].data, *g = v[2].data, *mean = v[3].data, *rstd = v[4].data;
  float *dx = v[5].data, *dg = v[6].data, *db = v[7].data;
  const int workers = PoolWorkers(static_cast<double>(n), 1 << 15);
  // Each worker sums dg, db over its own block of rows; the blocks are added at the end.
  std::vector<float> partial(static_cast<size_t>(workers) * 2 * d, 0.0f);
  const int64_t per = (rows + workers - 1) / workers;
  ParallelFor(workers, workers, 1, [&](int64_t w) {
    float* pg = partial.data() + w * 2 * d;
    float* pb = pg + d;
    const int64_t end = std::min(rows, (w + 1) * per);
    for (int64_t r = w * per; r < end; ++r)
      vmath::LayerNormGradRow(dy + r * d, x + r * d, g, mean[r], rstd[r], dx + r * d, pg, pb, d);
  });
  for (int64_t i = 0; i < d; ++i) {
    float sg = 0, sb = 0;
    for (int w = 0; w < workers; ++w) {
      sg += partial[static_cast<size_t>(w) * 2 * d + i];
      sb += partial[static_cast<size_t>(w) * 2 * d + d + i];
    }
    dg[i] = sg;
    db[i] = sb;
  }
  return Undefined(env);
}

// adamwUpdate(p, g, m, v, n, lr, beta1, beta2, eps, c1, c2, decay), in place on p, m, v:
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr (m c1 / (sqrt(v c2) + eps) + decay p)
napi_value AdamwUpdate(napi_env env, napi_callback_info info) {
  static const char* fn = "adamwUpdate";
  Args args;
  F32View v[4];
  int64_t n;
  double h[7];
  if (!GetArgs(env, info, fn, 12, &args) || !GetF32s(env, args, fn, 0, {"p", "g", "m", "v"}, v) ||
      !GetIndex(env, args.values[4], fn, "n", kMaxSafeInteger, &n))
    return nullptr;
  static const char* hyper[] = {"lr", "beta1", "beta2", "eps", "c1", "c2", "decay"};
  for (int i = 0; i < 7; ++i)
    if (!GetNumber(env, args.values[5 + i], fn, hyper[i], &h[i])) return nullptr;
  for (int i = 0; i < 4; ++i)
    if (!NeedLength(env, fn, i == 0 ? "p" : i == 1 ? "g" : i == 2 ? "m" : "v", v[i], n)) return nullptr;
  float *p = v[0].data, *m = v[2].data, *s = v[3].data;
  const float* g = v[1].data;
  const float lr = h[0], b1 = h[1], b2 = h[2], eps = h[3], c1 = h[4], c2 = h[5], decay = h[6];
  // 1 − β in double, then rounded: (1.0f − 0.999f) is 0.00099998713, 1.3e-5 off, which moved every
  // update by ~6e-6 relative against the formula (and the wasm path, which computes it in double).
  const float a1 = static_cast<float>(1.0 - h[1]), a2 = static_cast<float>(1.0 - h[2]);
  const int64_t chunk = 1 << 14;
  ParallelFor((n + chunk - 1) / chunk, PoolWorkers(n, 1 << 16), 1, [&](int64_t c) {
    const int64_t end = std::min<int64_t>(n, (c + 1) * chunk);
    for (int64_t i = c * chunk; i < end; ++i) {
      const float gi = g[i];
      const float mi = m[i] = b1 * m[i] + a1 * gi;
      const float vi = s[i] = b2 * s[i] + a2 * gi * gi;
      p[i] -= lr * (mi * c1 / (std::sqrt(vi * c2) + eps) + decay * p[i]);
    }
  });
  return Undefined(env);
}

// siluForward(x, y, n): x sigma(x) (vector_math.h; safe at both ends)
napi_value SiluForward(napi_env env, napi_callback_info info) {
  return MapSpans(env, info, "siluForward", vmath::SiluSpan);
}

// siluBackward(dy, x, dx, n): dx = dy sigma(x) (1 + x (1 - sigma(x)))
napi_value SiluBackward(napi_env env, napi_callback_info info) {
  return MapGradSpans(env, info, "siluBackward", vmath::SiluGradSpan);
}

// Shape arguments shared by the group norm kernels: x is NHWC [batch, hw, channels] with
// channels split into `groups` groups of consecutive channels. Checks groups >= 1, channels %
// groups == 0 and that batch * hw * channels and batch * groups fit in 2^53.
struct GroupNormDims {
  int64_t batch, hw, channels, groups, cg;
  uint64_t n;      // batch * hw * channels
  uint64_t stats;  // batch * groups
};

bool GetGroupNormDims(napi_env env, const Args& args, const char* fn, size_t first, GroupNormDims* d) {
  napi_value const* a = args.values + first;
  if (!GetIndex(env, a[0], fn, "batch", kMaxSafeInteger, &d->batch) ||
      !GetIndex(env, a[1], fn, "hw", kMaxSafeInteger, &d->hw) ||
      !GetIndex(env, a[2], fn, "channels", kMaxSafeInteger, &d->channels) ||
      !GetIndex(env, a[3], fn, "groups", kMaxSafeInteger, &d->groups))
    return false;
  if (d->groups < 1) return ThrowRange(env, std::string(fn) + ": groups must be >= 1");
  if (d->channels % d->groups != 0)
    return ThrowRange(env, std::string(fn) + ": channels (" + std::to_string(d->channels) +
                               ") must be divisible by groups (" + std::to_string(d->groups) + ")");
  d->cg = d->channels / d->groups;
  uint64_t bh;
  if (__builtin_mul_overflow(static_cast<uint64_t>(d->batch), static_cast<uint64_t>(d->hw), &bh) ||
      __builtin_mul_overflow(bh, static_cast<uint64_t>(d->channels), &d->n) ||
      __builtin_mul_overflow(static_cast<uint64_t>(d->batch), static_cast<uint64_t>(d->groups), &d->stats) ||
      d->n > static_cast<uint64_t>(kMaxSafeInteger))
    return ThrowRange(env, std::string(fn) + ": batch * hw * channels is too large");
  return true;
}

// Work items for the group norm kernels: (batch item, block of consecutive groups) pairs, enough
// of them to balance the pool. Each item walks its batch item's pixels in memory order over the
// block's contiguous channel span (per-group strided walks touch every cache line once per group).
struct GroupBlocks {
  int64_t per_item;  // groups per block
  int64_t blocks;    // blocks per batch item
  int workers;
};

GroupBlocks PlanGroupBlocks(const GroupNormDims& d) {
  GroupBlocks p;
  p.workers = PoolWorkers(static_cast<double>(d.n), 1 << 15);
  const int64_t want = d.batch >= 4 * p.workers ? 1 : (4 * p.workers + std::max<int64_t>(d.batch, 1) - 1) /
                                                          std::max<int64_t>(d.batch, 1);
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(d.groups, want));
  p.per_item = (d.groups + blocks - 1) / blocks;
  p.blocks = (d.groups + p.per_item - 1) / p.per_item;
  return p;
}

// groupNormForward(x, gamma, beta, y, mean, rstd, batch, hw, channels, groups, eps)
//   per (b, g): mean, rstd = 1/sqrt(var + eps) over the group's hw * channels/groups elements;
//   y = (x - mean) rstd gamma_c + beta_c. Sums in double; variance two-pass.
napi_value GroupNormForward(napi_env env, napi_callback_info info) {
  static const char* fn = "groupNormForward";
  Args args;
  F32View v[6];
  GroupNormDims d;
  double eps;
  if (!GetArgs(env, info, fn, 11, &args) ||
      !GetF32s(env, args, fn, 0, {"x", "gamma", "beta", "y", "mean", "rstd"}, v) ||
      !GetGroupNormDims(env, args, fn, 6, &d) || !GetNumber(env, args.values[10], fn, "eps", &eps))
    return nullptr;
  const uint64_t C = static_cast<uint64_t>(d.channels);
  if (!NeedLength(env, fn, "x", v[0], d.n) || !NeedLength(env, fn, "gamma", v[1], C) ||
      !NeedLength(env, fn, "beta", v[2], C) || !NeedLength(env, fn, "y", v[3], d.n) ||
      !NeedLength(env, fn, "mean", v[4], d.stats) || !NeedLength(env, fn, "rstd", v[5], d.stats))
    return nullptr;
  const float *x = v[0].data, *gamma = v[1].data, *beta = v[2].data;
  float *y = v[3].data, *mean = v[4].data, *rstd = v[5].data;
  const int64_t hw = d.hw, cg = d.cg, G = d.groups;
  const int64_t Ci = d.channels;
  const double count = static_cast<double>(hw) * static_cast<double>(cg);
  const GroupBlocks plan = PlanGroupBlocks(d);
  // Per (batch item, channel) scratch; each work item touches only its own channel span.
  std::vector<double> sum(static_cast<size_t>(d.batch) * C);
  std::vector<float> c_mean(static_cast<size_t>(d.batch) * C), c_scale(static_cast<size_t>(d.batch) * C);
  ParallelFor(d.batch * plan.blocks, plan.workers, 1, [&](int64_t item) {
    const int64_t b = item / plan.blocks;
    const int64_t g0 = (item % plan.blocks) * plan.per_item, g1 = std::min(G, g0 + plan.per_item);
    const int64_t c0 = g0 * cg, c1 = g1 * cg;
    const float* xb = x + b * hw * Ci;
    float* yb = y + b * hw * Ci;
    double* s = sum.data() + b * Ci;
    float* cm = c_mean.data() + b * Ci;
    float* cs = c_scale.data() + b * Ci;
    for (int64_t c = c0; c < c1; ++c) s[c] = 0;
    for (int64_t p = 0; p < hw; ++p) {
      const float* xp = xb + p * Ci;
      for (int64_t c = c0; c < c1; ++c) s[c] += xp[c];
    }
    for (int64_t g = g0; g < g1; ++g) {
      double m = 0;
      for (int64_t c = g * cg; c < (g + 1) * cg; ++c) m += s[c];
      const float mf = static_cast<float>(m / count);
      mean[b * G + g] = mf;
      for (int64_t c = g * cg; c < (g + 1) * cg; ++c) cm[c] = mf;
    }
    for (int64_t c = c0; c < c1; ++c) s[c] = 0;
    for (int64_t p = 0; p < hw; ++p) {
      const float* xp = xb + p * Ci;
      for (int64_t c = c0; c < c1; ++c) {
        const double t = xp[c] - cm[c];
        s[c] += t * t;
      }
    }
    for (int64_t g = g0; g < g1; ++g) {
      double var = 0;
      for (int64_t c = g * cg; c < (g + 1) * cg; ++c) var += s[c];
      const float inv = static_cast<float>(1.0 / std::sqrt(var / count + eps));
      rstd[b * G + g] = inv;
      for (int64_t c = g * cg; c < (g + 1) * cg; ++c) cs[c] = inv * gamma[c];
    }
    for (int64_t p = 0; p < hw; ++p) {
      const float* xp = xb + p * Ci;
      float* yp = yb + p * Ci;
      for (int64_t c = c0; c < c1; ++c) yp[c] = (xp[c] - cm[c]) * cs[c] + beta[c];
    }
  });
  return Undefined(env);
}

// groupNormBackward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta, batch, hw, channels, groups)
//   xh = (x - mean) r, h = dy gamma_c; per group of N elements:
//   dx = r (h - mean(h) - xh mean(h xh));  dgamma_c = sum_{b,p} dy xh;  dbeta_c = sum_{b,p} dy
// Each work item sums dy and dy xh per channel over its batch item's pixels (double); the group
// means follow from them (sum h = sum_c gamma_c sum dy, ...). dgamma/dbeta are summed from these
// per-batch-item partials after the parallel part, in a fixed order (no atomics, and the result
// does not depend on the thread count).
napi_value GroupNormBackward(napi_env env, napi_callback_info info) {
  static const char* fn = "groupNormBackward";
  Args args;
  F32View v[8];
  GroupNormDims d;
  if (!GetArgs(env, info, fn, 12, &args) ||
      !GetF32s(env, args, fn, 0, {"dy", "x", "gamma", "mean", "rstd", "dx", "dgamma", "dbeta"}, v) ||
      !GetGroupNormDims(env, args, fn, 8, &d))
    return nullptr;
  const uint64_t C = static_cast<uint64_t>(d.channels);
  if (!NeedLength(env, fn, "dy", v[0], d.n) || !NeedLength(env, fn, "x", v[1], d.n) ||
      !NeedLength(env, fn, "gamma", v[2], C) || !NeedLength(env, fn, "mean", v[3], d.stats) ||
      !NeedLength(env, fn, "rstd", v[4], d.stats) || !NeedLength(env, fn, "dx", v[5], d.n) ||
      !NeedLength(env, fn, "dgamma", v[6], C) || !NeedLength(env, fn, "dbeta", v[7], C))
    return nullptr;
  const float *dy = v[0].data, *x = v[1].data, *gamma = v[2].data, *mean = v[3].data, *rstd = v[4].data;
  float *dx = v[5].data, *dgamma = v[6].data, *dbeta = v[7].data;
  const int64_t hw = d.hw, cg = d.cg, G = d.groups;
  const int64_t Ci = d.channels;
  const double count = static_cast<double>(hw) * static_cast<double>(cg);
  const GroupBlocks plan = PlanGroupBlocks(d);
  std::vector<double> sum_dy(static_cast<size_t>(d.batch) * C), sum_dyxh(static_cast<size_t>(d.batch) * C);
  // Per channel: the group's mean, rstd, mean(h) and mean(h xh).
  std::vector<float> scratch(static_cast<size_t>(d.batch) * C * 4);
  ParallelFor(d.batch * plan.blocks, plan.workers, 1, [&](int64_t item) {
    const int64_t b = item / plan.blocks;
    const int64_t g0 = (item % plan.blocks) * plan.per_item, g1 = std::min(G, g0 + plan.per_item);
    const int64_t c0 = g0 * cg, c1 = g1 * cg;
    const int64_t off = b * hw * Ci;
    double* sd = sum_dy.data() + b * Ci;
    double* sdx = sum_dyxh.data() + b * Ci;
    float* cm = scratch.data() + b * Ci * 4;
    float* cr = cm + Ci;
    float* ch = cr + Ci;
    float* chx = ch + Ci;
    for (int64_t g = g0; g < g1; ++g)
      for (int64_t c = g * cg; c < (g + 1) * cg; ++c) {
        cm[c] = mean[b * G + g];
        cr[c] = rstd[b * G + g];
      }
    for (int64_t c = c0; c < c1; ++c) sd[c] = sdx[c] = 0;
    for (int64_t p = 0; p < hw; ++p) {
      const float *dyp = dy + off + p * Ci, *xp = x + off + p * Ci;
      for (int64_t c = c0; c < c1; ++c) {
        const float xh = (xp[c] - cm[c]) * cr[c];
        sd[c] += dyp[c];
        sdx[c] += static_cast<double>(dyp[c] * xh);
      }
    }
    for (int64_t g = g0; g < g1; ++g) {
      double h = 0, hx = 0;
      for (int64_t c = g * cg; c < (g + 1) * cg; ++c) {
        h += gamma[c] * sd[c];
        hx += gamma[c] * sdx[c];
      }
      const float mh = static_cast<float>(h / count), mhx = static_cast<float>(hx / count);
      for (int64_t c = g * cg; c < (g + 1) * cg; ++c) {
        ch[c] = mh;
        chx[c] = mhx;
      }
    }
    for (int64_t p = 0; p < hw; ++p) {
      const float *dyp = dy + off + p * Ci, *xp = x + off + p * Ci;
      float* dxp = dx + off + p * Ci;
      for (int64_t c = c0; c < c1; ++c) {
        const float xh = (xp[c] - cm[c]) * cr[c];
        dxp[c] = cr[c] * (dyp[c] * gamma[c] - ch[c] - xh * chx[c]);
      }
    }
  });
  for (int64_t c = 0; c < Ci; ++c) {
    double sg = 0, sb = 0;
    for (int64_t b = 0; b < d.batch; ++b) {
      sg += sum_dyxh[b * Ci + c];
      sb += sum_dy[b * Ci + c];
    }
    dgamma[c] = static_cast<float>(sg);
    dbeta[c] = static_cast<float>(sb);
  }
  return Undefined(env);
}

// Convolution geometry shared by im2col and col2imAdd, passed as one Int32Array:
// [b0, nb, H, W, C, KH, KW, strideH, strideW, dilationH, dilationW, padTop, padLeft, OH, OW]
struct ConvGeometry {
  int64_t b0, nb, H, W, C, KH, KW, sh, sw, dh, dw, top, left, OH, OW;
};

bool GetGeometry(napi_env env, napi_value v, const char* fn, ConvGeometry* g) {
  bool is_ta = false;
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (!NapiOk(env, napi_is_typedarray(env, v, &is_ta), "napi_is_typedarray")) return false;
  if (is_ta && !NapiOk(env, napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr), "napi_get_typedarray_info"))
    return false;
  if (!is_ta || type != napi_int32_array || length != 15 || data == nullptr)
    return ThrowType(env, std::string(fn) + ": geometry must be an Int32Array of 15 values");
  const int32_t* a = static_cast<const int32_t*>(data);
  *g = {a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14]};
  const int64_t pos[] = {g->nb, g->H, g->W, g->C, g->KH, g->KW, g->sh, g->sw, g->dh, g->dw, g->OH, g->OW};
  for (int64_t p : pos)
    if (p < 1) return ThrowRange(env, std::string(fn) + ": geometry sizes must be positive");
  if (g->b0 < 0) return ThrowRange(env, std::string(fn) + ": b0 must be >= 0");
  return true;
}

// cols[(n·OH + oh)·OW + ow][(kh·KW + kw)·C + c] = x[b0 + n][oh·sh + kh·dh − top][ow·sw + kw·dw − left][c]
// (zero outside the image).
template <bool kScatter>
void ConvColumns(const ConvGeometry& g, float* x, float* cols) {
  const int64_t row = g.KH * g.KW * g.C;
  // Rows of one image never overlap in x for im2col; for the scatter-add, different images
  // write disjoint parts of x, so the work is split by image there.
  auto image = [&](int64_t n) {
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        float* col = cols + ((n * g.OH + oh) * g.OW + ow) * row;
        for (int64_t kh = 0; kh < g.KH; ++kh) {
          const int64_t ih = oh * g.sh + kh * g.dh - g.top;
          for (int64_t kw = 0; kw < g.KW; ++kw, col += g.C) {
            const int64_t iw = ow * g.sw + kw * g.dw - g.left;
            const bool inside = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W;
            float* px = inside ? x + (((g.b0 + n) * g.H + ih) * g.W + iw) * g.C : nullptr;
            if (kScatter) {
              if (inside)
                for (int64_t c = 0; c < g.C; ++c) px[c] += col[c];
            } else if (inside) {
              std::copy(px, px + g.C, col);
            } else {
              std::fill(col, col + g.C, 0.0f);
            }
          }
        }
      }
    }
  };
  const double work = static_cast<double>(g.nb) * g.OH * g.OW * row;
  ParallelFor(g.nb, PoolWorkers(work, 1 << 16), 1, image);
}

bool GetColumnsArgs(napi_env env, napi_callback_info info, const char* fn, ConvGeometry* g, F32View* x, F32View* cols) {
  Args args;
  F32View v[2];
  if (!GetArgs(env, info, fn, 3, &args) || !GetF32s(env, args, fn, 0, {"x", "cols"}, v) ||
      !GetGeometry(env, args.values[2], fn, g))
    return false;
  const uint64_t need_x = static_cast<uint64_t>(g->b0 + g->nb) * g->H * g->W * g->C;
  const uint64_t need_cols = static_cast<uint64_t>(g->nb) * g->OH * g->OW * g->KH * g->KW * g->C;
  if (!NeedLength(env, fn, "x", v[0], need_x) || !NeedLength(env, fn, "cols", v[1], need_cols)) return false;
  if (Overlaps(v[0].data, need_x, v[1].data, need_cols)) return ThrowRange(env, std::string(fn) + ": x and cols overlap");
  *x = v[0];
  *cols = v[1];
  return true;
}

// im2col(x, cols, geometry): the patch matrix of images [b0, b0 + nb) of NHWC x.
napi_value Im2col(napi_env env, napi_callback_info info) {
  ConvGeometry g;
  F32View x, cols;
  if (!GetColumnsArgs(env, info, "im2col", &g, &x, &cols)) return nullptr;
  ConvColumns<false>(g, x.data, cols.data);
  return Undefined(env);
}

// col2imAdd(x, cols, geometry): x += the transpose of im2col applied to cols (the input gradient).
napi_value Col2imAdd(napi_env env, napi_callback_info info) {
  ConvGeometry g;
  F32View x, cols;
  if (!GetColumnsArgs(env, info, "col2imAdd", &g, &x, &cols)) return nullptr;
  ConvColumns<true>(g, x.data, cols.data);
  return Undefined(env);
}

// ---------------------------------------------------------------------------
// Matmul through oneDNN (bf16 matrix units), when the addon is built with it
// ---------------------------------------------------------------------------
//
// matmulBatched has the arguments of sgemmBatched plus a mode and returns the
// path that computed the product:
//   0 OpenBLAS sgemm (as sgemmBatched);
//   1 oneDNN fp32 matmul;
//   2 oneDNN bf16 matmul: A and B rounded to bf16 (round to nearest even) into
//     scratch buffers on the fly, products accumulated and written in fp32
//     (AMX tiles or AVX-512 BF16 dot products, whichever oneDNN picks).
// Modes 0–2 ask for that path (falling back to OpenBLAS when oneDNN is not
// built in, cannot make the primitive, alpha != 1 or beta != 0); mode 3
// chooses by shape (PathByShape, from measurements on this project's
// machines; deterministic, so two runs of one seed give the same bits);
// mode 4 times the allowed paths at a shape's first call and keeps the
// fastest for the life of the process (not reproducible between processes).
// In modes 3 and 4 bf16 is a candidate only when allowBf16 is passed and the
// CPU has bf16 units (avx512_bf16 or AMX, as oneDNN sees them).
enum Path : int { kPathOpenblas = 0, kPathDnnlF32 = 1, kPathDnnlBf16 = 2 };
enum Mode : int { kModeRule = 3, kModeTune = 4 };

#if defined(MUSE_HAVE_DNNL)

// Rounds n floats to bf16 (round to nearest even; NaN stays NaN).
void ToBf16Scalar(const float* s, uint16_t* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, s + i, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
      d[i] = static_cast<uint16_t>((u >> 16) | 0x40u);
    } else {
      u += 0x7fffu + ((u >> 16) & 1u);
      d[i] = static_cast<uint16_t>(u >> 16);
    }
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f,avx512bf16"))) void ToBf16Avx512(const float* s, uint16_t* d, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(s + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), reinterpret_cast<const __m256i&>(h));
  }
  ToBf16Scalar(s + i, d + i, n - i);
}

bool CpuHasAvx512Bf16() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
  return has;
}
#endif

void ToBf16(const float* s, uint16_t* d, int64_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (CpuHasAvx512Bf16()) return ToBf16Avx512(s, d, n);
#endif
  ToBf16Scalar(s, d, n);
}

// Converts `blocks` blocks of `block` floats whose starts are `stride` apart into
// packed bf16 (block i at d + i * block), in parallel chunks on the pool.
void ToBf16Blocks(const float* s, uint64_t stride, int64_t blocks, int64_t block, uint16_t* d) {
  constexpr int64_t kChunk = 1 << 15;
  const int64_t per_block = (block + kChunk - 1) / kChunk;
  const double total = static_cast<double>(blocks) * static_cast<double>(block);
  ParallelFor(blocks * per_block, PoolWorkers(total, 1 << 17), 1, [&](int64_t item) {
    const int64_t i = item / per_block, begin = (item % per_block) * kChunk;
    const int64_t end = std::min(block, begin + kChunk);
    ToBf16(s + static_cast<uint64_t>(i) * stride + begin, d + i * block + begin, end - begin);
  });
}

struct DnnlState {
  bool ok = false;
  std::string error;
  dnnl::engine engine;
  dnnl::stream stream;
  int isa = 0;
};

DnnlState& Dnnl() {
  static DnnlState* state = [] {
    auto* s = new DnnlState();  // kept for the life of the process, like the pool
    try {
      s->engine = dnnl::engine(dnnl::engine::kind::cpu, 0);
      s->stream = dnnl::stream(s->engine);
      s->isa = static_cast<int>(dnnl_get_effective_cpu_isa());
      s->ok = true;
    } catch (const std::exception& e) {
      s->error = e.what();
    }
    return s;
  }();
  return *state;
}

bool IsaHas(int isa, dnnl_cpu_isa_t want) { return (isa & static_cast<int>(want)) == static_cast<int>(want); }

bool HardwareBf16() {
  DnnlState& d = Dnnl();
  return d.ok && IsaHas(d.isa, dnnl_cpu_isa_avx512_core_bf16);
}

bool HardwareAmx() {
  DnnlState& d = Dnnl();
  return d.ok && IsaHas(d.isa, dnnl_cpu_isa_avx512_core_amx);
}

const char* IsaName(int isa) {
  if (IsaHas(isa, dnnl_cpu_isa_avx512_core_amx)) return "avx512_core_amx";
  if (IsaHas(isa, dnnl_cpu_isa_avx512_core_bf16)) return "avx512_core_bf16";
  if (IsaHas(isa, dnnl_cpu_isa_avx512_core_vnni)) return "avx512_core_vnni";
  if (IsaHas(isa, dnnl_cpu_isa_avx512_core)) return "avx512_core";
  if (IsaHas(isa, dnnl_cpu_isa_avx2)) return "avx2";
  if (IsaHas(isa, dnnl_cpu_isa_avx)) return "avx";
  if (IsaHas(isa, dnnl_cpu_isa_sse41)) return "sse41";
  return "none";
}

// The product as oneDNN sees it: batch broadcasting folded where possible.
struct DnnlShape {
  bool bf16, trans_a, trans_b;
  int64_t batch_a, batch_b, batch, m, n, k, a_stride, b_stride;
  bool operator==(const DnnlShape& o) const {
    return bf16 == o.bf16 && trans_a == o.trans_a && trans_b == o.trans_b && batch_a == o.batch_a &&
           batch_b == o.batch_b && batch == o.batch && m == o.m && n == o.n && k == o.k &&
           a_stride == o.a_stride && b_stride == o.b_stride;
  }
};

struct DnnlShapeHash {
  size_t operator()(const DnnlShape& s) const {
    uint64_t h = 1469598103934665603ull;
    for (int64_t v : {static_cast<int64_t>(s.bf16) | (static_cast<int64_t>(s.trans_a) << 1) |
                          (static_cast<int64_t>(s.trans_b) << 2),
                      s.batch_a, s.batch_b, s.batch, s.m, s.n, s.k, s.a_stride, s.b_stride})
      h = (h ^ static_cast<uint64_t>(v)) * 1099511628211ull;
    return static_cast<size_t>(h);
  }
};

DnnlShape ShapeOf(const Gemm& g, bool bf16) {
  DnnlShape s{bf16, g.trans_a, g.trans_b, g.a_stride == 0 ? 1 : g.batch, g.b_stride == 0 ? 1 : g.batch,
              g.batch, g.m, g.n, g.k, g.a_stride, g.b_stride};
  if (s.batch == 1) s.batch_a = s.batch_b = 1;
  // A shared right operand under a contiguous, untransposed left one: one product of batch·M rows.
  if (s.batch > 1 && s.batch_b == 1 && s.batch_a == s.batch && !s.trans_a && s.a_stride == s.m * s.k) {
    s.m *= s.batch;
    s.batch = s.batch_a = 1;
  }
  if (s.batch_a == 1) s.a_stride = s.m * s.k;
  if (s.batch_b == 1) s.b_stride = s.k * s.n;
  if (bf16) {  // the scratch copies are packed
    s.a_stride = s.m * s.k;
    s.b_stride = s.k * s.n;
  }
  return s;
}

struct DnnlPrimitive {
  bool ok = false;
  dnnl::matmul prim;
  dnnl::memory::desc a, b, c;
};

// Primitives by shape (creating one costs tens of microseconds to milliseconds: JIT).
class DnnlCache {
 public:
  static DnnlCache& Get() {
    static DnnlCache* cache = new DnnlCache();
    return *cache;
  }
  // The primitive for s (ok == false when oneDNN cannot make one); the pointer stays valid.
  std::shared_ptr<DnnlPrimitive> Find(const DnnlShape& s) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = map_.find(s);
    if (it != map_.end()) return it->second;
    if (map_.size() >= kMaxEntries) map_.clear();
    auto p = std::make_shared<DnnlPrimitive>(Make(s));
    map_.emplace(s, p);
    return p;
  }
  size_t Size() {
    std::lock_guard<std::mutex> lock(mutex_);
    return map_.size();
  }

 private:
  static constexpr size_t kMaxEntries = 4096;

  static DnnlPrimitive Make(const DnnlShape& s) {
    using dt = dnnl::memory::data_type;
    DnnlPrimitive p;
    const dt in = s.bf16 ? dt::bf16 : dt::f32;
    // Logical dims [batch, rows, cols]; strides from the storage layout (transposed = column-major).
    auto desc = [](dt type, int64_t batch, int64_t rows, int64_t cols, int64_t batch_stride, bool trans) {
      return dnnl::memory::desc({batch, rows, cols}, type,
                                {batch_stride, trans ? 1 : cols, trans ? rows : 1});
    };
    try {
      p.a = desc(in, s.batch_a, s.m, s.k, s.a_stride, s.trans_a);
      p.b = desc(in, s.batch_b, s.k, s.n, s.b_stride, s.trans_b);
      p.c = desc(dt::f32, s.batch, s.m, s.n, s.m * s.n, false);
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(p.a, p.b, p.c), Dnnl().engine);
      p.prim = dnnl::matmul(pd);
      p.ok = true;
    } catch (const std::exception&) {
      p.ok = false;
    }
    return p;
  }

  std::mutex mutex_;
  std::unordered_map<DnnlShape, std::shared_ptr<DnnlPrimitive>, DnnlShapeHash> map_;
};

// Scratch for the bf16 copies, per calling thread, grown as needed.
struct Bf16Scratch {
  std::vector<uint16_t> a, b;
};

// Runs the product of g's shape on oneDNN with both operands already packed in bf16 (a: M×K, b: K×N
// blocks as ShapeOf(g, true) lays them out); false (having written nothing) when it cannot.
bool ExecuteDnnlBf16(const Gemm& g, const uint16_t* a, const uint16_t* b) {
  if (!Dnnl().ok || !HardwareBf16() || g.alpha != 1.0f || g.beta != 0.0f) return false;
  std::shared_ptr<DnnlPrimitive> p = DnnlCache::Get().Find(ShapeOf(g, true));
  if (!p->ok) return false;
  try {
    DnnlState& d = Dnnl();
    dnnl::memory am(p->a, d.engine, const_cast<uint16_t*>(a)), bm(p->b, d.engine, const_cast<uint16_t*>(b)),
        cm(p->c, d.engine, g.c);
    p->prim.execute(d.stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    d.stream.wait();
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

// Runs g through oneDNN; false (having written nothing) when it cannot.
bool RunDnnl(const Gemm& g, bool bf16) {
  if (!Dnnl().ok || g.alpha != 1.0f || g.beta != 0.0f) return false;
  if (bf16) {
    if (!HardwareBf16()) return false;
    const DnnlShape s = ShapeOf(g, true);
    thread_local Bf16Scratch scratch;
    const int64_t a_block = s.m * s.k, b_block = s.k * s.n;
    scratch.a.resize(static_cast<size_t>(s.batch_a * a_block));
    scratch.b.resize(static_cast<size_t>(s.batch_b * b_block));
    // Folded shapes have one packed block; otherwise each batch item's block is converted.
    ToBf16Blocks(g.a, s.batch_a == 1 ? 0 : static_cast<uint64_t>(g.a_stride), s.batch_a, a_block, scratch.a.data());
    ToBf16Blocks(g.b, s.batch_b == 1 ? 0 : static_cast<uint64_t>(g.b_stride), s.batch_b, b_block, scratch.b.data());
    return ExecuteDnnlBf16(g, scratch.a.data(), scratch.b.data());
  }
  std::shared_ptr<DnnlPrimitive> p = DnnlCache::Get().Find(ShapeOf(g, false));
  if (!p->ok) return false;
  try {
    DnnlState& d = Dnnl();
    dnnl::memory am(p->a, d.engine, const_cast<float*>(g.a)), bm(p->b, d.engine, const_cast<float*>(g.b)),
        cm(p->c, d.engine, g.c);
    p->prim.execute(d.stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    d.stream.wait();
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

void SetDnnlThreads(int n) { omp_set_num_threads(n); }

#else  // no oneDNN

bool HardwareBf16() { return false; }
bool HardwareAmx() { return false; }
bool RunDnnl(const Gemm&, bool) { return false; }
bool ExecuteDnnlBf16(const Gemm&, const uint16_t*, const uint16_t*) { return false; }
void ToBf16(const float*, uint16_t*, int64_t) {}
void ToBf16Blocks(const float*, uint64_t, int64_t, int64_t, uint16_t*) {}
void SetDnnlThreads(int) {}

#endif  // MUSE_HAVE_DNNL

// The path mode 3 takes (measured 2026-12-01, 2 vCPUs of a Xeon with AMX, 2 threads; docs/PERFORMANCE.md):
//   - bf16 when every dimension is >= kBf16MinDim and the product has >= kBf16MinFlops: 2.5–4× OpenBLAS
//     on the training step's products (2048×{256,768,1024}×{256,1024} and their gradients); below that
//     the conversions and AMX tile set-up eat the gain (batched 256×32×256 attention: 0.6× fp32);
//   - oneDNN fp32 for batched products (attention heads): 2.3–3.8× OpenBLAS's one call per item;
//   - OpenBLAS otherwise (small and single products, where oneDNN's per-call cost shows).
constexpr int64_t kBf16MinDim = 64;
constexpr double kBf16MinFlops = 2.0 * 128 * 128 * 128;
constexpr double kDnnlBatchedMinFlops = 2.0 * 64 * 64 * 32;
constexpr int64_t kDnnlBatchedMinK = 32;  // 64×(256×32×16): OpenBLAS ~1.8× oneDNN fp32

int PathByShape(const Gemm& g, bool allow_bf16) {
  const double flops = 2.0 * g.batch * static_cast<double>(g.m) * static_cast<double>(g.n) * static_cast<double>(g.k);
  // As oneDNN runs it: a shared right operand folds the batch into the rows (ShapeOf).
  int64_t m = g.m, batch = g.batch;
  if (batch > 1 && g.b_stride == 0 && g.a_stride == g.m * g.k && !g.trans_a) {
    m *= batch;
    batch = 1;
  }
  if (allow_bf16 && HardwareBf16() && std::min({m, g.n, g.k}) >= kBf16MinDim && flops >= kBf16MinFlops)
    return kPathDnnlBf16;
  if (batch > 1 && g.k >= kDnnlBatchedMinK && flops >= kDnnlBatchedMinFlops) return kPathDnnlF32;
  return kPathOpenblas;
}

// Runs g on `path`; returns the path that ran (OpenBLAS when oneDNN could not).
int RunPath(const Gemm& g, int path) {
  if (path != kPathOpenblas && RunDnnl(g, path == kPathDnnlBf16)) return path;
  RunOpenblas(g);
  return kPathOpenblas;
}

// Mode 4: per shape (and bf16 allowance), the fastest path measured at its first call.
struct TuneKey {
  bool allow_bf16, trans_a, trans_b;
  int64_t batch, m, n, k, a_stride, b_stride;
  bool operator==(const TuneKey& o) const {
    return allow_bf16 == o.allow_bf16 && trans_a == o.trans_a && trans_b == o.trans_b && batch == o.batch &&
           m == o.m && n == o.n && k == o.k && a_stride == o.a_stride && b_stride == o.b_stride;
  }
};
struct TuneKeyHash {
  size_t operator()(const TuneKey& s) const {
    uint64_t h = 1469598103934665603ull;
    for (int64_t v : {static_cast<int64_t>(s.allow_bf16) | (static_cast<int64_t>(s.trans_a) << 1) |
                          (static_cast<int64_t>(s.trans_b) << 2),
                      s.batch, s.m, s.n, s.k, s.a_stride, s.b_stride})
      h = (h ^ static_cast<uint64_t>(v)) * 1099511628211ull;
    return static_cast<size_t>(h);
  }
};

std::mutex tune_mutex;
std::unordered_map<TuneKey, int, TuneKeyHash>& TuneTable() {
  static auto* table = new std::unordered_map<TuneKey, int, TuneKeyHash>();
  return *table;
}

int RunTuned(const Gemm& g, bool allow_bf16) {
  const TuneKey key{allow_bf16, g.trans_a, g.trans_b, g.batch, g.m, g.n, g.k, g.a_stride, g.b_stride};
  {
    std::lock_guard<std::mutex> lock(tune_mutex);
    auto it = TuneTable().find(key);
    if (it != TuneTable().end()) return RunPath(g, it->second);
  }
  // Each candidate twice (the first call makes the primitive and warms caches); the best second time wins.
  int best = kPathOpenblas;
  double best_s = 1e300;
  for (int path : {kPathOpenblas, kPathDnnlF32, kPathDnnlBf16}) {
    if (path == kPathDnnlBf16 && !(allow_bf16 && HardwareBf16())) continue;
    double seconds = 0;
    bool ran = true;
    for (int rep = 0; rep < 2 && ran; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      ran = RunPath(g, path) == path;
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    if (ran && seconds < best_s) {
      best_s = seconds;
      best = path;
    }
  }
  {
    std::lock_guard<std::mutex> lock(tune_mutex);
    if (TuneTable().size() >= 4096) TuneTable().clear();
    TuneTable()[key] = best;
  }
  return RunPath(g, best);  // the result comes from the path kept for this shape
}

// matmulBatched(transA, transB, batch, M, N, K, a, aBatchStride, b, bBatchStride, c, alpha, beta,
//               mode, allowBf16) -> path used (see above)
napi_value MatmulBatched(napi_env env, napi_callback_info info) {
  static const char* fn = "matmulBatched";
  Args args;
  if (!GetArgs(env, info, fn, 15, &args)) return nullptr;
  Gemm g;
  bool empty = false, allow_bf16 = false;
  int64_t mode = 0;
  if (!ParseGemm(env, fn, args.values, &g, &empty) || !GetIndex(env, args.values[13], fn, "mode", 4, &mode) ||
      !GetBool(env, args.values[14], fn, "allowBf16", &allow_bf16))
    return nullptr;
  if (empty) return MakeInt(env, kPathOpenblas);
  int path;
  if (mode == kModeTune)
    path = RunTuned(g, allow_bf16);
  else
    path = RunPath(g, mode == kModeRule ? PathByShape(g, allow_bf16) : static_cast<int>(mode));
  return MakeInt(env, path);
}

// ---------------------------------------------------------------------------
// Products with 16-bit weights kept outside the wasm heap
// ---------------------------------------------------------------------------
// aMUSEd's U-ViT has 604M weights stored in F16: 2.4 GB as float32 does not fit the 4 GB wasm heap
// beside CLIP, the VQ-GAN and the activations, and widening them in JavaScript and copying them in
// cost 2.5 s of every 7.9 s pass (docs/PERFORMANCE.md). Here the host copy (a Uint16Array
// anywhere in memory) is read directly: widened into a per-thread scratch for the fp32 paths, or
// converted straight to bf16 for the bf16 path. The result equals matmulBatched's on the widened
// weights bit for bit (same path choice, same bf16 rounding of every operand).

// IEEE half → float, exact (subnormals, infinities and NaN payloads included).
inline float HalfBitsToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    const float magnitude = std::ldexp(static_cast<float>(mant), -24);  // zero or subnormal
    std::memcpy(&bits, &magnitude, 4);
    bits |= sign;
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

void HalfToFloatScalar(const uint16_t* s, float* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = HalfBitsToFloat(s[i]);
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) void HalfToFloatAvx512(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(d + i, _mm512_maskz_cvtph_ps(0xffff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i))));
  HalfToFloatScalar(s + i, d + i, n - i);
}
#endif

// n 16-bit values (kind 0 IEEE half, 1 bfloat16) widened to float32, exactly.
void WidenSerial(int kind, const uint16_t* s, float* d, int64_t n) {
  if (kind == 1) {
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t bits = static_cast<uint32_t>(s[i]) << 16;
      std::memcpy(d + i, &bits, 4);
    }
    return;
  }
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  if (avx512) return HalfToFloatAvx512(s, d, n);
#endif
  HalfToFloatScalar(s, d, n);
}

// Widens n values on the pool (to float32 in `wide`, or on to bf16 in `bf16` when it is given).
void Widen16(int kind, const uint16_t* s, int64_t n, float* wide, uint16_t* bf16) {
  constexpr int64_t kChunk = 1 << 14;
  ParallelFor((n + kChunk - 1) / kChunk, PoolWorkers(static_cast<double>(n), 1 << 17), 1, [&](int64_t c) {
    const int64_t begin = c * kChunk, len = std::min(n, begin + kChunk) - begin;
    if (bf16 == nullptr) return WidenSerial(kind, s + begin, wide + begin, len);
    thread_local std::vector<float> tmp;
    tmp.resize(kChunk);
    WidenSerial(kind, s + begin, tmp.data(), len);
    ToBf16(tmp.data(), bf16 + begin, len);
  });
}

// matmulHalfWeights(x, M, K, w, kind, N, y, mode, allowBf16) -> path used
//   y (M×N) = x (M×K, row-major) · W (K×N, row-major, 16-bit: kind 0 IEEE half, 1 bfloat16).
//   mode and allowBf16 as matmulBatched's; mode 4 (tune) takes the shape rule here.
napi_value MatmulHalfWeights(napi_env env, napi_callback_info info) {
  static const char* fn = "matmulHalfWeights";
  constexpr double kMaxDim = 2147483647.0;
  Args args;
  if (!GetArgs(env, info, fn, 9, &args)) return nullptr;
  F32View x, y;
  U16View w;
  int64_t m, k, kind, n, mode;
  bool allow_bf16 = false;
  if (!GetF32(env, args.values[0], fn, "x", &x) || !GetIndex(env, args.values[1], fn, "M", kMaxDim, &m) ||
      !GetIndex(env, args.values[2], fn, "K", kMaxDim, &k) || !GetU16(env, args.values[3], fn, "w", &w) ||
      !GetIndex(env, args.values[4], fn, "kind", 1, &kind) || !GetIndex(env, args.values[5], fn, "N", kMaxDim, &n) ||
      !GetF32(env, args.values[6], fn, "y", &y) || !GetIndex(env, args.values[7], fn, "mode", 4, &mode) ||
      !GetBool(env, args.values[8], fn, "allowBf16", &allow_bf16))
    return nullptr;
  const uint64_t x_len = static_cast<uint64_t>(m) * static_cast<uint64_t>(k);
  const uint64_t w_len = static_cast<uint64_t>(k) * static_cast<uint64_t>(n);
  const uint64_t y_len = static_cast<uint64_t>(m) * static_cast<uint64_t>(n);
  if (y_len == 0) return MakeInt(env, kPathOpenblas);
  if (!NeedLength(env, fn, "x", x, x_len) || !NeedLength(env, fn, "y", y, y_len) ||
      !NeedLength(env, fn, "w", w, w_len))
    return nullptr;
  if (Overlaps(y.data, y_len, x.data, x_len) || Overlaps(y.data, y_len, w.data, w_len)) {
    ThrowRange(env, std::string(fn) + ": y overlaps x or w");
    return nullptr;
  }
  if (k == 0) {
    std::fill(y.data, y.data + y_len, 0.0f);
    return MakeInt(env, kPathOpenblas);
  }
  Gemm g{false, false, 1, m, n, k, 0, 0, 1.0f, 0.0f, x.data, nullptr, y.data, x_len, w_len, y_len};
  int path = mode <= kPathDnnlBf16 ? static_cast<int>(mode) : PathByShape(g, allow_bf16);
  if (path == kPathDnnlBf16 && HardwareBf16()) {
    thread_local std::vector<uint16_t> a16, b16;
    a16.resize(x_len);
    ToBf16Blocks(x.data, 0, 1, static_cast<int64_t>(x_len), a16.data());
    const uint16_t* b = w.data;  // bf16 weights are already what the product reads
    if (kind == 0) {
      b16.resize(w_len);
      Widen16(0, w.data, static_cast<int64_t>(w_len), nullptr, b16.data());
      b = b16.data();
    }
    if (ExecuteDnnlBf16(g, a16.data(), b)) return MakeInt(env, kPathDnnlBf16);
  }
  if (path == kPathDnnlBf16) path = kPathOpenblas;  // as RunPath falls back
  thread_local std::vector<float> wide;
  wide.resize(w_len);
  Widen16(static_cast<int>(kind), w.data, static_cast<int64_t>(w_len), wide.data(), nullptr);
  g.b = wide.data();
  return MakeInt(env, RunPath(g, path));
}

// erfForward(x, y, n): y = erf(x), as torch's exact GELU needs, on the pool (tfjs-wasm's Erf is as
// accurate but runs on one thread).
napi_value ErfForward(napi_env env, napi_callback_info info) {
  return MapSpans(env, info, "erfForward", [](const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = std::erf(x[i]);
  });
}

// setThreads(n): number of threads OpenBLAS (and sgemmBatched's batch
// parallelism) may use; n >= 1.
napi_value SetThreads(napi_env env, napi_callback_info info) {
  Args args;
  if (!GetArgs(env, info, "setThreads", 1, &args)) return nullptr;
  int64_t n;
  if (!GetIndex(env, args.values[0], "setThreads", "n", 1024, &n)) return nullptr;
  if (n < 1) {
    ThrowRange(env, "setThreads: n must be >= 1");
    return nullptr;
  }
  openblas_set_num_threads(static_cast<int>(n));
  SetDnnlThreads(static_cast<int>(n));
  return Undefined(env);
}

napi_value GetThreads(napi_env env, napi_callback_info /*info*/) {
  return MakeInt(env, openblas_get_num_threads());
}

// info(): { blas: string, threads: number }
napi_value Info(napi_env env, napi_callback_info /*info*/) {
  napi_value obj, blas, threads;
  const char* config = openblas_get_config();
  if (!NapiOk(env, napi_create_object(env, &obj), "napi_create_object") ||
      !NapiOk(env, napi_create_string_utf8(env, config ? config : "OpenBLAS", NAPI_AUTO_LENGTH, &blas),
              "napi_create_string_utf8") ||
      !NapiOk(env, napi_set_named_property(env, obj, "blas", blas), "napi_set_named_property"))
    return nullptr;
  threads = MakeInt(env, openblas_get_num_threads());
  if (threads == nullptr || !NapiOk(env, napi_set_named_property(env, obj, "threads", threads), "napi_set_named_property"))
    return nullptr;
  // oneDNN: its version (null when not built in or it failed to start), the ISA it runs, and
  // whether the CPU has bf16 units (AVX-512 BF16 / AMX) it can use.
  napi_value dnnl_value, isa_value, bf16_value, amx_value, vector_value, attention_bf16_value;
  std::string isa = "none";
#if defined(MUSE_HAVE_DNNL)
  if (Dnnl().ok) {
    const dnnl_version_t* ver = dnnl_version();
    const std::string version = std::to_string(ver->major) + "." + std::to_string(ver->minor) + "." +
                                std::to_string(ver->patch);
    if (!NapiOk(env, napi_create_string_utf8(env, version.c_str(), NAPI_AUTO_LENGTH, &dnnl_value), "string"))
      return nullptr;
    isa = IsaName(Dnnl().isa);
  } else if (!NapiOk(env, napi_get_null(env, &dnnl_value), "napi_get_null")) {
    return nullptr;
  }
#else
  if (!NapiOk(env, napi_get_null(env, &dnnl_value), "napi_get_null")) return nullptr;
#endif
  if (!NapiOk(env, napi_create_string_utf8(env, isa.c_str(), NAPI_AUTO_LENGTH, &isa_value), "string") ||
      !NapiOk(env, napi_get_boolean(env, HardwareBf16(), &bf16_value), "napi_get_boolean") ||
      !NapiOk(env, napi_get_boolean(env, HardwareAmx(), &amx_value), "napi_get_boolean") ||
      !NapiOk(env, napi_create_string_utf8(env, vmath::IsaName(), NAPI_AUTO_LENGTH, &vector_value), "string") ||
      !NapiOk(env, napi_set_named_property(env, obj, "vectorIsa", vector_value), "napi_set_named_property") ||
      // attentionBf16: the attention calls may run their products in bf16 (AVX-512 BF16; no oneDNN).
      !NapiOk(env, napi_get_boolean(env, bf16_gemm::Available(), &attention_bf16_value), "napi_get_boolean") ||
      !NapiOk(env, napi_set_named_property(env, obj, "attentionBf16", attention_bf16_value),
              "napi_set_named_property") ||
      !NapiOk(env, napi_set_named_property(env, obj, "dnnl", dnnl_value), "napi_set_named_property") ||
      !NapiOk(env, napi_set_named_property(env, obj, "isa", isa_value), "napi_set_named_property") ||
      !NapiOk(env, napi_set_named_property(env, obj, "bf16", bf16_value), "napi_set_named_property") ||
      !NapiOk(env, napi_set_named_property(env, obj, "amx", amx_value), "napi_set_named_property"))
    return nullptr;
  return obj;
}

// ---------------------------------------------------------------------------
// 4. Registration
// ---------------------------------------------------------------------------

struct Export {
  const char* name;
  napi_callback fn;
};

constexpr Export kExports[] = {
    {"sgemmBatched", SgemmBatched},
    {"matmulBatched", MatmulBatched},
    {"matmulHalfWeights", MatmulHalfWeights},
    {"erfForward", ErfForward},
    {"attentionStridedForward", AttentionStridedForward},
    {"attentionStridedBackward", AttentionStridedBackward},
    {"setThreads", SetThreads},
    {"getThreads", GetThreads},
    {"info", Info},
    {"geluForward", GeluForward},
    {"geluBackward", GeluBackward},
    {"expForward", ExpForward},
    {"softmaxForward", SoftmaxForward},
    {"sumRows", SumRows},
    {"addCyclic", AddCyclic},
    {"softmaxBackward", SoftmaxBackward},
    {"softCrossEntropyForward", SoftCrossEntropyForward},
    {"softCrossEntropyBackward", SoftCrossEntropyBackward},
    {"layerNormForward", LayerNormForward},
    {"layerNormBackward", LayerNormBackward},
    {"adamwUpdate", AdamwUpdate},
    {"siluForward", SiluForward},
    {"siluBackward", SiluBackward},
    {"groupNormForward", GroupNormForward},
    {"groupNormBackward", GroupNormBackward},
    {"im2col", Im2col},
    {"col2imAdd", Col2imAdd},
};

}  // namespace

// Context-aware (safe to load from worker_threads).
NAPI_MODULE_INIT() {
  for (const Export& e : kExports) {
    napi_value fn;
    if (napi_create_function(env, e.name, NAPI_AUTO_LENGTH, e.fn, nullptr, &fn) != napi_ok ||
        napi_set_named_property(env, exports, e.name, fn) != napi_ok)
      return nullptr;
  }
  return exports;
}
