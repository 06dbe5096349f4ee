// CUDA kernels of the indexing family (index.h): the out-of-range scan (one device-to-host read),
// row selection, gather, their scatter-add backward passes and the dropout multiply. Copies move
// raw elements by size, like the CPU; scatter-adds use atomicAdd into the F32/F64 accumulator.
#include <cuda_runtime.h>

#include <cstdint>
#include <optional>

#include "core/dtype.h"
#include "core/kernels/cuda_common.cuh"
#include "core/kernels/index.h"
#include "core/kernels/index_detail.h"

namespace mantissa::kernels::cuda {

namespace {

using index_detail::stride0;
using index_detail::visit_element_size;
using index_detail::visit_index;

void check_devices(const char* op, const Tensor& out, std::initializer_list<const Tensor*> ts) {
  MANTISSA_CHECK(out.is_cuda(), op, ": expected a CUDA output, got one on ", out.device());
  for (const Tensor* t : ts)
    MANTISSA_CHECK(t->device() == out.device(), op, ": expected every tensor on ", out.device(), ", got one on ",
                   t->device(), " with shape ", shape_str(t->sizes()));
}

// 32-bit index arithmetic when every flat position fits: the GPU emulates 64-bit division.
template <typename F>
void with_index_type(int64_t total, const F& f) {
  if (total <= int64_t(UINT32_MAX)) f.template operator()<uint32_t>();
  else f.template operator()<uint64_t>();
}

__device__ __forceinline__ void atomic_add(float* p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(double* p, double v) { atomicAdd(p, v); }

// ---- out-of-range scan: the smallest flat position holding a bad index wins (atomicMin), so the
// reported value is the one the CPU's row-major scan reports.
template <typename I>
__global__ void first_bad_kernel(const I* idx, int64_t numel, OffsetCalc<1> calc, int64_t n,
                                 unsigned long long* first) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < numel; i += int64_t(blockDim.x) * gridDim.x) {
    const int64_t v = static_cast<int64_t>(idx[calc.get(i)[0]]);
    if (v < 0 || v >= n) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

template <typename I>
__global__ void bad_value_kernel(const I* idx, OffsetCalc<1> calc, const unsigned long long* first, int64_t* value) {
  const unsigned long long i = *first;
  if (i != ~0ull) *value = static_cast<int64_t>(idx[calc.get(static_cast<int64_t>(i))[0]]);
}

// ---- rows: out [outer, k, inner] = x [outer, n, inner] at rows idx[0..k)
template <typename Index, typename E, typename I>
__global__ void index_select_kernel(E* out, const E* x, const I* idx, int64_t ist, int64_t total, int64_t k,
                                    int64_t n, int64_t inner) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < total; r += int64_t(blockDim.x) * gridDim.x) {
    const Index rr = static_cast<Index>(r);
    const Index row = rr / static_cast<Index>(inner);
    const int64_t c = static_cast<int64_t>(rr - row * static_cast<Index>(inner));
    const int64_t kk = static_cast<int64_t>(row % static_cast<Index>(k));
    const int64_t o = static_cast<int64_t>(row / static_cast<Index>(k));
    out[r] = x[(o * n + static_cast<int64_t>(idx[kk * ist])) * inner + c];
  }
}

template <typename Index, typename T, typename A, typename I>
__global__ void index_add_rows_kernel(A* grad, const T* g, const I* idx, int64_t ist, int64_t total, int64_t k,
                                      int64_t n, int64_t inner) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < total; r += int64_t(blockDim.x) * gridDim.x) {
    const Index rr = static_cast<Index>(r);
    const Index row = rr / static_cast<Index>(inner);
    const int64_t c = static_cast<int64_t>(rr - row * static_cast<Index>(inner));
    const int64_t kk = static_cast<int64_t>(row % static_cast<Index>(k));
    const int64_t o = static_cast<int64_t>(row / static_cast<Index>(k));
    atomic_add(grad + (o * n + static_cast<int64_t>(idx[kk * ist])) * inner + c, static_cast<A>(load(g + r)));
  }
}

// ---- gather over index's shape: operands {out, index, x with its `dim` stride zeroed}
template <typename Index, typename E, typename I>
__global__ void gather_kernel(E* out, const E* x, const I* idx, int64_t total, OffsetCalc<3> calc, int64_t xs) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(blockDim.x) * gridDim.x) {
    const auto off = calc.get(static_cast<Index>(i));
    out[off[0]] = x[off[2] + static_cast<int64_t>(idx[off[1]]) * xs];
  }
}

// operands {g, index, grad with its `dim` stride zeroed}
template <typename Index, typename T, typename A, typename I>
__global__ void gather_backward_kernel(A* grad, const T* g, const I* idx, int64_t total, OffsetCalc<3> calc,
                                       int64_t ds) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(blockDim.x) * gridDim.x) {
    const auto off = calc.get(static_cast<Index>(i));
    atomic_add(grad + off[2] + static_cast<int64_t>(idx[off[1]]) * ds, static_cast<A>(load(g + off[0])));
  }
}

template <typename C>
struct DropoutOp {
  C s;
  __device__ C operator()(C v, C m) const { return v * (m * s); }
};

// The three strided operands of gather / gather_backward over index's shape, the third with its
// `dim` stride zeroed (the index supplies that coordinate).
OffsetCalc<3> gather_calc(const Tensor& index, const Tensor& a, const Tensor& b, int64_t dim, const char* op) {
  Shape bs = b.strides();
  bs[dim] = 0;
  return make_offset_calc<3>(index.sizes(), {a.strides(), index.strides(), bs}, op);
}

}  // namespace

std::optional<int64_t> find_out_of_range(const Tensor& index, int64_t n) {
  std::optional<int64_t> bad;
  const int64_t numel = index.numel();
  if (numel == 0) return bad;
  MANTISSA_CHECK(index.is_cuda(), "index check: expected a CUDA index, got one on ", index.device());
  DeviceGuard guard(index);
  cudaStream_t s = stream_for(index);
  // [first bad position (UINT64_MAX: none), its value], read back together.
  Tensor scratch = empty({2}, TensorOptions(DType::I64).device(index.device()));
  auto* first = static_cast<unsigned long long*>(scratch.data_ptr());
  int64_t* value = scratch.data<int64_t>() + 1;
  MANTISSA_CUDA_CHECK(cudaMemsetAsync(first, 0xff, 2 * sizeof(int64_t), s), "index check");
  const OffsetCalc<1> calc = make_offset_calc<1>(index.sizes(), {index.strides()}, "index check");
  visit_index(index, "index check", [&]<typename I>() {
    first_bad_kernel<I><<<grid_for(numel), kBlock, 0, s>>>(index.data<I>(), numel, calc, n, first);
    MANTISSA_CUDA_LAUNCH_CHECK("index check");
    bad_value_kernel<I><<<1, 1, 0, s>>>(index.data<I>(), calc, first, value);
    MANTISSA_CUDA_LAUNCH_CHECK("index check");
  });
  int64_t host[2];
  MANTISSA_CUDA_CHECK(cudaMemcpyAsync(host, scratch.data_ptr(), sizeof host, cudaMemcpyDeviceToHost, s), "index check");
  MANTISSA_CUDA_CHECK(cudaStreamSynchronize(s), "index check");
  if (static_cast<uint64_t>(host[0]) != ~uint64_t{0}) bad = host[1];
  return bad;
}

void index_select(const Tensor& out, const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& index) {
  check_devices("index_select", out, {&x, &index});
  const int64_t k = index.numel();
  const int64_t total = outer * k * inner;
  if (total == 0) return;
  MANTISSA_CHECK(out.is_contiguous() && x.is_contiguous(), "index_select: CUDA kernel expects contiguous input and "
                 "output (got input strides ", shape_str(x.strides()), ", output strides ", shape_str(out.strides()), ")");
  DeviceGuard guard(out);
  cudaStream_t s = stream_for(out);
  visit_element_size(x, [&]<typename E>() {
    visit_index(index, "index_select", [&]<typename I>() {
      with_index_type(total, [&]<typename Index>() {
        index_select_kernel<Index, E, I><<<grid_for(total), kBlock, 0, s>>>(
            static_cast<E*>(out.data_ptr()), static_cast<const E*>(x.data_ptr()), index.data<I>(), stride0(index),
            total, k, n, inner);
        MANTISSA_CUDA_LAUNCH_CHECK("index_select");
      });
    });
  });
}

void index_add_rows(const Tensor& grad, const Tensor& g, int64_t outer, int64_t n, int64_t inner, const Tensor& index) {
  check_devices("index backward", grad, {&g, &index});
  const int64_t k = index.numel();
  const int64_t total = outer * k * inner;
  if (total == 0) return;
  MANTISSA_CHECK(grad.is_contiguous() && g.is_contiguous(), "index backward: CUDA kernel expects contiguous gradients");
  DeviceGuard guard(grad);
  cudaStream_t s = stream_for(grad);
  visit_dtype<kFloatTypes>(g.dtype(), "index backward", [&]<typename T>() {
    using A = compute_t<T>;
    visit_index(index, "index backward", [&]<typename I>() {
      with_index_type(total, [&]<typename Index>() {
        index_add_rows_kernel<Index, T, A, I><<<grid_for(total), kBlock, 0, s>>>(
            grad.data<A>(), g.data<T>(), index.data<I>(), stride0(index), total, k, n, inner);
        MANTISSA_CUDA_LAUNCH_CHECK("index backward");
      });
    });
  });
}

void gather(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) {
  check_devices("gather", out, {&x, &index});
  const int64_t total = index.numel();
  if (total == 0) return;
  MANTISSA_CHECK(out.sizes() == index.sizes(), "gather: output ", shape_str(out.sizes()), " must have the index's shape ",
                 shape_str(index.sizes()));
  const OffsetCalc<3> calc = gather_calc(index, out, x, dim, "gather");
  DeviceGuard guard(out);
  cudaStream_t s = stream_for(out);
  visit_element_size(x, [&]<typename E>() {
    visit_index(index, "gather", [&]<typename I>() {
      with_index_type(total, [&]<typename Index>() {
        gather_kernel<Index, E, I><<<grid_for(total), kBlock, 0, s>>>(
            static_cast<E*>(out.data_ptr()), static_cast<const E*>(x.data_ptr()), index.data<I>(), total, calc,
            x.stride(dim));
        MANTISSA_CUDA_LAUNCH_CHECK("gather");
      });
    });
  });
}

void gather_backward(const Tensor& grad, const Tensor& g, int64_t dim, const Tensor& index) {
  check_devices("gather backward", grad, {&g, &index});
  const int64_t total = index.numel();
  if (total == 0) return;
  MANTISSA_CHECK(g.sizes() == index.sizes(), "gather backward: gradient ", shape_str(g.sizes()),
                 " must have the index's shape ", shape_str(index.sizes()));
  const OffsetCalc<3> calc = gather_calc(index, g, grad, dim, "gather backward");
  DeviceGuard guard(grad);
  cudaStream_t s = stream_for(grad);
  visit_dtype<kFloatTypes>(g.dtype(), "gather backward", [&]<typename T>() {
    using A = compute_t<T>;
    visit_index(index, "gather backward", [&]<typename I>() {
      with_index_type(total, [&]<typename Index>() {
        gather_backward_kernel<Index, T, A, I><<<grid_for(total), kBlock, 0, s>>>(
            grad.data<A>(), g.data<T>(), index.data<I>(), total, calc, grad.stride(dim));
        MANTISSA_CUDA_LAUNCH_CHECK("gather backward");
      });
    });
  });
}

void dropout_apply(const Tensor& out, const Tensor& x, const Tensor& mask, double scale) {
  visit_dtype<kFloatTypes>(x.dtype(), "dropout", [&]<typename T>() {
    using C = compute_t<T>;
    cuda_map<T, T, T>("dropout", DropoutOp<C>{static_cast<C>(scale)}, out, {x, mask});
  });
}

}  // namespace mantissa::kernels::cuda
