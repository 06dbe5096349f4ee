// Training-step benchmark: one full step (zero_grad, forward, cross-entropy, backward, optimizer
// step) of the examples' networks on a fixed random batch, timed after a warm-up: the MNIST mlp
// and cnn ([N,1,28,28]), the CIFAR-10 ResNet-20 and airbench94 networks ([N,3,32,32]). Prints one JSON object: ms per step (best and median of repeats), images/s, peak RSS,
// C++ heap allocations (operator new) and large blocks the CPU allocator could not serve from
// its cache (fresh_blocks_per_step), both per warmed-up step.
// --precision NAME runs the step under one policy of amp/policy.h (autocast around forward + loss,
// loss scaling, master weights or pure BF16), as examples/mnist does.
// Peer: bench/peers/torch_train_step.py runs the identical step in PyTorch.
//   train_step --model mlp|cnn --batch-size 64 --optimizer adam --threads 2 --steps 50 --warmup 10
//   train_step --model cnn --precision bf16 --device cpu
//   train_step --model airbench --batch-size 1024 --precision bf16 --steps 3 --warmup 2
// The CIFAR models train as their recipes do (--optimizer auto, their default):
//   resnet20  SGD lr 0.1, momentum 0.9, nesterov, weight decay 5e-4; cross-entropy (mean)
//   airbench  airbench94's SGD: nesterov momentum 0.85, lr 11.5 / kilostep_scale, weight decay
//             0.0153 per 1024 examples, BatchNorm biases at 64x the learning rate; cross-entropy
//             with label smoothing 0.2 summed over the batch; frozen parameters (requires_grad
//             false: the whitening weight, BatchNorm weights) are left out of the optimizer.
//             The whitening weight keeps its random init (init_whitening needs real images;
//             the cost of the step is the same).
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "amp/autocast.h"
#include "amp/grad_scaler.h"
#include "amp/policy.h"
#include "core/generator.h"
#include "core/kernels/cpu_allocator.h"
#include "core/kernels/device_memory.h"
#include "examples/common/cifar_nets.h"
#include "examples/common/mnist_nets.h"
#include "optim/optim.h"

using namespace mantissa;

// Counts C++ heap allocations so the JSON can show what a warmed-up step still allocates
// (tensor storage comes from aligned_alloc and is not counted; node and handle objects are).
// GCC 12 at -O3 sees the sized delete inlined next to std::allocator's new and warns of a
// mismatch: both sides here are malloc/free, so the warning does not apply.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
static std::atomic<int64_t> g_news{0};
void* operator new(size_t n) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace {

struct Args {
  std::string model = "mlp";
  std::string optimizer = "auto";
  std::string device = "cpu";
  std::string precision = "fp32";
  int64_t batch_size = 64;
  int64_t steps = 50;
  int64_t warmup = 10;
  int64_t repeats = 5;
  int threads = 2;
  bool set_to_none = true;
};

bool is_cifar(const std::string& model) { return model == "resnet20" || model == "airbench"; }

// The CIFAR recipes' SGD over the trainable parameters (see the header comment).
std::vector<optim::ParamGroup> cifar_sgd_groups(const std::string& model, const nn::Module& net) {
  if (model == "resnet20") {
    std::vector<Tensor> params;
    for (const Tensor& p : net.parameters())
      if (p.requires_grad()) params.push_back(p);
    return {optim::ParamGroup(params, optim::SGDOptions(0.1).momentum(0.9).nesterov(true).weight_decay(5e-4))};
  }
  // airbench94: PyTorch's coupled weight decay set so that lr * wd is the decoupled decay.
  const double momentum = 0.85, kilostep_scale = 1024.0 * (1.0 + 1.0 / (1.0 - momentum));
  const double lr = 11.5 / kilostep_scale, wd = 0.0153 * 1024.0 / kilostep_scale, lr_biases = lr * 64.0;
  const auto& airbench = dynamic_cast<const examples::Airbench94&>(net);
  const auto sgd = [&](double group_lr) {
    return optim::SGDOptions(group_lr).momentum(momentum).nesterov(true).weight_decay(wd / group_lr);
  };
  return {optim::ParamGroup(airbench.norm_biases(), sgd(lr_biases)),
          optim::ParamGroup(airbench.other_parameters(), sgd(lr))};
}

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr,
               "train_step: %s\nusage: train_step [--model mlp|cnn|resnet20|airbench] [--batch-size N] [--optimizer auto|adam|adamw|sgd] "
               "[--device cpu|cuda[:N]] [--precision NAME] [--threads N] [--steps N] [--warmup N] [--repeats N] "
               "[--zero-grad none|zero]\n",
               msg.c_str());
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; i += 2) {
    const std::string k = argv[i];
    if (i + 1 >= argc) usage_error(k + " needs a value");
    const std::string v = argv[i + 1];
    auto count = [&](int64_t min) {
      char* end = nullptr;
      const long long n = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < min) usage_error(k + " " + v + ": expected an integer >= " + std::to_string(min));
      return static_cast<int64_t>(n);
    };
    if (k == "--model") a.model = v;
    else if (k == "--optimizer") a.optimizer = v;
    else if (k == "--device") a.device = v;
    else if (k == "--precision") a.precision = v;
    else if (k == "--batch-size") a.batch_size = count(1);
    else if (k == "--steps") a.steps = count(1);
    else if (k == "--warmup") a.warmup = count(0);
    else if (k == "--repeats") a.repeats = count(1);
    else if (k == "--threads") a.threads = static_cast<int>(count(1));
    else if (k == "--zero-grad") {
      if (v != "none" && v != "zero") usage_error(k + " " + v + ": expected none or zero");
      a.set_to_none = v == "none";
    }
    else usage_error("unknown flag " + k);
  }
  if (a.model != "mlp" && a.model != "cnn" && a.model != "resnet20" && a.model != "airbench")
    usage_error("--model " + a.model + ": expected mlp, cnn, resnet20 or airbench");
  if (a.optimizer != "auto" && a.optimizer != "adam" && a.optimizer != "adamw" && a.optimizer != "sgd")
    usage_error("--optimizer " + a.optimizer + ": expected auto, adam, adamw or sgd");
  if (a.optimizer == "auto") a.optimizer = is_cifar(a.model) ? "sgd" : "adam";
  try {
    (void)Device(a.device);
  } catch (const std::exception&) {
    usage_error("--device " + a.device + ": expected cpu, cuda or cuda:N");
  }
  try {
    (void)amp::parse_precision(a.precision);
  } catch (const std::exception& e) {
    usage_error(std::string("--precision: ") + e.what());
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  omp_set_num_threads(a.threads);
  const Device device(a.device);
  if (device.is_cuda() && !kernels::cuda_is_available()) {
    std::fprintf(stderr, "train_step: --device %s: CUDA is not usable here (%s)\n", a.device.c_str(),
                 kernels::cuda_unavailable_reason());
    return 1;
  }
  const amp::Precision precision = amp::parse_precision(a.precision);
  try {
    manual_seed(0);
    const bool cifar = is_cifar(a.model);
    nn::ModulePtr model = cifar ? examples::make_cifar_model(a.model) : examples::make_mnist_model(a.model);
    model->to(device);
    amp::prepare_model(*model, precision);
    // The example's optimizers with their default hyperparameters (lr fixed: no schedule here).
    std::unique_ptr<optim::Optimizer> opt;
    const std::vector<optim::ParamGroup> groups{model->parameters()};
    if (cifar && a.optimizer == "sgd")
      opt = amp::make_optimizer(precision, cifar_sgd_groups(a.model, *model), optim::SGDOptions(0.1));
    else if (a.optimizer == "adam") opt = amp::make_optimizer(precision, groups, optim::AdamOptions(1e-3));
    else if (a.optimizer == "adamw") opt = amp::make_optimizer(precision, groups, optim::AdamWOptions(1e-3));
    else opt = amp::make_optimizer(precision, groups, optim::SGDOptions(0.01).momentum(0.9).nesterov(true));
    amp::GradScaler scaler(amp::GradScalerOptions().enabled(precision.grad_scaler));

    // One fixed batch: normalized-looking inputs and labels 0..9.
    const Tensor x = (cifar ? randn({a.batch_size, 3, 32, 32}) : randn({a.batch_size, 1, 28, 28})).to(device);
    std::vector<int64_t> labels(static_cast<size_t>(a.batch_size));
    for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int64_t>((i * 7 + 3) % 10);
    const Tensor y = from_vector(labels, {a.batch_size}).to(device);

    double last_loss = 0.0;
    auto step = [&] {
      opt->zero_grad(a.set_to_none);
      Tensor loss;
      {
        amp::AutocastGuard autocast(device.type, precision.autocast.value_or(DType::BF16),
                                    precision.autocast.has_value());
        loss = a.model == "airbench" ? cross_entropy(model->forward(x), y, Reduction::Sum, -100, 0.2)
                                     : cross_entropy(model->forward(x), y);
      }
      scaler.scale(loss).backward();
      scaler.step(*opt);
      scaler.update();
      last_loss = loss.item_double();
    };
    for (int64_t i = 0; i < a.warmup; ++i) step();

    std::vector<double> per_step;
    const int64_t news_before = g_news.load();
    const size_t misses_before = kernels::cpu_allocator_stats().misses;
    for (int64_t r = 0; r < a.repeats; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int64_t s = 0; s < a.steps; ++s) step();
      per_step.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
                         static_cast<double>(a.steps));
    }
    const double news_per_step =
        static_cast<double>(g_news.load() - news_before) / static_cast<double>(a.steps * a.repeats);
    const double misses_per_step = static_cast<double>(kernels::cpu_allocator_stats().misses - misses_before) /
                                   static_cast<double>(a.steps * a.repeats);
    std::sort(per_step.begin(), per_step.end());
    const double best = per_step.front(), median = per_step[per_step.size() / 2];
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    std::printf(
        "{\"impl\": \"mantissa\", \"model\": \"%s\", \"batch_size\": %lld, \"optimizer\": \"%s\", \"device\": \"%s\", "
        "\"precision\": \"%s\", "
        "\"threads\": %d, \"steps\": %lld, \"repeats\": %lld, \"ms_per_step\": %.3f, \"median_ms_per_step\": %.3f, "
        "\"images_per_s\": %.1f, \"peak_rss_mb\": %.1f, \"allocs_per_step\": %.1f, \"fresh_blocks_per_step\": %.2f, "
        "\"loss\": %.4f, \"skipped_steps\": %lld}\n",
        a.model.c_str(), static_cast<long long>(a.batch_size), a.optimizer.c_str(), a.device.c_str(),
        a.precision.c_str(), a.threads,
        static_cast<long long>(a.steps), static_cast<long long>(a.repeats), best * 1e3, median * 1e3,
        static_cast<double>(a.batch_size) / best, static_cast<double>(ru.ru_maxrss) / 1024.0, news_per_step, misses_per_step, last_loss,
        static_cast<long long>(scaler.skipped_steps()));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_step: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
