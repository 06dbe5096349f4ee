// The CUDA runtime layer: mantissa::cuda (availability, memory statistics, streams), the
// caching allocator, pinned memory, copies between devices and on a device (every dtype pair
// bit for bit against the CPU, all 65536 F16/BF16 patterns), fill, and the DataLoader's
// pin_memory option. The CudaAbsent cases run where no GPU is usable; the CudaDevice cases
// skip there.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/cuda.h"
#include "core/kernels/copy.h"
#include "core/kernels/cuda_runtime_api.h"
#include "core/kernels/device_memory.h"
#include "core/tensor.h"
#include "data/loader.h"
#include "data/synthetic.h"

namespace mantissa {
namespace {

#define SKIP_WITHOUT_CUDA()                                                                    \
  do {                                                                                         \
    if (kernels::cuda_device_count() == 0) GTEST_SKIP() << kernels::cuda_unavailable_reason(); \
  } while (0)

#define SKIP_WITH_CUDA()                                                    \
  do {                                                                      \
    if (kernels::cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is usable"; \
  } while (0)

const DType kAll[] = {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I8,
                      DType::U8,  DType::I32, DType::I64, DType::Bool};

// The raw bytes of a tensor's elements in logical order (via a contiguous CPU copy).
std::vector<unsigned char> bytes_of(const Tensor& t) {
  Tensor c = empty(t.sizes(), TensorOptions(t.dtype()));
  kernels::copy(c, t);
  const auto* p = static_cast<const unsigned char*>(c.data_ptr());
  return std::vector<unsigned char>(p, p + c.nbytes());
}

// Values of every dtype's interesting kinds: signed, fractional, large, NaN, Inf, ties.
Tensor mixed_values(const Shape& shape, DType dtype, uint32_t seed) {
  std::mt19937 gen(seed);
  const double specials[] = {0.0, -0.0, 0.5, -1.5, 2.5, 127.0, 128.0, -129.0, 255.0, 256.0, 65504.0, 65520.0,
                             1e-8, 3e38, -1e10, std::numeric_limits<double>::infinity(),
                             -std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()};
  std::uniform_real_distribution<double> dist(-300.0, 300.0);
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = i % 3 == 0 ? specials[(i / 3) % std::size(specials)] : dist(gen);
  Tensor t = empty(shape, TensorOptions(dtype));
  kernels::copy(t, from_vector(v, shape));
  return t;
}

// ---- without a device -------------------------------------------------------------------------

TEST(CudaAbsent, ReportsNoDeviceAndAReason) {
  SKIP_WITH_CUDA();
  EXPECT_FALSE(cuda::is_available());
  EXPECT_EQ(cuda::device_count(), 0);
  EXPECT_FALSE(cuda::unavailable_reason().empty());
}

TEST(CudaAbsent, MemoryStatisticsAreZero) {
  SKIP_WITH_CUDA();
  EXPECT_EQ(cuda::memory_allocated(), 0u);
  EXPECT_EQ(cuda::memory_reserved(), 0u);
  EXPECT_EQ(cuda::max_memory_allocated(), 0u);
  EXPECT_EQ(cuda::max_memory_reserved(), 0u);
  cuda::reset_peak_memory_stats();
  cuda::empty_cache();
  const cuda::MemoryStats s = cuda::memory_stats();
  EXPECT_EQ(s.allocated + s.reserved + s.peak_allocated + s.peak_reserved, 0u);
  EXPECT_EQ(s.alloc_calls + s.cache_hits + s.driver_allocs + s.driver_frees, 0u);
  EXPECT_EQ(s.pinned_allocated + s.pinned_cached, 0u);
  EXPECT_EQ(cuda::current_stream(), nullptr);
}

TEST(CudaAbsent, CudaTensorsAndActionsThrowNamingTheReason) {
  SKIP_WITH_CUDA();
  const std::string reason = cuda::unavailable_reason();
  try {
    (void)empty({2, 3}, TensorOptions().device(kCUDA));
    FAIL() << "allocating a CUDA tensor without a device did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(reason), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cuda:0"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)ones({4}).to(kCUDA), Error);
  EXPECT_THROW((void)zeros({4}, TensorOptions().device(kCUDA)), Error);
  EXPECT_THROW(cuda::synchronize(), Error);
  EXPECT_THROW(cuda::Stream s, Error);
}

TEST(CudaAbsent, PinMemoryFallsBackToOrdinaryMemory) {
  SKIP_WITH_CUDA();
  Tensor x = mixed_values({4, 6}, DType::F32, 1).t();  // non-contiguous
  Tensor p = x.pin_memory();
  EXPECT_FALSE(p.is_pinned());
  EXPECT_TRUE(p.is_contiguous());
  EXPECT_EQ(p.sizes(), x.sizes());
  EXPECT_EQ(bytes_of(p), bytes_of(x));
  Tensor e = empty({3}, TensorOptions().pinned_memory());
  EXPECT_FALSE(e.is_pinned());
  EXPECT_FALSE(kernels::pinned_memory_available());
  EXPECT_THROW(kernels::pinned_alloc(16), Error);
}

// ---- either way -------------------------------------------------------------------------------

TEST(CudaRuntime, PinnedMemoryIsHostOnly) {
  EXPECT_THROW((void)empty({2}, TensorOptions().device(kCUDA).pinned_memory()), Error);
  Tensor x = arange(6.0);
  Tensor p = x.pin_memory();
  EXPECT_EQ(p.is_pinned(), kernels::pinned_memory_available());
  EXPECT_EQ(to_vector<float>(p), to_vector<float>(x));
  // Already pinned (or not pinnable) and contiguous: pinning again is a no-op only when pinned.
  if (p.is_pinned()) {
    EXPECT_TRUE(p.pin_memory().is_same(p));
  }
}

TEST(CudaRuntime, LoaderPinMemoryYieldsIdenticalBatches) {
  auto ds = std::make_shared<data::SyntheticDataset>(
      data::SyntheticOptions().set_size(37).set_sample_shape({1, 6, 6}).set_num_classes(3).set_seed(5));
  for (bool augment : {false, true}) {
    SCOPED_TRACE(augment ? "normalize + crop + flip" : "plain");
    data::DataLoaderOptions o(8);
    o.set_shuffle(true).set_seed(11);
    if (augment) o.set_normalize({0.5f}, {0.25f}).set_random_crop(2).set_random_flip(true);
    data::DataLoader plain(ds, o);
    data::DataLoader pinned(ds, data::DataLoaderOptions(o).set_pin_memory(true));
    std::vector<data::Example> want;
    for (auto& b : plain) want.push_back(b);
    size_t i = 0;
    for (auto& b : pinned) {
      ASSERT_LT(i, want.size());
      EXPECT_EQ(b.data.is_pinned(), kernels::pinned_memory_available());
      EXPECT_EQ(b.target.is_pinned(), kernels::pinned_memory_available());
      EXPECT_EQ(b.data.sizes(), want[i].data.sizes());
      EXPECT_EQ(bytes_of(b.data), bytes_of(want[i].data));
      EXPECT_EQ(bytes_of(b.target), bytes_of(want[i].target));
      ++i;
    }
    EXPECT_EQ(i, want.size());
  }
}

// ---- with a device ----------------------------------------------------------------------------

TEST(CudaDevice, AllocatorReusesBlocksAndCountsThem) {
  SKIP_WITHOUT_CUDA();
  cuda::synchronize();
  cuda::empty_cache();
  ASSERT_EQ(cuda::memory_allocated(), 0u) << "a tensor from an earlier test is still alive";
  EXPECT_EQ(cuda::memory_reserved(), 0u);
  cuda::reset_peak_memory_stats();
  {
    Tensor a = empty({1000}, TensorOptions().device(kCUDA));  // 4000 bytes -> one 512-byte multiple
    EXPECT_EQ(cuda::memory_allocated(), 4096u);
    EXPECT_EQ(cuda::memory_reserved(), size_t(2) << 20);  // small blocks share 2 MiB segments
    Tensor b = empty({100}, TensorOptions().device(kCUDA));  // carved from the same segment
    EXPECT_EQ(cuda::memory_allocated(), 4096u + 512u);
    EXPECT_EQ(cuda::memory_reserved(), size_t(2) << 20);
    Tensor big = empty({(3 << 20) / 4}, TensorOptions().device(kCUDA));  // 3 MiB -> 4 MiB
    EXPECT_EQ(cuda::memory_allocated(), 4096u + 512u + (size_t(4) << 20));
    EXPECT_EQ(cuda::memory_reserved(), size_t(6) << 20);
  }
  EXPECT_EQ(cuda::memory_allocated(), 0u);
  EXPECT_EQ(cuda::memory_reserved(), size_t(6) << 20);  // cached, not returned
  EXPECT_EQ(cuda::max_memory_allocated(), 4096u + 512u + (size_t(4) << 20));
  cuda::MemoryStats s0 = cuda::memory_stats();
  EXPECT_EQ(s0.alloc_calls, 3u);
  EXPECT_EQ(s0.driver_allocs, 2u);
  EXPECT_EQ(s0.cache_hits, 1u);  // the second small block
  {
    Tensor again = empty({(3 << 20) / 4}, TensorOptions().device(kCUDA));
    Tensor small = empty({1000}, TensorOptions().device(kCUDA));
    cuda::MemoryStats s1 = cuda::memory_stats();
    EXPECT_EQ(s1.driver_allocs, 2u);
    EXPECT_EQ(s1.cache_hits, 3u);
    EXPECT_EQ(cuda::memory_reserved(), size_t(6) << 20);
  }
  cuda::reset_peak_memory_stats();
  EXPECT_EQ(cuda::max_memory_allocated(), 0u);
  EXPECT_EQ(cuda::max_memory_reserved(), size_t(6) << 20);
  EXPECT_EQ(cuda::memory_stats().alloc_calls, 0u);
  cuda::empty_cache();
  EXPECT_EQ(cuda::memory_reserved(), 0u);
  EXPECT_EQ(cuda::memory_stats().driver_frees, 2u);
  // A zero-byte tensor costs nothing.
  Tensor z = empty({0, 5}, TensorOptions().device(kCUDA));
  EXPECT_EQ(cuda::memory_allocated(), 0u);
}

TEST(CudaDevice, RoundTripsEveryDtypeBitForBit) {
  SKIP_WITHOUT_CUDA();
  for (DType dt : kAll) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor x = mixed_values({5, 7, 3}, dt, 2);
    Tensor d = x.to(kCUDA);
    EXPECT_TRUE(d.is_cuda());
    EXPECT_EQ(bytes_of(d.to(kCPU)), bytes_of(x));
    // Non-contiguous sources on either side.
    Tensor xt = x.permute({2, 0, 1}).slice(1, 1, 5, 2);
    EXPECT_EQ(bytes_of(xt.to(kCUDA)), bytes_of(xt));
    Tensor dt_view = d.permute({2, 0, 1}).slice(1, 1, 5, 2);
    EXPECT_EQ(bytes_of(dt_view.to(kCPU)), bytes_of(xt));
    EXPECT_EQ(bytes_of(d.clone()), bytes_of(x));
    EXPECT_EQ(bytes_of(dt_view.contiguous()), bytes_of(xt));
    // Cross-device copy into a non-contiguous destination, with broadcasting.
    Tensor dst = zeros({3, 5, 7}, TensorOptions(dt).device(kCUDA)).permute({1, 2, 0});
    dst.copy_(x);
    EXPECT_EQ(bytes_of(dst), bytes_of(x));
    Tensor row = mixed_values({3}, dt, 3);
    Tensor bdst = empty({4, 3}, TensorOptions(dt).device(kCUDA));
    bdst.copy_(row);
    Tensor bwant = empty({4, 3}, TensorOptions(dt));
    bwant.copy_(row);
    EXPECT_EQ(bytes_of(bdst), bytes_of(bwant));
  }
}

TEST(CudaDevice, ConversionsMatchTheCpuForEveryDtypePair) {
  SKIP_WITHOUT_CUDA();
  for (DType from : kAll) {
    Tensor x = mixed_values({4, 9, 5}, from, 4);
    Tensor xd = x.to(kCUDA);
    for (DType to : kAll) {
      SCOPED_TRACE(std::string(dtype_name(from)) + " -> " + dtype_name(to));
      EXPECT_EQ(bytes_of(xd.to(to)), bytes_of(x.to(to)));
      // Strided and broadcast on the device.
      Tensor v = xd.transpose(0, 2).slice(1, 0, 9, 3);
      Tensor want = empty(v.sizes(), TensorOptions(to));
      want.copy_(x.transpose(0, 2).slice(1, 0, 9, 3));
      Tensor got = empty(v.sizes(), TensorOptions(to).device(kCUDA));
      got.copy_(v);
      EXPECT_EQ(bytes_of(got), bytes_of(want));
      // CPU source, CUDA destination of another dtype: converted on the device.
      Tensor got2 = empty(x.sizes(), TensorOptions(to).device(kCUDA));
      got2.copy_(x);
      EXPECT_EQ(bytes_of(got2), bytes_of(x.to(to)));
    }
  }
}

// Every 16-bit pattern widened, and a dense set of F32/F64 values narrowed, on the device and
// on the CPU: identical bits (NaN payloads, subnormals, ties and overflow included).
TEST(CudaDevice, SixteenBitConversionsAreBitExactForAllPatterns) {
  SKIP_WITHOUT_CUDA();
  for (DType half : {DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtype_name(half));
    Tensor bits = empty({65536}, TensorOptions(half));
    auto* p = static_cast<uint16_t*>(bits.data_ptr());
    for (uint32_t i = 0; i < 65536; ++i) p[i] = static_cast<uint16_t>(i);
    Tensor dev = bits.to(kCUDA);
    for (DType wide : {DType::F32, DType::F64}) {
      EXPECT_EQ(bytes_of(dev.to(wide)), bytes_of(bits.to(wide)));
    }
    // Narrowing: every widened pattern, the midpoints between neighbours (ties), one F32 ulp
    // either side of them, and random F32 bit patterns.
    std::vector<float> f;
    const std::vector<float> widened = to_vector<float>(bits.to(DType::F32));
    for (uint32_t i = 0; i + 1 < 65536; ++i) {
      f.push_back(widened[i]);
      const float a = widened[i], b = widened[i + 1];
      if (std::isfinite(a) && std::isfinite(b)) {
        const float mid = static_cast<float>((static_cast<double>(a) + b) / 2);
        f.push_back(mid);
        f.push_back(std::nextafter(mid, std::numeric_limits<float>::infinity()));
        f.push_back(std::nextafter(mid, -std::numeric_limits<float>::infinity()));
      }
    }
    std::mt19937 gen(7);
    for (int i = 0; i < 200000; ++i) {
      uint32_t u = gen();
      float v;
      std::memcpy(&v, &u, 4);
      f.push_back(v);
    }
    Tensor src = from_vector(f, {static_cast<int64_t>(f.size())});
    EXPECT_EQ(bytes_of(src.to(kCUDA).to(half)), bytes_of(src.to(half)));
    // Doubles just off the F32 values: a narrowing through float would round twice.
    std::vector<double> d(f.begin(), f.end());
    for (double& x : d) x *= 1.0000000001;
    Tensor nudged = from_vector(d, {static_cast<int64_t>(d.size())});
    EXPECT_EQ(bytes_of(nudged.to(kCUDA).to(half)), bytes_of(nudged.to(half)));
  }
}

TEST(CudaDevice, FillAndFactoriesMatchTheCpu) {
  SKIP_WITHOUT_CUDA();
  for (DType dt : kAll) {
    SCOPED_TRACE(dtype_name(dt));
    for (double v : {0.0, -0.0, 1.0, 3.7, -200.5, 1e10, std::numeric_limits<double>::quiet_NaN()}) {
      EXPECT_EQ(bytes_of(full({7, 3}, v, TensorOptions(dt).device(kCUDA))), bytes_of(full({7, 3}, v, dt)));
    }
    EXPECT_EQ(bytes_of(zeros({5}, TensorOptions(dt).device(kCUDA))), bytes_of(zeros({5}, dt)));
    EXPECT_EQ(bytes_of(ones({5}, TensorOptions(dt).device(kCUDA))), bytes_of(ones({5}, dt)));
    // A strided view: only its elements change.
    Tensor d = zeros({4, 6}, TensorOptions(dt).device(kCUDA));
    Tensor c = zeros({4, 6}, dt);
    d.slice(1, 1, 6, 2).fill_(2.0);
    c.slice(1, 1, 6, 2).fill_(2.0);
    EXPECT_EQ(bytes_of(d), bytes_of(c));
  }
  EXPECT_EQ(bytes_of(arange(0.0, 10.0, 0.5, TensorOptions(DType::F16).device(kCUDA))),
            bytes_of(arange(0.0, 10.0, 0.5, DType::F16)));
  const std::string s = full({2}, 1.5, TensorOptions().device(kCUDA)).str();
  EXPECT_NE(s.find("1.5000"), std::string::npos) << s;
  EXPECT_NE(s.find("device='cuda:0'"), std::string::npos) << s;
}

TEST(CudaDevice, LargeTransfersThroughStagingAndPinnedMemory) {
  SKIP_WITHOUT_CUDA();
  // 20 MiB: three staging chunks each way.
  const int64_t n = 5 << 20;
  Tensor x = arange(static_cast<double>(n), DType::I32);
  Tensor d = x.to(kCUDA);
  EXPECT_EQ(bytes_of(d.to(kCPU)), bytes_of(x));
  // Pinned source: one asynchronous DMA; synchronize before reading the device copy's source.
  Tensor p = x.pin_memory();
  EXPECT_TRUE(p.is_pinned());
  Tensor dp = p.to(kCUDA);
  cuda::synchronize();
  EXPECT_EQ(bytes_of(dp), bytes_of(x));
  // Device -> pinned destination.
  Tensor back = empty({n}, TensorOptions(DType::I32).pinned_memory());
  back.copy_(dp);
  EXPECT_EQ(bytes_of(back), bytes_of(x));
  EXPECT_GT(cuda::memory_stats().pinned_allocated, 0u);
  // A freed pinned block comes back from the cache once its copies have finished.
  const auto hits = kernels::pinned_memory_stats().cache_hits;
  p = Tensor();
  cuda::synchronize();
  Tensor p2 = x.pin_memory();
  EXPECT_GT(kernels::pinned_memory_stats().cache_hits, hits);
}

TEST(CudaDevice, StreamGuardSetsAndRestoresTheCurrentStream) {
  SKIP_WITHOUT_CUDA();
  EXPECT_EQ(cuda::current_stream(), nullptr);
  cuda::Stream s;
  EXPECT_NE(s.handle(), nullptr);
  Tensor x = mixed_values({64, 33}, DType::F32, 9);
  Tensor y;
  {
    cuda::StreamGuard g(s);
    EXPECT_EQ(cuda::current_stream(), s.handle());
    {
      cuda::Stream inner;
      cuda::StreamGuard g2(inner);
      EXPECT_EQ(cuda::current_stream(), inner.handle());
    }
    EXPECT_EQ(cuda::current_stream(), s.handle());
    y = x.to(kCUDA).to(DType::F16).t().contiguous();
    s.synchronize();
    EXPECT_TRUE(s.query());
  }
  EXPECT_EQ(cuda::current_stream(), nullptr);
  EXPECT_EQ(bytes_of(y), bytes_of(x.to(DType::F16).t().contiguous()));
  // Blocks allocated on a stream that is then destroyed stay usable by the default stream.
  cuda::empty_cache();
  const uint64_t drivers = cuda::memory_stats().driver_allocs;
  {
    cuda::Stream t;
    cuda::StreamGuard g(t);
    Tensor tmp = empty({1 << 20}, TensorOptions().device(kCUDA));
  }
  Tensor reuse = empty({1 << 20}, TensorOptions().device(kCUDA));
  EXPECT_EQ(cuda::memory_stats().driver_allocs, drivers + 1);  // the retired block was reused
}

}  // namespace
}  // namespace mantissa
