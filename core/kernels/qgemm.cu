// CUDA int8 linear / conv2d / dynamic linear (see qgemm.h): activations as s8 (u8 codes shifted
// by 128), an int32 GEMM D = x8 . w^T through cuBLASLt (int8 tensor cores) where its int8 layout
// rules hold, else a tiled __dp4a kernel, then one epilogue that removes the zero-point term with
// the weights' row sums and requantizes (or dequantizes) exactly as the CPU reference does.
#include <cublasLt.h>
#include <cublas_v2.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "core/kernels/cuda_common.cuh"
#include "core/kernels/device_memory.h"
#include "core/kernels/qgemm.h"

namespace mantissa::kernels::cuda {

namespace {

// Exactness. With x8 = x - 128 (u8) or x (s8) and zp8 = x_zp - 128 (u8) or x_zp (s8):
//   acc = sum_k (x - x_zp) w = sum_k x8 w - zp8 * rowsum(w).
// |x8|, |w|, |zp8| <= 128 and the depth is at most 65536 (checked by the caller), so every partial
// sum of x8 w and the product zp8 * rowsum stay within 2^30: the GEMM's int32 accumulation never
// wraps, whatever order cuBLASLt sums in, and the difference (formed in int64) is the reference's
// exact accumulator.

[[noreturn]] void throw_cublas(cublasStatus_t st, const char* op, const char* call) {
  MANTISSA_ERROR(op, ": ", call, " failed: ", cublasGetStatusName(st), ": ", cublasGetStatusString(st));
}

#define QGEMM_CUBLAS_CHECK(expr, op)                                                  \
  do {                                                                                \
    cublasStatus_t qgemm_status_ = (expr);                                            \
    if (qgemm_status_ != CUBLAS_STATUS_SUCCESS) throw_cublas(qgemm_status_, op, #expr); \
  } while (0)

constexpr size_t kMaxWorkspace = size_t(8) << 20;
constexpr size_t kMaxPlans = 512;

// ---- the int32 GEMM: D[g] (rows x cols, row-major) = A[g] (rows x k) . B[g] (cols x k)^T --------

struct IGemm {
  const int8_t* a = nullptr;  // activations, rows x k, row-major
  const int8_t* b = nullptr;  // weights, cols x k, row-major
  int32_t* d = nullptr;       // rows x cols, row-major
  int64_t rows = 0, cols = 0, k = 0, batch = 1;
  int64_t a_bs = 0, b_bs = 0, d_bs = 0;  // batch strides in elements
};

// Four consecutive k of one row packed little-endian into a word; bytes past k (or rows past the
// matrix) are 0 and add nothing to a __dp4a product.
__device__ __forceinline__ int pack4(const int8_t* m, int64_t r, int64_t nr, int64_t kk, int64_t k) {
  if (r >= nr) return 0;
  const int8_t* p = m + r * k;
  uint32_t v = 0;
#pragma unroll
  for (int j = 0; j < 4; ++j)
    if (kk + j < k) v |= static_cast<uint32_t>(static_cast<uint8_t>(p[kk + j])) << (8 * j);
  return static_cast<int>(v);
}

constexpr int kTile = 64;                // rows and cols of D per block
constexpr int kTileK = 32;               // k per shared-memory stage
constexpr int kWords = kTileK / 4;       // packed words per row and stage
constexpr int kGemmThreads = 256;        // 16 x 16 threads, 4 x 4 outputs each

// Any k (odd included), any alignment: bytes are gathered one by one into packed words, so this
// is the fallback for what cuBLASLt's int8 kernels refuse. Shared memory holds the words
// k-major ([word][row]) so each thread reads its 4 rows / 4 cols as one 16-byte vector.
__global__ void __launch_bounds__(kGemmThreads) igemm_dp4a_kernel(IGemm p) {
  __shared__ __align__(16) int as[kWords][kTile];
  __shared__ __align__(16) int bs[kWords][kTile];
  const int64_t g = blockIdx.z;
  const int8_t* a = p.a + g * p.a_bs;
  const int8_t* b = p.b + g * p.b_bs;
  int32_t* d = p.d + g * p.d_bs;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kTile, col0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  int acc[4][4] = {};
  for (int64_t k0 = 0; k0 < p.k; k0 += kTileK) {
    for (int t = tid; t < kWords * kTile; t += kGemmThreads) {
      const int w = t % kWords, r = t / kWords;
      const int64_t kk = k0 + 4 * w;
      as[w][r] = pack4(a, row0 + r, p.rows, kk, p.k);
      bs[w][r] = pack4(b, col0 + r, p.cols, kk, p.k);
    }
    __syncthreads();
#pragma unroll
    for (int w = 0; w < kWords; ++w) {
      const int4 av = *reinterpret_cast<const int4*>(&as[w][ty * 4]);
      const int4 bv = *reinterpret_cast<const int4*>(&bs[w][tx * 4]);
      const int ar[4] = {av.x, av.y, av.z, av.w};
      const int br[4] = {bv.x, bv.y, bv.z, bv.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = __dp4a(ar[i], br[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t r = row0 + ty * 4 + i;
    if (r >= p.rows) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t c = col0 + tx * 4 + j;
      if (c < p.cols) d[r * p.cols + c] = acc[i][j];
    }
  }
}

void igemm_dp4a(const IGemm& p, cudaStream_t s, const char* op) {
  const int64_t gx = (p.rows + kTile - 1) / kTile, gy = (p.cols + kTile - 1) / kTile;
  MANTISSA_CHECK(gx <= INT32_MAX && gy <= 65535, op, ": an int8 GEMM of ", p.rows, " x ", p.cols,
                 " outputs exceeds the CUDA grid");
  // gridDim.z is at most 65535: larger batches (groups) go in several launches.
  for (int64_t g0 = 0; g0 < p.batch; g0 += 65535) {
    IGemm q = p;
    q.a += g0 * p.a_bs;
    q.b += g0 * p.b_bs;
    q.d += g0 * p.d_bs;
    q.batch = std::min<int64_t>(65535, p.batch - g0);
    const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy), static_cast<unsigned>(q.batch));
    igemm_dp4a_kernel<<<grid, kGemmThreads, 0, s>>>(q);
    MANTISSA_CUDA_LAUNCH_CHECK(op);
  }
}

// ---- cuBLASLt ------------------------------------------------------------------------------------

std::mutex g_mutex;  // guards the handle table and the plan cache

// Created once per device, never destroyed (static destruction may run after the CUDA runtime
// has shut down). A cuBLASLt handle carries no per-call state, so threads share it.
cublasLtHandle_t lt_handle(int device, const char* op) {
  static auto* handles = new std::map<int, cublasLtHandle_t>();
  cublasLtHandle_t& h = (*handles)[device];
  if (h == nullptr) QGEMM_CUBLAS_CHECK(cublasLtCreate(&h), op);
  return h;
}

struct LtPlan {
  bool usable = false;  // false: cuBLASLt has no algorithm, use the dp4a kernel
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, ld = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;

  LtPlan() = default;
  LtPlan(const LtPlan&) = delete;
  LtPlan& operator=(const LtPlan&) = delete;
  ~LtPlan() {
    // Host-only frees; a failure here has nothing to report to.
    if (desc) cublasLtMatmulDescDestroy(desc);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (ld) cublasLtMatrixLayoutDestroy(ld);
  }
};

using PlanKey = std::array<int64_t, 8>;

uint32_t alignment_of(uint64_t bits) {
  if (bits == 0) return 256;
  const uint64_t low = bits & (~bits + 1);
  return static_cast<uint32_t>(low < 256 ? low : 256);
}

cublasLtMatrixLayout_t make_layout(cudaDataType_t t, uint64_t rows, uint64_t cols, int64_t ld, int64_t batch,
                                   int64_t batch_stride, const char* op) {
  cublasLtMatrixLayout_t l = nullptr;
  QGEMM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, t, rows, cols, ld), op);
  if (batch > 1) {
    const int32_t count = static_cast<int32_t>(batch);
    cublasStatus_t st = cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count);
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &batch_stride,
                                            sizeof batch_stride);
    if (st != CUBLAS_STATUS_SUCCESS) {
      cublasLtMatrixLayoutDestroy(l);
      throw_cublas(st, op, "cublasLtMatrixLayoutSetAttribute");
    }
  }
  return l;
}

// In cuBLAS's column-major terms D^T (cols x rows) = B (cols x k) . A^T: cuBLAS's "A" is our
// weights, stored k x cols with leading dimension k and used transposed, its "B" our activations
// (k x rows, not transposed): the "TN" form the int8 IMMA kernels take with the regular layout.
std::shared_ptr<LtPlan> build_plan(cublasLtHandle_t h, const IGemm& p, uint32_t align_a, uint32_t align_b,
                                   uint32_t align_d, const char* op) {
  auto plan = std::make_shared<LtPlan>();
  QGEMM_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32I, CUDA_R_32I), op);
  const cublasOperation_t trans = CUBLAS_OP_T, no_trans = CUBLAS_OP_N;
  QGEMM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans, sizeof trans), op);
  QGEMM_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &no_trans, sizeof no_trans), op);
  plan->la = make_layout(CUDA_R_8I, p.k, p.cols, p.k, p.batch, p.b_bs, op);
  plan->lb = make_layout(CUDA_R_8I, p.k, p.rows, p.k, p.batch, p.a_bs, op);
  plan->ld = make_layout(CUDA_R_32I, p.cols, p.rows, p.cols, p.batch, p.d_bs, op);

  cublasLtMatmulPreference_t pref = nullptr;
  QGEMM_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref), op);
  const uint64_t ws = kMaxWorkspace;
  cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  const std::array<std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t>, 4> aligns{{
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_b},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_a},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_d},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_d},
  }};
  for (const auto& [attr, v] : aligns)
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatmulPreferenceSetAttribute(pref, attr, &v, sizeof v);
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulAlgoGetHeuristic(h, plan->desc, plan->la, plan->lb, plan->ld, plan->ld, pref, 1, &result,
                                        &found);
  cublasLtMatmulPreferenceDestroy(pref);
  // No algorithm for this problem (NOT_SUPPORTED, or INVALID_VALUE for a layout the int8
  // kernels reject): not usable, the dp4a kernel runs instead.
  if (st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE ||
      (st == CUBLAS_STATUS_SUCCESS && (found == 0 || result.state != CUBLAS_STATUS_SUCCESS)))
    return plan;
  if (st != CUBLAS_STATUS_SUCCESS) throw_cublas(st, op, "cublasLtMatmulAlgoGetHeuristic (int8)");
  plan->algo = result.algo;
  plan->workspace = result.workspaceSize;
  plan->usable = true;
  return plan;
}

// cuBLASLt's int8 kernels with the regular (non-IMMA-ordered) layout need k, the weights' row
// count (cuBLAS's m) and every leading dimension to be multiples of 4 and 4-byte aligned
// pointers (batch strides included); otherwise no plan is even asked for.
bool lt_shape_ok(const IGemm& p, uint32_t align_a, uint32_t align_b, uint32_t align_d) {
  return p.k % 4 == 0 && p.cols % 4 == 0 && align_a >= 4 && align_b >= 4 && align_d >= 4 && p.rows <= INT32_MAX &&
         p.cols <= INT32_MAX && p.k <= INT32_MAX && p.batch <= INT32_MAX;
}

std::map<PlanKey, std::shared_ptr<LtPlan>>& plan_cache() {
  static auto* cache = new std::map<PlanKey, std::shared_ptr<LtPlan>>();  // never destroyed, like the handles
  return *cache;
}

// D = A . B^T in int32, exact (see the top of the file).
void igemm(const IGemm& p, const Tensor& like, const char* op) {
  cudaStream_t s = stream_for(like);
  if (p.k == 0) {
    // An empty sum: D is zero. D is dense ([batch][rows][cols]) in every caller.
    MANTISSA_CUDA_CHECK(cudaMemsetAsync(p.d, 0, static_cast<size_t>(p.batch * p.rows * p.cols) * sizeof(int32_t), s),
                        op);
    return;
  }
  const uint32_t align_a = alignment_of(reinterpret_cast<uintptr_t>(p.a) | static_cast<uint64_t>(p.a_bs));
  const uint32_t align_b = alignment_of(reinterpret_cast<uintptr_t>(p.b) | static_cast<uint64_t>(p.b_bs));
  const uint32_t align_d =
      alignment_of(reinterpret_cast<uintptr_t>(p.d) | static_cast<uint64_t>(p.d_bs) * sizeof(int32_t));
  if (!lt_shape_ok(p, align_a, align_b, align_d)) return igemm_dp4a(p, s, op);

  const int device = like.device().index;
  std::shared_ptr<LtPlan> plan;
  cublasLtHandle_t h = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    h = lt_handle(device, op);
    const PlanKey key{device, p.rows, p.cols, p.k, p.batch, align_a, align_b, align_d};
    auto& cache = plan_cache();
    auto it = cache.find(key);
    if (it != cache.end()) {
      plan = it->second;
    } else {
      plan = build_plan(h, p, align_a, align_b, align_d, op);
      if (cache.size() >= kMaxPlans) cache.clear();  // plans in use live on through their shared_ptr
      cache.emplace(key, plan);
    }
  }
  if (!plan->usable) return igemm_dp4a(p, s, op);
  Tensor workspace;
  void* ws = nullptr;
  if (plan->workspace > 0) {
    workspace = empty({static_cast<int64_t>(plan->workspace)}, TensorOptions(DType::U8).device(like.device()));
    ws = workspace.data_ptr();
  }
  const int32_t alpha = 1, beta = 0;
  // cuBLAS "A" = the weights, "B" = the activations (build_plan).
  const cublasStatus_t st = cublasLtMatmul(h, plan->desc, &alpha, p.b, plan->la, p.a, plan->lb, &beta, p.d, plan->ld,
                                          p.d, plan->ld, &plan->algo, ws, plan->workspace, s);
  // An algorithm the heuristic offered but that refuses these pointers at launch: the dp4a
  // kernel writes all of D instead.
  if (st == CUBLAS_STATUS_NOT_SUPPORTED) return igemm_dp4a(p, s, op);
  if (st != CUBLAS_STATUS_SUCCESS) throw_cublas(st, op, "cublasLtMatmul (int8)");
}

// ---- operand preparation -------------------------------------------------------------------------

// u8 code -> the same value minus 128, which fits s8.
struct ShiftU8 {
  __device__ int8_t operator()(uint8_t v) const { return static_cast<int8_t>(static_cast<int>(v) - 128); }
};

// The activations as s8: s8 codes as they are, u8 codes shifted into a fresh buffer.
Tensor s8_activations(const Tensor& x, const char* op) {
  if (x.dtype() == DType::I8) return x;
  Tensor x8 = empty(x.sizes(), TensorOptions(DType::I8).device(x.device()));
  cuda_map<int8_t, uint8_t>(op, ShiftU8{}, x8, {x});
  return x8;
}

// The activation zero point in the shifted domain.
int32_t shifted_zp(DType x, int32_t zp) { return x == DType::U8 ? zp - 128 : zp; }

// rowsum[r] = sum_k w[r, k], one warp per row (exact in int32: |sum| <= 128 * 65536).
__global__ void row_sums_kernel(const int8_t* w, int64_t rows, int64_t k, int32_t* out) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / 32;
  for (int64_t r = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32; r < rows; r += warps) {
    int32_t s = 0;
    for (int64_t j = lane; j < k; j += 32) s += w[r * k + j];
#pragma unroll
    for (int off = 16; off > 0; off /= 2) s += __shfl_down_sync(0xffffffffu, s, off);
    if (lane == 0) out[r] = s;
  }
}

// Null when the zero point is 0 (the correction vanishes).
Tensor row_sums(const Tensor& w, int64_t rows, int64_t k, int32_t zp8, const char* op) {
  if (zp8 == 0) return Tensor();
  Tensor sums = empty({rows}, TensorOptions(DType::I32).device(w.device()));
  const int64_t threads = rows * 32;
  row_sums_kernel<<<grid_for(threads), kBlock, 0, stream_for(w)>>>(w.data<int8_t>(), rows, k, sums.data<int32_t>());
  MANTISSA_CUDA_LAUNCH_CHECK(op);
  return sums;
}

Tensor to_device(const std::vector<float>& v, const Tensor& like) {
  Tensor host = empty({static_cast<int64_t>(v.size())}, TensorOptions(DType::F32));
  std::memcpy(host.data_ptr(), v.data(), v.size() * sizeof(float));
  return host.to(like.device());
}

// ---- epilogues -------------------------------------------------------------------------------------

// Where out element i = (n, o, p) of [images, O, P] reads D: D is [groups][images * P][og] and
// channel o = g * og + c. A linear layer is images = N, P = 1, one group.
struct OutGeom {
  int64_t total = 0, channels = 0, spatial = 1, og = 0, rows = 0;
  __device__ __forceinline__ int64_t d_index(int64_t i, int64_t& o) const {
    const int64_t p = i % spatial, t = i / spatial;
    o = t % channels;
    const int64_t n = t / channels, g = o / og, c = o - g * og;
    return (g * rows + n * spatial + p) * og + c;
  }
};

struct RequantArgs {
  const int32_t* rowsum = nullptr;  // null: zp8 == 0
  const int32_t* bias = nullptr;
  const float* m = nullptr;
  int32_t zp8 = 0, out_zp = 0, lo = 0, hi = 0;
};

// The reference's requant_value, operation for operation: the exact accumulator, the bias added
// saturating to int32, one F32 conversion (exact below 2^24, else rounded to nearest like the
// CPU's), one F32 product (__fmul_rn: never contracted), rint half to even, the clamp in float,
// then the zero point.
template <typename O>
__global__ void requant_kernel(const int32_t* d, OutGeom geo, RequantArgs a, O* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < geo.total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    int64_t o = 0;
    const int64_t di = geo.d_index(i, o);
    int64_t wide = static_cast<int64_t>(d[di]);
    if (a.rowsum) wide -= static_cast<int64_t>(a.zp8) * a.rowsum[o];
    if (a.bias) wide += a.bias[o];
    wide = wide < INT32_MIN ? INT32_MIN : (wide > INT32_MAX ? INT32_MAX : wide);
    float v = rintf(__fmul_rn(__int2float_rn(static_cast<int32_t>(wide)), a.m[o]));
    v = fmaxf(v, static_cast<float>(a.lo - a.out_zp));
    v = fminf(v, static_cast<float>(a.hi - a.out_zp));
    out[i] = static_cast<O>(static_cast<int32_t>(v) + a.out_zp);
  }
}

// qlinear_dequant's dequant_value: the product rounded, then the bias add (0.0f without bias,
// as the reference adds it), two separate roundings.
__global__ void dequant_kernel(const int32_t* d, OutGeom geo, const int32_t* rowsum, int32_t zp8, const float* m,
                               const float* bias, float* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < geo.total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    int64_t o = 0;
    const int64_t di = geo.d_index(i, o);
    int64_t acc = static_cast<int64_t>(d[di]);
    if (rowsum) acc -= static_cast<int64_t>(zp8) * rowsum[o];
    const float prod = __fmul_rn(__int2float_rn(static_cast<int32_t>(acc)), m[o]);
    out[i] = __fadd_rn(prod, bias ? bias[o] : 0.0f);
  }
}

template <typename F>
void visit_out(DType t, const F& f) {
  if (t == DType::U8) f.template operator()<uint8_t>();
  else f.template operator()<int8_t>();
}

void launch_requant(const Tensor& out, void* out_ptr, const Tensor& d, const OutGeom& geo, const RequantArgs& a,
                    const char* op) {
  visit_out(out.dtype(), [&]<typename O>() {
    requant_kernel<O><<<grid_for(geo.total), kBlock, 0, stream_for(out)>>>(d.data<int32_t>(), geo, a,
                                                                            static_cast<O*>(out_ptr));
    MANTISSA_CUDA_LAUNCH_CHECK(op);
  });
}

RequantArgs requant_args(const Tensor& out, const Tensor& rowsum, const Tensor& bias, const Tensor& m, int32_t zp8,
                         int32_t out_zp) {
  RequantArgs a;
  a.rowsum = rowsum.defined() ? rowsum.data<int32_t>() : nullptr;
  a.bias = bias.defined() ? bias.data<int32_t>() : nullptr;
  a.m = m.data<float>();
  a.zp8 = zp8;
  a.out_zp = out_zp;
  a.lo = out.dtype() == DType::U8 ? 0 : -128;
  a.hi = out.dtype() == DType::U8 ? 255 : 127;
  return a;
}

// ---- conv: im2col into s8 ------------------------------------------------------------------------

struct ConvGeom {
  int64_t ci = 0, h = 0, w = 0, cg = 0, kh = 0, kw = 0, ho = 0, wo = 0, groups = 1;
  int64_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
};

// col[g][n * P + p][kk] for images n0 .. n0 + images, kk = (c * kh + ky) * kw + kx (the weights'
// [O, C/groups, kh, kw] flattening). Padding reads the code x_zp, which after the shift becomes
// zp8 and so contributes (zp8 - zp8) * w = 0, as the reference skips it.
template <typename X>
__global__ void im2col_kernel(const X* x, int8_t* col, ConvGeom g, int64_t n0, int64_t images, int32_t pad_code,
                              int64_t total) {
  const int64_t kg = g.cg * g.kh * g.kw, spatial = g.ho * g.wo;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t kk = i % kg;
    int64_t t = i / kg;
    const int64_t p = t % spatial;
    t /= spatial;
    const int64_t n = t % images, grp = t / images;
    const int64_t c = kk / (g.kh * g.kw), r = kk % (g.kh * g.kw), ky = r / g.kw, kx = r % g.kw;
    const int64_t iy = (p / g.wo) * g.sh - g.ph + ky * g.dh, ix = (p % g.wo) * g.sw - g.pw + kx * g.dw;
    int32_t v = pad_code;
    if (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w)
      v = x[(((n0 + n) * g.ci + grp * g.cg + c) * g.h + iy) * g.w + ix];
    col[i] = static_cast<int8_t>(std::is_same_v<X, uint8_t> ? v - 128 : v);
  }
}

}  // namespace

void qlinear(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, const Requant& r) {
  constexpr const char* op = "qlinear";
  DeviceGuard guard(out);
  const int64_t n = x.size(0), k = x.size(1), c = w.size(0);
  const int32_t zp8 = shifted_zp(x.dtype(), r.x_zp);
  const Tensor x8 = s8_activations(x, op);
  Tensor d = empty({n, c}, TensorOptions(DType::I32).device(out.device()));
  IGemm g;
  g.a = x8.data<int8_t>();
  g.b = w.data<int8_t>();
  g.d = d.data<int32_t>();
  g.rows = n;
  g.cols = c;
  g.k = k;
  igemm(g, out, op);
  const Tensor sums = row_sums(w, c, k, zp8, op);
  const Tensor m = requant_multipliers(r).to(out.device());
  OutGeom geo;
  geo.total = n * c;
  geo.channels = c;
  geo.og = c;
  geo.rows = n;
  launch_requant(out, out.data_ptr(), d, geo, requant_args(out, sums, bias, m, zp8, r.out_zp), op);
}

void qlinear_dequant(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, float x_scale,
                     int32_t x_zp, const Tensor& w_scale) {
  constexpr const char* op = "qlinear_dequant";
  DeviceGuard guard(out);
  const int64_t n = x.size(0), k = x.size(1), c = w.size(0);
  const int32_t zp8 = shifted_zp(x.dtype(), x_zp);
  const Tensor x8 = s8_activations(x, op);
  Tensor d = empty({n, c}, TensorOptions(DType::I32).device(out.device()));
  IGemm g;
  g.a = x8.data<int8_t>();
  g.b = w.data<int8_t>();
  g.d = d.data<int32_t>();
  g.rows = n;
  g.cols = c;
  g.k = k;
  igemm(g, out, op);
  const Tensor sums = row_sums(w, c, k, zp8, op);
  // m[c] = x_scale * w_scale[c], one F32 rounding on the host as in the CPU entry point.
  const float* ws = w_scale.data<float>();
  std::vector<float> mv(static_cast<size_t>(c));
  for (int64_t j = 0; j < c; ++j) mv[static_cast<size_t>(j)] = x_scale * ws[j];
  const Tensor m = to_device(mv, out);
  OutGeom geo;
  geo.total = n * c;
  geo.channels = c;
  geo.og = c;
  geo.rows = n;
  dequant_kernel<<<grid_for(geo.total), kBlock, 0, stream_for(out)>>>(
      d.data<int32_t>(), geo, sums.defined() ? sums.data<int32_t>() : nullptr, zp8, m.data<float>(),
      bias.defined() ? bias.data<float>() : nullptr, out.data<float>());
  MANTISSA_CUDA_LAUNCH_CHECK(op);
}

void qconv2d(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& bias, const Conv2dParams& p,
             const Requant& r) {
  constexpr const char* op = "qconv2d";
  DeviceGuard guard(out);
  ConvGeom geo;
  geo.ci = x.size(1);
  geo.h = x.size(2);
  geo.w = x.size(3);
  geo.cg = w.size(1);
  geo.kh = w.size(2);
  geo.kw = w.size(3);
  geo.ho = out.size(2);
  geo.wo = out.size(3);
  geo.groups = p.groups;
  geo.sh = p.stride_h;
  geo.sw = p.stride_w;
  geo.ph = p.pad_h;
  geo.pw = p.pad_w;
  geo.dh = p.dilation_h;
  geo.dw = p.dilation_w;
  const int64_t n = x.size(0), o = w.size(0), og = o / p.groups, kg = geo.cg * geo.kh * geo.kw;
  const int64_t spatial = geo.ho * geo.wo;
  const int32_t zp8 = shifted_zp(x.dtype(), r.x_zp);
  const Tensor sums = row_sums(w, o, kg, zp8, op);
  const Tensor m = requant_multipliers(r).to(out.device());
  const RequantArgs args = requant_args(out, sums, bias, m, zp8, r.out_zp);

  // Images per pass: the column matrix (images * P * C * kh * kw bytes) and D (4 * images * P * O
  // bytes) each stay under 256 MiB, so a large batch never needs gigabytes of scratch.
  constexpr int64_t kBudget = int64_t(256) << 20;
  const int64_t per_image = spatial * std::max(geo.ci * geo.kh * geo.kw, 4 * o);
  const int64_t images = std::max<int64_t>(1, std::min<int64_t>(n, kBudget / std::max<int64_t>(per_image, 1)));
  Tensor col = empty({p.groups * images * spatial * kg}, TensorOptions(DType::I8).device(out.device()));
  Tensor d = empty({p.groups * images * spatial * og}, TensorOptions(DType::I32).device(out.device()));
  cudaStream_t s = stream_for(out);
  for (int64_t n0 = 0; n0 < n; n0 += images) {
    const int64_t cnt = std::min(images, n - n0);
    const int64_t total = p.groups * cnt * spatial * kg;
    if (total > 0) {
      if (x.dtype() == DType::U8) {
        im2col_kernel<uint8_t><<<grid_for(total), kBlock, 0, s>>>(x.data<uint8_t>(), col.data<int8_t>(), geo, n0, cnt,
                                                                  r.x_zp, total);
      } else {
        im2col_kernel<int8_t><<<grid_for(total), kBlock, 0, s>>>(x.data<int8_t>(), col.data<int8_t>(), geo, n0, cnt,
                                                                 r.x_zp, total);
      }
      MANTISSA_CUDA_LAUNCH_CHECK(op);
    }
    // One GEMM per group, batched: D[g] (cnt * P x og) = col[g] (cnt * P x kg) . w[g]^T.
    IGemm g;
    g.a = col.data<int8_t>();
    g.b = w.data<int8_t>();
    g.d = d.data<int32_t>();
    g.rows = cnt * spatial;
    g.cols = og;
    g.k = kg;
    g.batch = p.groups;
    g.a_bs = cnt * spatial * kg;
    g.b_bs = og * kg;
    g.d_bs = cnt * spatial * og;
    igemm(g, out, op);
    OutGeom og_geo;
    og_geo.total = cnt * o * spatial;
    og_geo.channels = o;
    og_geo.spatial = spatial;
    og_geo.og = og;
    og_geo.rows = cnt * spatial;
    void* dst = static_cast<char*>(out.data_ptr()) + n0 * o * spatial * static_cast<int64_t>(out.element_size());
    launch_requant(out, dst, d, og_geo, args, op);
  }
}

}  // namespace mantissa::kernels::cuda
