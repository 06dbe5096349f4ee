// CUDA copy and fill: same-dtype copies move bits (cudaMemcpyAsync when both sides are
// contiguous, a strided bit-moving kernel otherwise); converting copies go through cuda_map,
// whose load/store round exactly like the CPU's convert_value. Also the host<->device byte
// transfers through pinned staging memory.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>

#include "core/kernels/copy.h"
#include "core/kernels/cuda_common.cuh"
#include "core/kernels/cuda_runtime_api.h"

namespace mantissa::kernels::cuda {

namespace {
// load() widens to the compute type and store() applies the conversion rules, so the element
// functor of a converting copy is the identity.
struct Identity {
  template <typename V>
  __device__ __forceinline__ V operator()(V v) const { return v; }
};

template <typename T>
struct Constant {
  T value;
  __device__ __forceinline__ T operator()() const { return value; }
};

template <typename U, typename Index>
__global__ void copy_bits_kernel(int64_t n, OffsetCalc<2> calc, U* out, const U* in) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x) {
    const auto off = calc.get(static_cast<Index>(i));
    out[off[0]] = in[off[1]];
  }
}

template <typename U>
void launch_copy_bits(const Tensor& dst, const Tensor& src, cudaStream_t s) {
  const int64_t n = dst.numel();
  std::array<Shape, 2> strides{dst.strides(), broadcast_strides_to(src, dst.sizes())};
  const auto calc = make_offset_calc<2>(dst.sizes(), strides, "copy");
  auto* out = static_cast<U*>(dst.data_ptr());
  const auto* in = static_cast<const U*>(src.data_ptr());
  if (n <= int64_t(UINT32_MAX)) copy_bits_kernel<U, uint32_t><<<grid_for(n), kBlock, 0, s>>>(n, calc, out, in);
  else copy_bits_kernel<U, int64_t><<<grid_for(n), kBlock, 0, s>>>(n, calc, out, in);
  MANTISSA_CUDA_LAUNCH_CHECK("copy");
}

void check_same_device(const Tensor& dst, const Tensor& src) {
  MANTISSA_CHECK(dst.device() == src.device(), "copy: the CUDA copy kernel needs both tensors on one device, got ",
                 src.device(), " -> ", dst.device());
  MANTISSA_CHECK(src.dim() <= dst.dim() && broadcast_shapes(src.sizes(), dst.sizes(), "copy") == dst.sizes(),
                 "copy: source ", shape_str(src.sizes()), " cannot be broadcast to destination ", shape_str(dst.sizes()));
}
}  // namespace

void copy(const Tensor& dst, const Tensor& src) {
  check_same_device(dst, src);
  const int64_t n = dst.numel();
  if (n == 0) return;
  DeviceGuard guard(dst);
  cudaStream_t s = stream_for(dst);
  if (dst.dtype() == src.dtype()) {
    if (dst.is_contiguous() && src.is_contiguous() && dst.sizes() == src.sizes()) {
      if (dst.data_ptr() != src.data_ptr()) {
        MANTISSA_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.nbytes(), cudaMemcpyDeviceToDevice, s),
                            "copy");
      }
      return;
    }
    switch (dst.element_size()) {
      case 1: launch_copy_bits<uint8_t>(dst, src, s); return;
      case 2: launch_copy_bits<uint16_t>(dst, src, s); return;
      case 4: launch_copy_bits<uint32_t>(dst, src, s); return;
      case 8: launch_copy_bits<uint64_t>(dst, src, s); return;
      default: MANTISSA_ASSERT(false, "element size ", dst.element_size());
    }
  }
  visit_dtype<kAllTypes>(dst.dtype(), "copy", [&]<typename D>() {
    visit_dtype<kAllTypes>(src.dtype(), "copy", [&]<typename S>() {
      if constexpr (!std::is_same_v<D, S>) cuda_map<D, S>("copy", Identity{}, dst, {src});
    });
  });
}

void fill(const Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  MANTISSA_CHECK(dst.is_cuda(), "fill: expected a CUDA tensor, got one on ", dst.device());
  visit_dtype<kAllTypes>(dst.dtype(), "fill", [&]<typename D>() {
    const D v = convert_value<D>(value);
    if (dst.is_contiguous()) {
      // All-zero bit patterns (0, +0.0, false) are a memset, which runs at copy-engine speed.
      unsigned char bytes[sizeof(D)];
      std::memcpy(bytes, &v, sizeof(D));
      if (std::all_of(bytes, bytes + sizeof(D), [](unsigned char b) { return b == 0; })) {
        DeviceGuard guard(dst);
        MANTISSA_CUDA_CHECK(cudaMemsetAsync(dst.data_ptr(), 0, dst.nbytes(), stream_for(dst)), "fill");
        return;
      }
    }
    cuda_map<D>("fill", Constant<D>{v}, dst, {});
  });
}

// ---- host <-> device transfers ----------------------------------------------------------------
namespace {
// Pageable transfers are cut into chunks so the memcpy into (or out of) one staging buffer
// overlaps the DMA of the previous one.
constexpr size_t kChunk = size_t(8) << 20;

struct PinnedBuffer {
  void* ptr = nullptr;
  explicit PinnedBuffer(size_t n) : ptr(pinned_alloc(n)) {}
  ~PinnedBuffer() { pinned_free(ptr); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
};

struct Event {
  cudaEvent_t ev = nullptr;
  Event() { MANTISSA_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "copy"); }
  ~Event() { cudaEventDestroy(ev); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
};
}  // namespace

void copy_host_to_device(void* dst, int device, const void* src, size_t nbytes, void* src_pinned_block) {
  if (nbytes == 0) return;
  DeviceGuard guard(device);
  auto s = static_cast<cudaStream_t>(current_stream_handle(device));
  if (src_pinned_block != nullptr) {
    MANTISSA_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, s), "copy");
    pinned_record_stream(src_pinned_block, device, s);
    return;
  }
  for (size_t done = 0; done < nbytes; done += kChunk) {
    const size_t n = std::min(kChunk, nbytes - done);
    // Each chunk gets its own staging buffer; the cache hands a buffer out again only after the
    // copy recorded on it has finished, so nothing here waits for the GPU.
    PinnedBuffer buf(n);
    std::memcpy(buf.ptr, static_cast<const char*>(src) + done, n);
    MANTISSA_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + done, buf.ptr, n, cudaMemcpyHostToDevice, s), "copy");
    pinned_record_stream(buf.ptr, device, s);
  }
}

void copy_device_to_host(void* dst, const void* src, int device, size_t nbytes, bool dst_pinned) {
  if (nbytes == 0) return;
  DeviceGuard guard(device);
  auto s = static_cast<cudaStream_t>(current_stream_handle(device));
  if (dst_pinned || nbytes <= 4096) {
    // Pinned: a direct DMA. Tiny copies (item(), a loss value): the driver's own staging is
    // cheaper than ours.
    MANTISSA_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, s), "copy");
    MANTISSA_CUDA_CHECK(cudaStreamSynchronize(s), "copy");
    return;
  }
  // Two staging buffers: while chunk k is copied out on the host, chunk k+1 is in flight.
  const size_t chunk = std::min(kChunk, nbytes);
  PinnedBuffer bufs[2] = {PinnedBuffer(chunk), PinnedBuffer(chunk)};
  Event events[2];
  const size_t chunks = (nbytes + kChunk - 1) / kChunk;
  auto start = [&](size_t k) {
    const size_t off = k * kChunk;
    const size_t n = std::min(kChunk, nbytes - off);
    MANTISSA_CUDA_CHECK(
        cudaMemcpyAsync(bufs[k % 2].ptr, static_cast<const char*>(src) + off, n, cudaMemcpyDeviceToHost, s), "copy");
    MANTISSA_CUDA_CHECK(cudaEventRecord(events[k % 2].ev, s), "copy");
    // Should a later step throw, the buffer goes back to the cache while this copy may still
    // write it; the recorded use keeps it from being handed out before the copy is done.
    pinned_record_stream(bufs[k % 2].ptr, device, s);
  };
  start(0);
  for (size_t k = 0; k < chunks; ++k) {
    if (k + 1 < chunks) start(k + 1);
    MANTISSA_CUDA_CHECK(cudaEventSynchronize(events[k % 2].ev), "copy");
    const size_t off = k * kChunk;
    std::memcpy(static_cast<char*>(dst) + off, bufs[k % 2].ptr, std::min(kChunk, nbytes - off));
  }
}

}  // namespace mantissa::kernels::cuda
