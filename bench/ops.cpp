// bench/ops: matmul GFLOP/s (F32, BF16; square sizes) and GB/s of add, relu, sum and the
// F32<->BF16 casts on 16M elements, printed as one JSON object. bench/peers/torch_ops.py does
// the same work in PyTorch; scripts/bench-ops.sh runs both and prints the comparison.
//   ops [--threads N] [--sizes 256,512,1024,2048] [--numel 16777216] [--min-time 0.5]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "core/kernels/convert.h"

using namespace mantissa;

namespace {

// Best time of repeated runs (seconds): the least-disturbed run on a shared machine.
double best_time(const std::function<void()>& fn, double min_total) {
  fn();  // warm-up: primitive creation, page faults
  double best = 1e30, total = 0;
  int runs = 0;
  while (total < min_total || runs < 5) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, dt);
    total += dt;
    ++runs;
  }
  return best;
}

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stoll(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2;
  std::vector<int64_t> sizes{256, 512, 1024, 2048};
  int64_t numel = 16 * 1024 * 1024;
  double min_time = 0.5;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "ops: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads") threads = std::stoi(next());
    else if (a == "--sizes") sizes = parse_list(next());
    else if (a == "--numel") numel = std::stoll(next());
    else if (a == "--min-time") min_time = std::stod(next());
    else {
      std::fprintf(stderr, "usage: ops [--threads N] [--sizes a,b,..] [--numel N] [--min-time S]\n");
      return 2;
    }
  }
  omp_set_num_threads(threads);
  NoGradGuard no_grad;
  std::vector<std::string> rows;
  char buf[256];

  for (DType dt : {DType::F32, DType::BF16}) {
    for (int64_t n : sizes) {
      Tensor a = randn({n, n}).to(dt), b = randn({n, n}).to(dt);
      Tensor c;
      double t = best_time([&] { c = mm(a, b); }, min_time);
      double gflops = 2.0 * n * n * n / t / 1e9;
      std::snprintf(buf, sizeof(buf), "{\"op\": \"matmul\", \"dtype\": \"%s\", \"size\": %lld, \"gflops\": %.1f}",
                    dtype_name(dt), static_cast<long long>(n), gflops);
      rows.push_back(buf);
    }
  }

  auto bandwidth = [&](const char* op, const char* dtype, double bytes, const std::function<void()>& fn) {
    double t = best_time(fn, min_time);
    std::snprintf(buf, sizeof(buf), "{\"op\": \"%s\", \"dtype\": \"%s\", \"numel\": %lld, \"gbps\": %.1f}", op, dtype,
                  static_cast<long long>(numel), bytes / t / 1e9);
    rows.push_back(buf);
  };
  Tensor x = randn({numel}), y = randn({numel});
  Tensor out;
  const double n = static_cast<double>(numel);
  Tensor dst = empty({numel});
  bandwidth("copy", "F32", 8 * n, [&] { dst.copy_(x); });
  bandwidth("add", "F32", 12 * n, [&] { out = add(x, y); });
  bandwidth("relu", "F32", 8 * n, [&] { out = relu(x); });
  bandwidth("sum", "F32", 4 * n, [&] { out = sum(x); });
  Tensor xb = x.to(DType::BF16);
  bandwidth("cast_f32_to_bf16", "F32->BF16", 6 * n, [&] { out = x.to(DType::BF16); });
  bandwidth("cast_bf16_to_f32", "BF16->F32", 6 * n, [&] { out = xb.to(DType::F32); });

  std::printf("{\"framework\": \"mantissa\", \"threads\": %d, \"convert_isa\": \"%s\", \"results\": [\n", threads,
              kernels::convert_isa());
  for (size_t i = 0; i < rows.size(); ++i) std::printf("  %s%s\n", rows[i].c_str(), i + 1 < rows.size() ? "," : "");
  std::printf("]}\n");
  return 0;
}
