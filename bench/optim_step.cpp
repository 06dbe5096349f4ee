// Optimizer step benchmark: times opt.step() over F32 parameters (already holding gradients)
// and prints one JSON object: ns per parameter and us per step (best and median of repeats).
// Peer: bench/peers/torch_optim_step.py runs the same in PyTorch.
//   optim_step --optimizer adam|adamw|sgd --params 1000000 --tensors 1 --steps 50 --threads 2
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "optim/optim.h"

using namespace mantissa;

int main(int argc, char** argv) {
  std::string which = "adam";
  int64_t params = 1000000, tensors = 1, steps = 50, repeats = 7;
  int threads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--optimizer") which = v;
    else if (k == "--params") params = std::atoll(v);
    else if (k == "--tensors") tensors = std::atoll(v);
    else if (k == "--steps") steps = std::atoll(v);
    else if (k == "--repeats") repeats = std::atoll(v);
    else if (k == "--threads") threads = std::atoi(v);
    else {
      std::fprintf(stderr, "unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  omp_set_num_threads(threads);
  std::vector<Tensor> ps;
  const int64_t each = params / tensors;
  for (int64_t t = 0; t < tensors; ++t) {
    const int64_t n = t + 1 == tensors ? params - each * (tensors - 1) : each;
    Tensor p = full({n}, 0.5).requires_grad_();
    p.set_grad(full({n}, 0.01));
    ps.push_back(p);
  }
  std::unique_ptr<optim::Optimizer> opt;
  if (which == "adam") opt = std::make_unique<optim::Adam>(ps, optim::AdamOptions(1e-3));
  else if (which == "adamw") opt = std::make_unique<optim::AdamW>(ps, optim::AdamWOptions(1e-3));
  else if (which == "sgd") opt = std::make_unique<optim::SGD>(ps, optim::SGDOptions(1e-3).momentum(0.9));
  else {
    std::fprintf(stderr, "unknown optimizer %s\n", which.c_str());
    return 2;
  }
  for (int i = 0; i < 5; ++i) opt->step();  // warm up: state allocated, pages touched
  std::vector<double> per_step;
  for (int64_t r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t s = 0; s < steps; ++s) opt->step();
    const auto t1 = std::chrono::steady_clock::now();
    per_step.push_back(std::chrono::duration<double>(t1 - t0).count() / static_cast<double>(steps));
  }
  std::sort(per_step.begin(), per_step.end());
  const double best = per_step.front(), median = per_step[per_step.size() / 2];
  std::printf(
      "{\"impl\": \"mantissa\", \"optimizer\": \"%s\", \"params\": %lld, \"tensors\": %lld, \"threads\": %d, "
      "\"us_per_step\": %.2f, \"ns_per_param\": %.3f, \"median_ns_per_param\": %.3f}\n",
      which.c_str(), static_cast<long long>(params), static_cast<long long>(tensors), threads, best * 1e6,
      best * 1e9 / static_cast<double>(params), median * 1e9 / static_cast<double>(params));
  return 0;
}
