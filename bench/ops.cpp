// bench/ops: matmul GFLOP/s (square sizes) and GB/s of copy, add, relu, sum and the F32<->BF16
// casts on large vectors, on the CPU or on CUDA, printed as one JSON object. bench/peers/
// torch_ops.py does the same work in PyTorch; scripts/bench-ops.sh runs both and compares.
//   ops [--device cpu|cuda] [--threads N] [--sizes 256,512,1024,2048] [--numel N] [--min-time 0.5]
// CPU defaults: F32 and BF16 matmul at 256..2048, 16M elements. CUDA defaults: F32, F16 and
// BF16 matmul at 1024, 2048, 4096, and 64M elements (256 MB per F32 vector, several times the
// L2), so the bandwidth figures are HBM's; the copy is the bandwidth reference.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "core/kernels/convert.h"
#include "core/kernels/cuda_runtime_api.h"
#include "core/kernels/device_memory.h"

#ifdef MANTISSA_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

using namespace mantissa;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Best time per call of fn (seconds): the least-disturbed measurement on a shared machine.
// CPU: each call is timed alone. CUDA: launches are asynchronous, so calls are timed in
// batches between two device synchronizations; a batch runs >= 5 ms, which makes the
// synchronization's own cost (tens of microseconds) negligible, and the figure is the batch
// time over its calls.
double best_time(const std::function<void()>& fn, double min_total, const Device& device) {
  if (device.is_cpu()) {
    fn();  // warm-up: primitive creation, page faults
    double best = 1e30, total = 0;
    int runs = 0;
    while (total < min_total || runs < 5) {
      const auto t0 = std::chrono::steady_clock::now();
      fn();
      const double dt = seconds_since(t0);
      best = std::min(best, dt);
      total += dt;
      ++runs;
    }
    return best;
  }
  const int dev = device.index;
  fn();  // warm-up: cuBLASLt heuristics, allocator blocks, module loading
  kernels::cuda_synchronize(dev);
  // Calibrate the batch size: double it until one batch lasts >= 5 ms.
  int64_t batch = 1;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < batch; ++i) fn();
    kernels::cuda_synchronize(dev);
    if (seconds_since(t0) >= 5e-3 || batch >= (int64_t(1) << 20)) break;
    batch *= 2;
  }
  double best = 1e30, total = 0;
  int runs = 0;
  while (total < min_total || runs < 5) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < batch; ++i) fn();
    kernels::cuda_synchronize(dev);
    const double dt = seconds_since(t0);
    best = std::min(best, dt / static_cast<double>(batch));
    total += dt;
    ++runs;
  }
  return best;
}

[[noreturn]] void usage(const std::string& msg) {
  std::fprintf(stderr,
               "ops: %s\nusage: ops [--device cpu|cuda] [--threads N] [--sizes a,b,..] [--numel N] [--min-time S]\n",
               msg.c_str());
  std::exit(2);
}

std::vector<int64_t> parse_list(const std::string& flag, const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 1) usage(flag + " " + s + ": expected positive integers separated by commas");
    out.push_back(v);
  }
  if (out.empty()) usage(flag + " needs at least one size");
  return out;
}

int64_t parse_count(const std::string& flag, const std::string& s) {
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || v < 1) usage(flag + " " + s + ": expected a positive integer");
  return v;
}

std::string gpu_name([[maybe_unused]] int device) {
#ifdef MANTISSA_HAVE_CUDA
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, device) == cudaSuccess) return prop.name;
#endif
  return "unknown";
}

}  // namespace

int main(int argc, char** argv) {
  std::string device_name = "cpu";
  int threads = 2;
  std::vector<int64_t> sizes;
  int64_t numel = 0;
  double min_time = 0.5;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--device") device_name = next();
    else if (a == "--threads") threads = static_cast<int>(parse_count(a, next()));
    else if (a == "--sizes") sizes = parse_list(a, next());
    else if (a == "--numel") numel = parse_count(a, next());
    else if (a == "--min-time") {
      const std::string v = next();
      char* end = nullptr;
      min_time = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(min_time >= 0)) usage("--min-time " + v + ": expected seconds >= 0");
    } else usage("unknown flag " + a);
  }
  if (device_name != "cpu" && device_name != "cuda") usage("--device " + device_name + ": expected cpu or cuda");
  const Device device = device_name == "cuda" ? kCUDA : kCPU;
  if (device.is_cuda() && !kernels::cuda_is_available()) {
    std::fprintf(stderr, "ops: --device cuda: CUDA is not usable here (%s)\n", kernels::cuda_unavailable_reason());
    return 1;
  }
  if (sizes.empty()) sizes = device.is_cuda() ? std::vector<int64_t>{1024, 2048, 4096} : std::vector<int64_t>{256, 512, 1024, 2048};
  if (numel == 0) numel = device.is_cuda() ? (int64_t(1) << 26) : (int64_t(1) << 24);
  // Threads also generate the inputs on the CPU before they are copied to the device.
  omp_set_num_threads(threads);

  std::vector<std::string> rows;
  char buf[256];
  try {
    NoGradGuard no_grad;
    // Inputs are drawn and rounded on the CPU, then copied: the device benchmark depends on
    // nothing but the op it times.
    auto input = [&](const Shape& s, DType dt) { return randn(s).to(dt).to(device); };
    std::vector<DType> mm_types{DType::F32, DType::BF16};
    if (device.is_cuda()) mm_types = {DType::F32, DType::F16, DType::BF16};
    for (DType dt : mm_types) {
      for (int64_t n : sizes) {
        Tensor a = input({n, n}, dt), b = input({n, n}, dt);
        Tensor c;
        const double t = best_time([&] { c = mm(a, b); }, min_time, device);
        const double gflops = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n) / t / 1e9;
        std::snprintf(buf, sizeof(buf), "{\"op\": \"matmul\", \"dtype\": \"%s\", \"size\": %lld, \"gflops\": %.1f}",
                      dtype_name(dt), static_cast<long long>(n), gflops);
        rows.push_back(buf);
      }
    }

    // GB/s counts the bytes each op must read plus the bytes it writes.
    auto bandwidth = [&](const char* op, const char* dtype, double bytes, const std::function<void()>& fn) {
      const double t = best_time(fn, min_time, device);
      std::snprintf(buf, sizeof(buf), "{\"op\": \"%s\", \"dtype\": \"%s\", \"numel\": %lld, \"gbps\": %.1f}", op, dtype,
                    static_cast<long long>(numel), bytes / t / 1e9);
      rows.push_back(buf);
    };
    Tensor x = input({numel}, DType::F32), y = input({numel}, DType::F32);
    Tensor out;
    const double n = static_cast<double>(numel);
    Tensor dst = empty({numel}, TensorOptions(DType::F32).device(device));
    bandwidth("copy", "F32", 8 * n, [&] { dst.copy_(x); });
    bandwidth("add", "F32", 12 * n, [&] { out = add(x, y); });
    bandwidth("relu", "F32", 8 * n, [&] { out = relu(x); });
    bandwidth("sum", "F32", 4 * n, [&] { out = sum(x); });
    Tensor xb = x.to(DType::BF16);
    bandwidth("cast_f32_to_bf16", "F32->BF16", 6 * n, [&] { out = x.to(DType::BF16); });
    bandwidth("cast_bf16_to_f32", "BF16->F32", 6 * n, [&] { out = xb.to(DType::F32); });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ops: error on %s: %s\n", device.str().c_str(), e.what());
    return 1;
  }

  std::printf("{\"framework\": \"mantissa\", \"device\": \"%s\", \"threads\": %d, ", device_name.c_str(), threads);
  if (device.is_cuda()) std::printf("\"gpu\": \"%s\", ", gpu_name(device.index).c_str());
  std::printf("\"convert_isa\": \"%s\", \"results\": [\n", kernels::convert_isa());
  for (size_t i = 0; i < rows.size(); ++i) std::printf("  %s%s\n", rows[i].c_str(), i + 1 < rows.size() ? "," : "");
  std::printf("]}\n");
  return 0;
}
