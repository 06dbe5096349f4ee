// CUDA matmul (see matmul.h): cuBLASLt strided-batched GEMMs with F32 accumulation (tensor cores
// for F16/BF16; TF32 for F32 only when mantissa::cuda::allow_tf32()), bias and bias+ReLU in the
// epilogue, and cuBLAS's cublasGemmStridedBatchedEx where cuBLASLt offers no algorithm. Handles
// and workspaces are kept per device (and stream), plans (descriptors + heuristic choice) in an
// LRU-bounded map keyed by everything the heuristic saw.
#include <cublasLt.h>
#include <cublas_v2.h>

#include <array>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/cuda_flags.h"
#include "core/kernels/cuda_common.cuh"
#include "core/kernels/device_memory.h"
#include "core/kernels/matmul.h"
#include "core/kernels/matmul_layout.h"

namespace mantissa::kernels::cuda {

namespace {

// cuBLASLt's split-K and stream-K algorithms need scratch; 32 MiB covers every algorithm the
// heuristic offers for the sizes we run (the figure PyTorch settled on for Hopper).
constexpr size_t kWorkspaceBytes = size_t(32) << 20;
// Plans are cheap (a few hundred bytes of host descriptors); the bound only keeps a process that
// sweeps many shapes from growing without limit.
constexpr size_t kMaxPlans = 1024;

[[noreturn]] void throw_cublas_error(cublasStatus_t st, const std::string& op, const char* call) {
  MANTISSA_ERROR(op, ": ", call, " failed: ", cublasGetStatusName(st), ": ", cublasGetStatusString(st));
}

#define MANTISSA_CUBLAS_CHECK(expr, op)                                            \
  do {                                                                             \
    cublasStatus_t mantissa_status_ = (expr);                                      \
    if (mantissa_status_ != CUBLAS_STATUS_SUCCESS) throw_cublas_error(mantissa_status_, op, #expr); \
  } while (0)

// The cuBLAS type of each dtype, from dtype.def's cuBLAS column.
cudaDataType_t cuda_data_type(DType t) {
  switch (t) {
#define MANTISSA_DTYPE(name, ctype, size, kind, acc, cublas, ...) \
  case DType::name:                                               \
    return cublas;
#include "core/dtype.def"
#undef MANTISSA_DTYPE
  }
  MANTISSA_ASSERT(false, "matmul: bad dtype value ", static_cast<int>(t));
  return CUDA_R_32F;
}

// ---- per-device state ------------------------------------------------------------------------

// Both handles are created once per device and never destroyed: destroying them during static
// destruction could run after the CUDA runtime has shut down. A cuBLASLt handle holds no
// per-call state (the stream is an argument), so threads share it; the legacy cuBLAS handle
// carries its stream and workspace, so calls through it hold legacy_mutex.
struct DeviceState {
  cublasLtHandle_t lt = nullptr;
  cublasHandle_t legacy = nullptr;
  std::mutex legacy_mutex;
  // One workspace per stream: two streams may run GEMMs at the same time, while work queued on
  // one stream is ordered, so GEMMs on the same stream can share one buffer.
  std::map<cudaStream_t, void*> workspaces;
};

std::mutex g_state_mutex;  // guards the device table, each DeviceState's workspaces and the plan cache

DeviceState& device_state(int device) {
  static auto* devices = new std::map<int, std::unique_ptr<DeviceState>>();
  auto& slot = (*devices)[device];
  if (!slot) {
    auto st = std::make_unique<DeviceState>();
    MANTISSA_CUBLAS_CHECK(cublasLtCreate(&st->lt), "matmul");
    MANTISSA_CUBLAS_CHECK(cublasCreate(&st->legacy), "matmul");
    // Split-K partial sums in F32 even when the output is 16-bit: the F32-accumulation promise.
    MANTISSA_CUBLAS_CHECK(
        cublasSetMathMode(st->legacy, cublasMath_t(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)),
        "matmul");
    slot = std::move(st);
  }
  return *slot;
}

void* workspace(DeviceState& st, int device, cudaStream_t stream) {
  void*& ws = st.workspaces[stream];
  if (ws == nullptr) ws = device_alloc(Device(DeviceType::CUDA, device), kWorkspaceBytes);
  return ws;
}

// ---- the problem -----------------------------------------------------------------------------

enum class Epilogue : int { None = 0, Bias = 1, Relu = 2, BiasRelu = 3 };

// One strided-batched GEMM in row-major terms: out[i] (m x n) = a[i] (m x k) @ b[i] (k x n).
struct Problem {
  int device = 0;
  DType dtype = DType::F32;
  bool tf32 = false;
  Epilogue epilogue = Epilogue::None;
  int64_t m = 0, n = 0, k = 0, batch = 1;
  gemm::MatLayout la, lb;
  int64_t a_bs = 0, b_bs = 0, o_bs = 0;  // batch strides in elements (0: broadcast operand)
  // Largest power of two (<= 256 bytes) dividing every address a call will pass: cuBLASLt's
  // heuristic assumes 256 unless told, and picks vectorized kernels from these.
  uint32_t align_a = 0, align_b = 0, align_out = 0, align_bias = 0;

  bool has_bias() const { return epilogue == Epilogue::Bias || epilogue == Epilogue::BiasRelu; }
  bool has_relu() const { return epilogue == Epilogue::Relu || epilogue == Epilogue::BiasRelu; }
  bool low_precision_out() const { return dtype == DType::F16 || dtype == DType::BF16; }

  // cuBLAS is column-major: the row-major product out = a @ b is the column-major product
  // out^T (n x m) = b^T (n x k) @ a^T (k x m), so cuBLAS's "A" is our b and its "B" our a.
  // A row-major operand is a column-major transposed one with the same leading dimension.
  cublasOperation_t op_b() const { return lb.cs == 1 ? CUBLAS_OP_N : CUBLAS_OP_T; }
  cublasOperation_t op_a() const { return la.cs == 1 ? CUBLAS_OP_N : CUBLAS_OP_T; }
  int64_t ld_b() const { return lb.cs == 1 ? lb.rs : lb.cs; }
  int64_t ld_a() const { return la.cs == 1 ? la.rs : la.cs; }

  cublasComputeType_t compute_type() const {
    if (dtype == DType::F64) return CUBLAS_COMPUTE_64F;
    // F16/BF16 inputs: tensor cores with F32 products and sums. F32 inputs: full F32 FMA
    // unless the user allowed TF32 (inputs rounded to 10 mantissa bits).
    if (dtype == DType::F32 && tf32) return CUBLAS_COMPUTE_32F_FAST_TF32;
    return CUBLAS_COMPUTE_32F;
  }
  cudaDataType_t scale_type() const { return dtype == DType::F64 ? CUDA_R_64F : CUDA_R_32F; }

  std::string describe() const {
    return ::mantissa::detail::concat("[", batch, ", ", m, ", ", k, "] @ [", batch, ", ", k, ", ", n, "] in ", dtype_name(dtype),
                          has_bias() ? " with bias" : "", has_relu() ? " and relu" : "");
  }

  using Key = std::array<int64_t, 19>;
  Key key() const {
    return {device, static_cast<int64_t>(dtype), tf32, static_cast<int64_t>(epilogue), m, n, k, batch, la.rs,
            la.cs, lb.rs, lb.cs, a_bs, b_bs, o_bs, align_a, align_b, align_out, align_bias};
  }
};

struct KeyHash {
  size_t operator()(const Problem::Key& key) const {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int64_t v : key) h = (h ^ static_cast<uint64_t>(v)) * 0x100000001b3ull + (h >> 29);
    return static_cast<size_t>(h);
  }
};

uint32_t alignment_of(uint64_t bits) {
  if (bits == 0) return 256;
  const uint64_t low = bits & (~bits + 1);
  return static_cast<uint32_t>(low < 256 ? low : 256);
}

// ---- plans -----------------------------------------------------------------------------------

enum class Route {
  LtFused,  // cuBLASLt with the epilogue (bias and/or ReLU) inside the GEMM
  LtPlain,  // cuBLASLt without epilogue; bias pre-written into out (beta = 1), ReLU after
  Legacy,   // cublasGemmStridedBatchedEx; epilogue as for LtPlain
};

struct Plan {
  Route route = Route::Legacy;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t layout_b = nullptr, layout_a = nullptr, layout_out = nullptr;
  cublasLtMatmulAlgo_t algo{};
  // The bias pointer is an attribute of desc: set and launch happen under this lock.
  std::mutex bias_mutex;

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    // Host-only frees; a failure here has nothing to report to.
    if (desc) cublasLtMatmulDescDestroy(desc);
    if (layout_b) cublasLtMatrixLayoutDestroy(layout_b);
    if (layout_a) cublasLtMatrixLayoutDestroy(layout_a);
    if (layout_out) cublasLtMatrixLayoutDestroy(layout_out);
  }
};

struct PreferenceGuard {
  cublasLtMatmulPreference_t pref = nullptr;
  ~PreferenceGuard() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
  }
};

template <typename V>
void set_desc(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const V& v) {
  MANTISSA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, attr, &v, sizeof(v)), "matmul");
}
template <typename V>
void set_layout(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr, const V& v) {
  MANTISSA_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, attr, &v, sizeof(v)), "matmul");
}
template <typename V>
void set_pref(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t attr, const V& v) {
  MANTISSA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p, attr, &v, sizeof(v)), "matmul");
}

cublasLtMatrixLayout_t make_layout(cudaDataType_t dt, uint64_t rows, uint64_t cols, int64_t ld, int64_t batch,
                                   int64_t batch_stride) {
  cublasLtMatrixLayout_t l = nullptr;
  MANTISSA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, dt, rows, cols, ld), "matmul");
  if (batch > 1) {
    try {
      set_layout(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, static_cast<int32_t>(batch));
      set_layout(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, batch_stride);
    } catch (...) {
      cublasLtMatrixLayoutDestroy(l);
      throw;
    }
  }
  return l;
}

// A cuBLASLt plan for p, with p's epilogue fused or without any; null when the heuristic has
// no algorithm for it (an unsupported type/epilogue/alignment combination).
std::shared_ptr<Plan> build_lt_plan(cublasLtHandle_t handle, const Problem& p, bool fuse, const void* bias_ptr) {
  auto plan = std::make_shared<Plan>();
  plan->route = fuse ? Route::LtFused : Route::LtPlain;
  const cudaDataType_t dt = cuda_data_type(p.dtype);
  MANTISSA_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, p.compute_type(), p.scale_type()), "matmul");
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, p.op_b());
  set_desc(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, p.op_a());
  if (fuse) {
    cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_DEFAULT;
    switch (p.epilogue) {
      case Epilogue::None: ep = CUBLASLT_EPILOGUE_DEFAULT; break;
      case Epilogue::Bias: ep = CUBLASLT_EPILOGUE_BIAS; break;
      case Epilogue::Relu: ep = CUBLASLT_EPILOGUE_RELU; break;
      case Epilogue::BiasRelu: ep = CUBLASLT_EPILOGUE_RELU_BIAS; break;
    }
    set_desc(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, ep);
    if (p.has_bias()) {
      // The bias (one value per row of cuBLAS's column-major D = per column of our out) is in
      // out's dtype, added in F32 (scale type) before the ReLU and the one rounding. Every batch
      // entry reads the same vector.
      set_desc(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias_ptr);
      if (p.batch > 1) set_desc(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, int64_t(0));
    }
  }
  // cuBLAS "A" = b^T (n x k), "B" = a^T (k x m), D = out^T (n x m, leading dimension n).
  const bool b_n = p.op_b() == CUBLAS_OP_N, a_n = p.op_a() == CUBLAS_OP_N;
  plan->layout_b = make_layout(dt, b_n ? p.n : p.k, b_n ? p.k : p.n, p.ld_b(), p.batch, p.b_bs);
  plan->layout_a = make_layout(dt, a_n ? p.k : p.m, a_n ? p.m : p.k, p.ld_a(), p.batch, p.a_bs);
  plan->layout_out = make_layout(dt, p.n, p.m, p.n, p.batch, p.o_bs);

  PreferenceGuard pg;
  MANTISSA_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pg.pref), "matmul");
  set_pref(pg.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, static_cast<uint64_t>(kWorkspaceBytes));
  if (p.low_precision_out()) {
    // Split-K algorithms that reduce in the output type (or in place in out) would sum partial
    // results in F16/BF16: only F32 (compute type) reductions keep the F32-accumulation promise.
    set_pref(pg.pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
             static_cast<uint32_t>(CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE));
  }
  set_pref(pg.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, p.align_b);
  set_pref(pg.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, p.align_a);
  set_pref(pg.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, p.align_out);
  set_pref(pg.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, p.align_out);

  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(handle, plan->desc, plan->layout_b, plan->layout_a, plan->layout_out,
                                     plan->layout_out, pg.pref, 1, &result, &found);
  if (st == CUBLAS_STATUS_NOT_SUPPORTED || (st == CUBLAS_STATUS_SUCCESS && (found == 0 || result.state != CUBLAS_STATUS_SUCCESS)))
    return nullptr;
  if (st != CUBLAS_STATUS_SUCCESS) throw_cublas_error(st, "matmul " + p.describe(), "cublasLtMatmulAlgoGetHeuristic");
  plan->algo = result.algo;
  return plan;
}

// LRU map from Problem::key() to plans. Callers hold g_state_mutex.
class PlanCache {
 public:
  std::shared_ptr<Plan> find(const Problem::Key& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->second;
  }
  void insert(const Problem::Key& key, std::shared_ptr<Plan> plan) {
    lru_.emplace_front(key, std::move(plan));
    index_[key] = lru_.begin();
    if (lru_.size() > kMaxPlans) {
      // A plan in use elsewhere stays alive through its shared_ptr.
      index_.erase(lru_.back().first);
      lru_.pop_back();
    }
  }

 private:
  std::list<std::pair<Problem::Key, std::shared_ptr<Plan>>> lru_;
  std::unordered_map<Problem::Key, std::list<std::pair<Problem::Key, std::shared_ptr<Plan>>>::iterator, KeyHash>
      index_;
};

PlanCache& plan_cache() {
  static auto* cache = new PlanCache();  // never destroyed, like the handles its plans serve
  return *cache;
}

std::shared_ptr<Plan> get_plan(DeviceState& st, const Problem& p, const void* bias_ptr) {
  const Problem::Key key = p.key();
  if (auto plan = plan_cache().find(key)) return plan;
  std::shared_ptr<Plan> plan;
  if (p.epilogue != Epilogue::None) plan = build_lt_plan(st.lt, p, /*fuse=*/true, bias_ptr);
  if (!plan) plan = build_lt_plan(st.lt, p, /*fuse=*/false, bias_ptr);
  if (!plan) {
    plan = std::make_shared<Plan>();
    plan->route = Route::Legacy;
  }
  plan_cache().insert(key, plan);
  return plan;
}

// ---- small elementwise helpers ------------------------------------------------------------------

struct Identity {
  template <typename V>
  __device__ V operator()(V v) const {
    return v;
  }
};
// NaN stays NaN (the comparison is false), as PyTorch's relu.
struct Relu {
  template <typename V>
  __device__ V operator()(V v) const {
    return v < V(0) ? V(0) : v;
  }
};

// A fresh contiguous copy of t on its device (exact: same dtype).
Tensor contiguous_copy(const Tensor& t) {
  Tensor c = empty(t.sizes(), TensorOptions(t.dtype()).device(t.device()));
  visit_dtype<kFloatTypes>(t.dtype(), "matmul", [&]<typename T>() { cuda_map<T, T>("matmul", Identity{}, c, {t}); });
  return c;
}

// out[..., i, j] = bias[j]
void broadcast_bias(const Tensor& out, const Tensor& bias) {
  visit_dtype<kFloatTypes>(out.dtype(), "matmul", [&]<typename T>() { cuda_map<T, T>("matmul", Identity{}, out, {bias}); });
}

void relu_inplace(const Tensor& out) {
  visit_dtype<kFloatTypes>(out.dtype(), "matmul_relu", [&]<typename T>() { cuda_map<T, T>("matmul_relu", Relu{}, out, {out}); });
}

// ---- launch --------------------------------------------------------------------------------------

struct Scalars {
  float f_one = 1.0f, f_beta = 0.0f;
  double d_one = 1.0, d_beta = 0.0;
  explicit Scalars(bool accumulate) : f_beta(accumulate ? 1.0f : 0.0f), d_beta(accumulate ? 1.0 : 0.0) {}
  const void* alpha(const Problem& p) const { return p.dtype == DType::F64 ? static_cast<const void*>(&d_one) : &f_one; }
  const void* beta(const Problem& p) const { return p.dtype == DType::F64 ? static_cast<const void*>(&d_beta) : &f_beta; }
};

}  // namespace

void matmul(const Tensor& out, const Tensor& a_in, const Tensor& b_in, const Tensor& bias_in, bool relu) {
  if (out.numel() == 0) return;
  MANTISSA_CHECK(is_floating(out.dtype()), "matmul: dtype ", out.dtype(),
                 " is not supported on CUDA (expected one of F64, F32, F16, BF16)");
  DeviceGuard guard(out);
  const cudaStream_t stream = stream_for(out);
  const int device = out.device().index;
  const int64_t m = out.size(-2), n = out.size(-1), k = a_in.size(-1);

  if (k == 0) {
    // An empty sum: out = bias (or 0), then the ReLU.
    MANTISSA_CUDA_CHECK(cudaMemsetAsync(out.data_ptr(), 0, out.nbytes(), stream), "matmul");
    if (bias_in.defined()) broadcast_bias(out, bias_in);
    if (relu) relu_inplace(out);
    return;
  }

  // Matrices cuBLAS cannot address through (row stride, column stride, batch stride) are copied
  // into the default layout; expanded (stride-0) batch dims are passed as broadcasts.
  const Tensor a = gemm::layout_usable(a_in, true) ? a_in : contiguous_copy(a_in);
  const Tensor b = gemm::layout_usable(b_in, true) ? b_in : contiguous_copy(b_in);
  Tensor bias = bias_in;
  if (bias.defined() && n > 1 && bias.stride(0) != 1) bias = contiguous_copy(bias_in);

  std::vector<gemm::BatchDim> outer = gemm::batch_dims(out, a, b);
  Problem p;
  p.device = device;
  p.dtype = out.dtype();
  p.tf32 = p.dtype == DType::F32 && ::mantissa::cuda::allow_tf32();
  p.epilogue = static_cast<Epilogue>((bias.defined() ? 1 : 0) | (relu ? 2 : 0));
  p.m = m;
  p.n = n;
  p.k = k;
  p.la = gemm::matrix_layout(m, k, a.stride(-2), a.stride(-1));
  p.lb = gemm::matrix_layout(k, n, b.stride(-2), b.stride(-1));
  MANTISSA_ASSERT(p.la.ok && p.lb.ok, "matmul: operand layouts after the copy");
  if (!outer.empty()) {
    p.batch = outer.back().size;
    p.a_bs = outer.back().sa;
    p.b_bs = outer.back().sb;
    p.o_bs = outer.back().so;
    outer.pop_back();
  }
  MANTISSA_CHECK(p.batch <= INT32_MAX, "matmul: ", p.batch, " matrices in one batch dim exceed cuBLAS's limit of ",
                 INT32_MAX, " (", p.describe(), ")");

  const uint64_t es = out.element_size();
  const char* pa = static_cast<const char*>(a.data_ptr());
  const char* pb = static_cast<const char*>(b.data_ptr());
  char* po = static_cast<char*>(out.data_ptr());
  uint64_t bits_a = reinterpret_cast<uintptr_t>(pa) | static_cast<uint64_t>(p.a_bs) * es;
  uint64_t bits_b = reinterpret_cast<uintptr_t>(pb) | static_cast<uint64_t>(p.b_bs) * es;
  uint64_t bits_o = reinterpret_cast<uintptr_t>(po) | static_cast<uint64_t>(p.o_bs) * es;
  for (const gemm::BatchDim& d : outer) {
    bits_a |= static_cast<uint64_t>(d.sa) * es;
    bits_b |= static_cast<uint64_t>(d.sb) * es;
    bits_o |= static_cast<uint64_t>(d.so) * es;
  }
  p.align_a = alignment_of(bits_a);
  p.align_b = alignment_of(bits_b);
  p.align_out = alignment_of(bits_o);
  const void* bias_ptr = bias.defined() ? bias.data_ptr() : nullptr;
  p.align_bias = bias.defined() ? alignment_of(reinterpret_cast<uintptr_t>(bias_ptr)) : 0;

  DeviceState* st = nullptr;
  std::shared_ptr<Plan> plan;
  void* ws = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_state_mutex);
    st = &device_state(device);
    ws = workspace(*st, device, stream);
    plan = get_plan(*st, p, bias_ptr);
  }

  // Without a fused epilogue the bias is written into out first and the GEMM adds onto it
  // (beta = 1): the same F32 sum acc + bias and one rounding as the epilogue.
  const bool fused = plan->route == Route::LtFused;
  if (!fused && bias.defined()) broadcast_bias(out, bias);
  const Scalars s(!fused && bias.defined());
  const std::string what = "matmul " + p.describe();
  const cudaDataType_t dt = cuda_data_type(p.dtype);

  gemm::for_outer(outer, [&](int64_t oa, int64_t ob, int64_t oo) {
    const void* ca = pa + oa * static_cast<int64_t>(es);
    const void* cb = pb + ob * static_cast<int64_t>(es);
    void* co = po + oo * static_cast<int64_t>(es);
    if (plan->route == Route::Legacy) {
      std::lock_guard<std::mutex> lock(st->legacy_mutex);
      MANTISSA_CUBLAS_CHECK(cublasSetStream(st->legacy, stream), what);
      MANTISSA_CUBLAS_CHECK(cublasSetWorkspace(st->legacy, ws, kWorkspaceBytes), what);
      MANTISSA_CUBLAS_CHECK(cublasGemmStridedBatchedEx_64(st->legacy, p.op_b(), p.op_a(), p.n, p.m, p.k, s.alpha(p), cb,
                                                          dt, p.ld_b(), p.b_bs, ca, dt, p.ld_a(), p.a_bs, s.beta(p), co,
                                                          dt, p.n, p.o_bs, p.batch, p.compute_type(), CUBLAS_GEMM_DEFAULT),
                            what);
      return;
    }
    std::unique_lock<std::mutex> bias_lock(plan->bias_mutex, std::defer_lock);
    if (fused && bias.defined()) {
      bias_lock.lock();
      set_desc(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias_ptr);
    }
    MANTISSA_CUBLAS_CHECK(cublasLtMatmul(st->lt, plan->desc, s.alpha(p), cb, plan->layout_b, ca, plan->layout_a,
                                         s.beta(p), co, plan->layout_out, co, plan->layout_out, &plan->algo, ws,
                                         kWorkspaceBytes, stream),
                          what);
  });
  if (!fused && relu) relu_inplace(out);
}

}  // namespace mantissa::kernels::cuda
