// CUDA convolution (see conv.h) through cuDNN 9's convolution API: forward (bias folded in
// before the single rounding), gradient of the input, gradient of the weight, and a
// deterministic bias-gradient reduction of our own. Algorithms are chosen once per shape,
// dtype, parameters and direction from cuDNN's heuristics and cached.
#include "core/kernels/conv.h"

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "core/cuda_flags.h"
#include "core/kernels/cuda_common.cuh"
#include "core/kernels/cudnn_util.h"

namespace mantissa::kernels::cuda {

namespace {

struct Geometry {
  int64_t n, c, h, w, o, kh, kw, ho, wo;
};

Geometry geometry(const Shape& x, const Shape& w, const Shape& out, const char* op) {
  MANTISSA_CHECK(x.size() == 4 && w.size() == 4 && out.size() == 4, op, ": expected 4-D input, weight and output, got ",
                 shape_str(x), ", ", shape_str(w), " and ", shape_str(out));
  return {x[0], x[1], x[2], x[3], w[0], w[2], w[3], out[2], out[3]};
}

// Every operand on out's CUDA device, in out's floating dtype.
void check_operands(const char* op, const Tensor& out, std::initializer_list<Tensor> in) {
  MANTISSA_CHECK(is_floating(out.dtype()), op, ": dtype ", dtype_name(out.dtype()),
                 " is not supported (expected one of F64, F32, F16, BF16)");
  MANTISSA_CHECK(out.is_contiguous(), op, ": the CUDA kernel writes a contiguous output, got strides ",
                 shape_str(out.strides()), " for shape ", shape_str(out.sizes()));
  for (const Tensor& t : in) {
    if (!t.defined()) continue;
    MANTISSA_CHECK(t.device() == out.device(), op, ": expected every tensor on ", out.device(), ", got one on ",
                   t.device(), " (shape ", shape_str(t.sizes()), ")");
    MANTISSA_CHECK(t.dtype() == out.dtype(), op, ": expected every tensor in ", dtype_name(out.dtype()), ", got ",
                   dtype_name(t.dtype()), " (shape ", shape_str(t.sizes()), ")");
  }
}

struct Identity {
  template <typename V>
  __device__ V operator()(V v) const {
    return v;
  }
};

// cuDNN reads packed NCHW / OIHW buffers; its kernels also assume vector-aligned base pointers,
// which a contiguous view at an odd offset does not have. Such operands get a packed copy.
bool usable(const Tensor& t) { return t.is_contiguous() && detail::aligned16(t.data_ptr()); }

template <typename T>
Tensor packed(const Tensor& t, const char* op) {
  if (usable(t)) return t;
  Tensor c = empty(t.sizes(), TensorOptions(t.dtype()).device(t.device()));
  cuda_map<T, T>(op, Identity{}, c, {t});
  return c;
}

void zero(const Tensor& t, const char* op) {
  if (t.numel() == 0) return;
  MANTISSA_CUDA_CHECK(cudaMemsetAsync(t.data_ptr(), 0, t.nbytes(), stream_for(t)), op);
}

// y[n, o, :, :] = bias[o]: the forward then adds the convolution with beta = 1, so conv + bias
// is formed in the F32 (F64) epilogue and rounded once, as on the CPU.
template <typename T>
__global__ void fill_bias_kernel(T* __restrict__ y, const T* __restrict__ bias, int64_t bias_stride, int64_t total,
                                 int64_t hw, int64_t channels) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(blockDim.x) * gridDim.x)
    y[i] = bias[((i / hw) % channels) * bias_stride];
}

template <typename T>
void fill_bias(const Tensor& y, const Tensor& bias, const char* op) {
  const int64_t total = y.numel();
  if (total == 0) return;
  const int64_t hw = y.size(2) * y.size(3);
  fill_bias_kernel<T><<<grid_for(total), kBlock, 0, stream_for(y)>>>(y.data<T>(), bias.data<T>(), bias.stride(0), total,
                                                                     hw == 0 ? 1 : hw, y.size(1));
  MANTISSA_CUDA_LAUNCH_CHECK(op);
}

// grad_bias[o] = sum over images and positions of grad_out[n, o, :, :]: one block per channel,
// a fixed per-thread stride and a fixed tree, so the sum does not change between runs (cuDNN's
// bias reduction promises no order). F32 accumulation for 16-bit types, F64 for F64.
constexpr int kBiasBlock = 256;

template <typename T>
__global__ void bias_grad_kernel(T* __restrict__ grad_bias, int64_t bias_stride, const T* __restrict__ grad_out,
                                 int64_t n, int64_t channels, int64_t hw) {
  using Acc = std::conditional_t<std::is_same_v<T, double>, double, float>;
  __shared__ Acc partial[kBiasBlock];
  const int64_t oc = blockIdx.x;
  const int64_t per_channel = n * hw;
  Acc s = 0;
  for (int64_t i = threadIdx.x; i < per_channel; i += kBiasBlock) {
    const int64_t img = i / hw, pos = i - img * hw;
    s += static_cast<Acc>(load(grad_out + (img * channels + oc) * hw + pos));
  }
  partial[threadIdx.x] = s;
  __syncthreads();
  for (int width = kBiasBlock / 2; width > 0; width /= 2) {
    if (static_cast<int>(threadIdx.x) < width) partial[threadIdx.x] += partial[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) store(grad_bias + oc * bias_stride, partial[0]);
}

template <typename T>
void bias_grad(const Tensor& grad_bias, const Tensor& grad_out, const char* op) {
  const int64_t channels = grad_out.size(1);
  if (channels == 0) return;
  MANTISSA_CHECK(channels <= INT32_MAX, op, ": ", channels, " output channels are more than one grid holds");
  bias_grad_kernel<T><<<static_cast<unsigned>(channels), kBiasBlock, 0, stream_for(grad_out)>>>(
      grad_bias.data<T>(), grad_bias.stride(0), grad_out.data<T>(), grad_out.size(0), channels,
      grad_out.size(2) * grad_out.size(3));
  MANTISSA_CUDA_LAUNCH_CHECK(op);
}

// ---- cuDNN plans ---------------------------------------------------------------------------

enum Direction : int64_t { kForward = 0, kBackwardData = 1, kBackwardFilter = 2 };

// Math the descriptor requests: F16/BF16 may use tensor cores (their inputs are already 16-bit;
// accumulation stays F32 through the F32 compute type); F32 uses TF32 tensor cores only when
// allowed, otherwise FMA kernels only; F64 is plain.
// (`tf32` is read once per call: F32 and allow_tf32().)
cudnnMathType_t requested_math(DType dtype, bool tf32) {
  if (dtype == DType::F16 || dtype == DType::BF16) return CUDNN_TENSOR_OP_MATH;
  if (dtype == DType::F32) return tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
  return CUDNN_DEFAULT_MATH;
}

// The descriptors of one convolution, built per call (host-only and cheap) so no cuDNN object is
// shared between threads.
struct Descriptors {
  TensorDescriptor x, y;  // input and output images (or their gradients)
  FilterDescriptor w;
  ConvolutionDescriptor conv;
  explicit Descriptors(const char* op) : x(op), y(op), w(op), conv(op) {}
};

std::unique_ptr<Descriptors> make_descriptors(DType dtype, bool tf32, const Geometry& g, const Conv2dParams& p,
                                              const char* op) {
  auto d = std::make_unique<Descriptors>(op);
  d->x.set_nchw(dtype, g.n, g.c, g.h, g.w, op);
  d->y.set_nchw(dtype, g.n, g.o, g.ho, g.wo, op);
  d->w.set_oihw(dtype, g.o, g.c / p.groups, g.kh, g.kw, op);
  const cudnnDataType_t compute = dtype == DType::F64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
  MANTISSA_CUDNN_CHECK(
      cudnnSetConvolution2dDescriptor(d->conv.get(), cudnn_int(p.pad_h, op, "padding"),
                                      cudnn_int(p.pad_w, op, "padding"), cudnn_int(p.stride_h, op, "stride"),
                                      cudnn_int(p.stride_w, op, "stride"), cudnn_int(p.dilation_h, op, "dilation"),
                                      cudnn_int(p.dilation_w, op, "dilation"), CUDNN_CROSS_CORRELATION, compute),
      op);
  MANTISSA_CUDNN_CHECK(cudnnSetConvolutionGroupCount(d->conv.get(), cudnn_int(p.groups, op, "groups")), op);
  MANTISSA_CUDNN_CHECK(cudnnSetConvolutionMathType(d->conv.get(), requested_math(dtype, tf32)), op);
  // cuDNN's output extent must be the one the caller allocated.
  int on = 0, oc = 0, oh = 0, ow = 0;
  MANTISSA_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(d->conv.get(), d->x.get(), d->w.get(), &on, &oc, &oh, &ow),
                       op);
  MANTISSA_CHECK(on == g.n && oc == g.o && oh == g.ho && ow == g.wo, op, ": cuDNN computes output ",
                 shape_str({on, oc, oh, ow}), " but the output is ", shape_str({g.n, g.o, g.ho, g.wo}));
  return d;
}

// What the first call for a key found: the algorithm, the math it ran with, its workspace.
struct Plan {
  int algo = -1;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t workspace = 0;
};

// direction, device, dtype, TF32 allowed, N C H W, O kh kw, strides, paddings, dilations,
// groups, bias folded in (beta = 1).
using Key = std::array<int64_t, 19>;

Key plan_key(Direction dir, const Tensor& ref, bool tf32, const Geometry& g, const Conv2dParams& p, bool accumulate) {
  return {dir,
          ref.device().index,
          static_cast<int64_t>(ref.dtype()),
          tf32,
          g.n,
          g.c,
          g.h,
          g.w,
          g.o,
          g.kh,
          g.kw,
          p.stride_h,
          p.stride_w,
          p.pad_h,
          p.pad_w,
          p.dilation_h,
          p.dilation_w,
          p.groups,
          accumulate};
}

struct PlanCache {
  std::mutex mutex;
  std::map<Key, Plan> plans;
};
PlanCache& plan_cache() {
  // Never destroyed: a thread may still run a convolution during static destruction.
  static PlanCache* cache = new PlanCache;
  return *cache;
}
bool find_plan(const Key& key, Plan* plan) {
  PlanCache& c = plan_cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  auto it = c.plans.find(key);
  if (it == c.plans.end()) return false;
  *plan = it->second;
  return true;
}
void keep_plan(const Key& key, const Plan& plan) {
  PlanCache& c = plan_cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.plans.emplace(key, plan);  // two threads may race to the same key: the first one stays
}

// The three directions differ only in which cuDNN entry points they call and which buffers
// they read and write; `a` and `b` are the inputs, `out` the output, in cuDNN's argument order.
struct Buffers {
  const void* a;
  const void* b;
  void* out;
};

struct ForwardCalls {
  using Algo = cudnnConvolutionFwdAlgo_t;
  using Perf = cudnnConvolutionFwdAlgoPerf_t;
  static cudnnStatus_t max_count(cudnnHandle_t h, int* n) { return cudnnGetConvolutionForwardAlgorithmMaxCount(h, n); }
  static cudnnStatus_t heuristics(cudnnHandle_t h, const Descriptors& pl, int req, int* got, Perf* perf) {
    return cudnnGetConvolutionForwardAlgorithm_v7(h, pl.x.get(), pl.w.get(), pl.conv.get(), pl.y.get(), req, got, perf);
  }
  static cudnnStatus_t workspace(cudnnHandle_t h, const Descriptors& pl, Algo algo, size_t* bytes) {
    return cudnnGetConvolutionForwardWorkspaceSize(h, pl.x.get(), pl.w.get(), pl.conv.get(), pl.y.get(), algo, bytes);
  }
  // a = x, b = w, out = y
  static cudnnStatus_t run(cudnnHandle_t h, const Descriptors& pl, Algo algo, void* ws, size_t ws_bytes,
                           const void* alpha, const void* beta, const Buffers& buf) {
    return cudnnConvolutionForward(h, alpha, pl.x.get(), buf.a, pl.w.get(), buf.b, pl.conv.get(), algo, ws, ws_bytes,
                                   beta, pl.y.get(), buf.out);
  }
};

struct BackwardDataCalls {
  using Algo = cudnnConvolutionBwdDataAlgo_t;
  using Perf = cudnnConvolutionBwdDataAlgoPerf_t;
  static cudnnStatus_t max_count(cudnnHandle_t h, int* n) {
    return cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, n);
  }
  static cudnnStatus_t heuristics(cudnnHandle_t h, const Descriptors& pl, int req, int* got, Perf* perf) {
    return cudnnGetConvolutionBackwardDataAlgorithm_v7(h, pl.w.get(), pl.y.get(), pl.conv.get(), pl.x.get(), req, got,
                                                       perf);
  }
  static cudnnStatus_t workspace(cudnnHandle_t h, const Descriptors& pl, Algo algo, size_t* bytes) {
    return cudnnGetConvolutionBackwardDataWorkspaceSize(h, pl.w.get(), pl.y.get(), pl.conv.get(), pl.x.get(), algo,
                                                        bytes);
  }
  // a = w, b = grad_out, out = grad_x
  static cudnnStatus_t run(cudnnHandle_t h, const Descriptors& pl, Algo algo, void* ws, size_t ws_bytes,
                           const void* alpha, const void* beta, const Buffers& buf) {
    return cudnnConvolutionBackwardData(h, alpha, pl.w.get(), buf.a, pl.y.get(), buf.b, pl.conv.get(), algo, ws,
                                        ws_bytes, beta, pl.x.get(), buf.out);
  }
};

struct BackwardFilterCalls {
  using Algo = cudnnConvolutionBwdFilterAlgo_t;
  using Perf = cudnnConvolutionBwdFilterAlgoPerf_t;
  static cudnnStatus_t max_count(cudnnHandle_t h, int* n) {
    return cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, n);
  }
  static cudnnStatus_t heuristics(cudnnHandle_t h, const Descriptors& pl, int req, int* got, Perf* perf) {
    return cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, pl.x.get(), pl.y.get(), pl.conv.get(), pl.w.get(), req, got,
                                                         perf);
  }
  static cudnnStatus_t workspace(cudnnHandle_t h, const Descriptors& pl, Algo algo, size_t* bytes) {
    return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, pl.x.get(), pl.y.get(), pl.conv.get(), pl.w.get(), algo,
                                                          bytes);
  }
  // a = x, b = grad_out, out = grad_w
  static cudnnStatus_t run(cudnnHandle_t h, const Descriptors& pl, Algo algo, void* ws, size_t ws_bytes,
                           const void* alpha, const void* beta, const Buffers& buf) {
    return cudnnConvolutionBackwardFilter(h, alpha, pl.x.get(), buf.a, pl.y.get(), buf.b, pl.conv.get(), algo, ws,
                                          ws_bytes, beta, pl.w.get(), buf.out);
  }
};

// Whether a heuristic candidate may run under this dtype's precision policy. Conversion math
// (F32 data computed in F16) is never allowed; strict F32 refuses tensor-core candidates and
// runs the rest with FMA math forced on the descriptor.
bool candidate_allowed(cudnnMathType_t math, DType dtype, bool tf32) {
  if (math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) return false;
  if (dtype == DType::F32 && !tf32) return math != CUDNN_TENSOR_OP_MATH;
  return true;
}
cudnnMathType_t run_math(cudnnMathType_t candidate, DType dtype, bool tf32) {
  if (dtype == DType::F32 && !tf32) return CUDNN_FMA_MATH;
  return candidate;
}

std::string describe(const Geometry& g, const Conv2dParams& p, DType dtype) {
  return ::mantissa::detail::concat(
      "input ", shape_str({g.n, g.c, g.h, g.w}), ", weight ", shape_str({g.o, g.c / p.groups, g.kh, g.kw}), ", output ",
      shape_str({g.n, g.o, g.ho, g.wo}), ", stride ", shape_str({p.stride_h, p.stride_w}), ", padding ",
      shape_str({p.pad_h, p.pad_w}), ", dilation ", shape_str({p.dilation_h, p.dilation_w}), ", groups ", p.groups,
      ", ", dtype_name(dtype));
}

// Runs one direction. The first call for a key builds the plan: cuDNN's heuristic ranking, with
// deterministic algorithms moved ahead of non-deterministic ones (the same inputs then give the
// same bits on every run, as on the CPU), each candidate tried in turn until one runs (an
// unsupported configuration or a workspace that cannot be allocated moves on to the next).
// `prepare` resets the output before every attempt (the forward's bias).
template <typename Calls, typename Prepare>
void run_direction(const char* op, Direction dir, const Tensor& ref, const Geometry& g, const Conv2dParams& p,
                   const Buffers& buf, bool accumulate, const Prepare& prepare) {
  const DType dtype = ref.dtype();
  cudnnHandle_t handle = cudnn_handle(ref, op);
  const double one_d = 1.0, zero_d = 0.0;
  const float one_f = 1.0f, zero_f = 0.0f;
  const bool dbl = dtype == DType::F64;  // scaling factors are double for F64 data, float otherwise
  const void* alpha = dbl ? static_cast<const void*>(&one_d) : static_cast<const void*>(&one_f);
  const void* beta = accumulate ? alpha : dbl ? static_cast<const void*>(&zero_d) : static_cast<const void*>(&zero_f);
  const bool tf32 = dtype == DType::F32 && mantissa::cuda::allow_tf32();
  const Key key = plan_key(dir, ref, tf32, g, p, accumulate);
  const std::unique_ptr<Descriptors> d = make_descriptors(dtype, tf32, g, p, op);

  Plan plan;
  if (find_plan(key, &plan)) {
    MANTISSA_CUDNN_CHECK(cudnnSetConvolutionMathType(d->conv.get(), plan.math), op);
    DeviceBuffer ws(ref.device(), plan.workspace);
    prepare();
    MANTISSA_CUDNN_CHECK(Calls::run(handle, *d, static_cast<typename Calls::Algo>(plan.algo), ws.get(), plan.workspace,
                                    alpha, beta, buf),
                         op);
    return;
  }

  int max_count = 0;
  MANTISSA_CUDNN_CHECK(Calls::max_count(handle, &max_count), op);
  std::vector<typename Calls::Perf> perf(static_cast<size_t>(max_count > 0 ? max_count : 1));
  int got = 0;
  MANTISSA_CUDNN_CHECK(Calls::heuristics(handle, *d, static_cast<int>(perf.size()), &got, perf.data()), op);
  std::vector<typename Calls::Perf> order;
  for (int pass = 0; pass < 2; ++pass) {
    for (int i = 0; i < got && i < static_cast<int>(perf.size()); ++i) {
      const auto& c = perf[static_cast<size_t>(i)];
      if (c.status != CUDNN_STATUS_SUCCESS || !candidate_allowed(c.mathType, dtype, tf32)) continue;
      if ((c.determinism == CUDNN_DETERMINISTIC) == (pass == 0)) order.push_back(c);
    }
  }

  std::string last = "cuDNN's heuristics returned no usable algorithm";
  for (const auto& c : order) {
    const cudnnMathType_t math = run_math(c.mathType, dtype, tf32);
    MANTISSA_CUDNN_CHECK(cudnnSetConvolutionMathType(d->conv.get(), math), op);
    size_t bytes = 0;
    cudnnStatus_t st = Calls::workspace(handle, *d, c.algo, &bytes);
    if (st != CUDNN_STATUS_SUCCESS) {
      last = ::mantissa::detail::concat("algorithm ", static_cast<int>(c.algo),
                                        ": workspace query: ", cudnnGetErrorString(st));
      continue;
    }
    std::unique_ptr<DeviceBuffer> ws;
    try {
      ws = std::make_unique<DeviceBuffer>(ref.device(), bytes);
    } catch (const Error& e) {
      last = ::mantissa::detail::concat("algorithm ", static_cast<int>(c.algo), ": workspace of ", bytes,
                                        " bytes: ", e.what());
      continue;
    }
    prepare();
    st = Calls::run(handle, *d, c.algo, ws->get(), bytes, alpha, beta, buf);
    if (st != CUDNN_STATUS_SUCCESS) {
      last = ::mantissa::detail::concat("algorithm ", static_cast<int>(c.algo), ": ", cudnnGetErrorString(st));
      continue;
    }
    // A failed kernel launch is sticky; report it now rather than cache a plan that never ran.
    MANTISSA_CUDA_LAUNCH_CHECK(op);
    keep_plan(key, Plan{static_cast<int>(c.algo), math, bytes});
    return;
  }
  MANTISSA_ERROR(op, ": no cuDNN algorithm ran for ", describe(g, p, dtype), " (last failure: ", last, ")");
}

}  // namespace

void conv2d_forward(const Tensor& out, const Tensor& x_in, const Tensor& w_in, const Tensor& bias_in,
                    const Conv2dParams& p) {
  const char* op = "conv2d";
  check_operands(op, out, {x_in, w_in, bias_in});
  const Geometry g = geometry(x_in.sizes(), w_in.sizes(), out.sizes(), op);
  MANTISSA_CHECK(!bias_in.defined() || (bias_in.dim() == 1 && bias_in.size(0) == g.o), op, ": bias ",
                 shape_str(bias_in.defined() ? bias_in.sizes() : Shape{}), " does not match ", g.o, " output channels");
  if (out.numel() == 0) return;
  DeviceGuard guard(out);
  visit_dtype<kFloatTypes>(out.dtype(), op, [&]<typename T>() {
    if (x_in.numel() == 0 || w_in.numel() == 0) {
      // No input channels: the sum over an empty window is 0 and the bias is all that remains.
      zero(out, op);
      if (bias_in.defined()) fill_bias<T>(out, bias_in, op);
      return;
    }
    const Tensor x = packed<T>(x_in, op), w = packed<T>(w_in, op);
    const Tensor y = usable(out) ? out : empty(out.sizes(), TensorOptions(out.dtype()).device(out.device()));
    const bool with_bias = bias_in.defined();
    run_direction<ForwardCalls>(op, kForward, out, g, p, {x.data_ptr(), w.data_ptr(), y.data_ptr()}, with_bias, [&] {
      if (with_bias) fill_bias<T>(y, bias_in, op);
    });
    if (!y.is_same(out)) cuda_map<T, T>(op, Identity{}, out, {y});
  });
}

void conv2d_backward_input(const Tensor& grad_x, const Tensor& grad_out_in, const Tensor& w_in, const Conv2dParams& p) {
  const char* op = "conv2d backward";
  check_operands(op, grad_x, {grad_out_in, w_in});
  const Geometry g = geometry(grad_x.sizes(), w_in.sizes(), grad_out_in.sizes(), op);
  if (grad_x.numel() == 0) return;
  DeviceGuard guard(grad_x);
  if (grad_out_in.numel() == 0 || w_in.numel() == 0) {
    zero(grad_x, op);
    return;
  }
  visit_dtype<kFloatTypes>(grad_x.dtype(), op, [&]<typename T>() {
    const Tensor w = packed<T>(w_in, op), grad_out = packed<T>(grad_out_in, op);
    const Tensor dx =
        usable(grad_x) ? grad_x : empty(grad_x.sizes(), TensorOptions(grad_x.dtype()).device(grad_x.device()));
    run_direction<BackwardDataCalls>(op, kBackwardData, grad_x, g, p,
                                     {w.data_ptr(), grad_out.data_ptr(), dx.data_ptr()}, false, [] {});
    if (!dx.is_same(grad_x)) cuda_map<T, T>(op, Identity{}, grad_x, {dx});
  });
}

void conv2d_backward_weight(const Tensor& grad_w, const Tensor& grad_bias, const Tensor& grad_out_in,
                            const Tensor& x_in, const Conv2dParams& p) {
  const char* op = "conv2d backward";
  check_operands(op, grad_w, {grad_bias, grad_out_in, x_in});
  const Geometry g = geometry(x_in.sizes(), grad_w.sizes(), grad_out_in.sizes(), op);
  MANTISSA_CHECK(!grad_bias.defined() || (grad_bias.dim() == 1 && grad_bias.size(0) == g.o), op, ": bias gradient ",
                 shape_str(grad_bias.defined() ? grad_bias.sizes() : Shape{}), " does not match ", g.o,
                 " output channels");
  DeviceGuard guard(grad_w);
  visit_dtype<kFloatTypes>(grad_w.dtype(), op, [&]<typename T>() {
    if (grad_out_in.numel() == 0) {
      // An empty batch: every gradient is an empty sum (the reduction writes 0 per channel).
      zero(grad_w, op);
      if (grad_bias.defined()) bias_grad<T>(grad_bias, grad_out_in, op);
      return;
    }
    const Tensor grad_out = packed<T>(grad_out_in, op);
    if (grad_bias.defined()) bias_grad<T>(grad_bias, grad_out, op);
    if (grad_w.numel() == 0) return;
    if (x_in.numel() == 0) {
      zero(grad_w, op);
      return;
    }
    const Tensor x = packed<T>(x_in, op);
    const Tensor dw =
        usable(grad_w) ? grad_w : empty(grad_w.sizes(), TensorOptions(grad_w.dtype()).device(grad_w.device()));
    run_direction<BackwardFilterCalls>(op, kBackwardFilter, grad_w, g, p,
                                       {x.data_ptr(), grad_out.data_ptr(), dw.data_ptr()}, false, [] {});
    if (!dw.is_same(grad_w)) cuda_map<T, T>(op, Identity{}, grad_w, {dw});
  });
}

}  // namespace mantissa::kernels::cuda
