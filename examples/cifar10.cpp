// Trains ResNet-20 or the airbench94 network on CIFAR-10 (the binary batches) and reports test
// accuracy, with the flags, metrics and checkpoints of examples/mnist.cpp. Read it top to bottom:
// flags, data, model (+ the whitening init), optimizer + schedule, the loop, evaluation.
//
//   build/examples/cifar10 --data datasets/cifar10 --model airbench            # 10 epochs, batch 1024
//   build/examples/cifar10 --data datasets/cifar10 --model resnet20            # 200 epochs, batch 128
//   build/examples/cifar10 --data datasets/cifar10 --model airbench --precision bf16 --metrics run.jsonl
//   build/examples/cifar10 --synthetic --model airbench --epochs 1 --train-limit 4096   # runs anywhere
//
// The data: https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz (data::kCifarUrl); extract it
// and pass --data DIR (the directory holding data_batch_1.bin ... test_batch.bin, or the archive's
// cifar-10-batches-bin/ folder under it). It cannot be fetched on the machines this project is
// built on, so the accuracies below are the published ones for these recipes, NOT measured here:
//   airbench (10 epochs, airbench's hyperparameters, weight averaging and test-time augmentation):
//     about 94% ("tta_test_accuracy"; airbench94.py averages 94.01% over 1000 GPU runs of 9.9
//     epochs with alternating flips and reflect padding, see the differences below), some
//     tenths of a percent less without the augmentation ("test_accuracy").
//   resnet20 (200 epochs, SGD 0.1, cosine): about 92% (He et al. report 91.25% with option A
//     shortcuts and a step schedule over 164 epochs).
//
// --synthetic replaces CIFAR-10 with data::SyntheticDataset at CIFAR's shape and size (50,000
// training and 10,000 test images, 10 classes, stored as 8-bit pixels like the real set): each
// class is a smooth random prototype image and each sample its prototype plus Gaussian noise,
// from a fixed seed (the same images whatever --seed says). The classes are learnable on purpose
// (a model reaches ~100% on it), so a run shows training working; the accuracy says nothing
// about CIFAR-10. Its use is timing and smoke-testing on any machine.
//
// The airbench recipe (github.com/KellerJordan/cifar10-airbench, airbench94.py), as read from
// its source: batch 1024, loss = sum over the batch of cross-entropy with label smoothing 0.2;
// Nesterov SGD, momentum 0.85, with airbench's decoupled hyperparameters lr 11.5 and weight decay
// 0.0153 "per 1024 examples" converted to PyTorch SGD's (lr / (1024 (1 + 1/(1 - momentum))),
// weight_decay = 0.0153 * batch / 11.5); BatchNorm shifts in their own group at 64x the lr
// (bias_scaler) with the weight decay per step unchanged; a linear warm-up/decay per step from
// 0.2 x lr to the peak at 23% of the steps and down to 0.07 x lr ("triangle"); the whitening
// conv set from the first 5000 normalized training images, its bias trained for the first 3
// epochs only; random crop with 2 pixels of padding and random flips; Lookahead-style weight
// averaging every 5 steps from epoch 3 (--ema); the final evaluation with test-time augmentation
// (mirror + 1-pixel translations, --tta 2) besides the plain one. Differences: airbench trains
// 9.9 epochs (here whole epochs, default 10), pads the crop by reflection (here zeros, the
// loader's crop), and flips all images together every other epoch (here each image with
// probability 0.5).
//
// ResNet-20: batch 128, SGD lr 0.1, momentum 0.9, Nesterov, weight decay 5e-4, cosine annealing
// per step over the run, random crop with 4 pixels of padding and flips; cross-entropy (mean).
//
// --precision picks one policy of amp/policy.h, as in examples/mnist.cpp. BatchNorm stays F32
// under every policy (amp::prepare_model), as airbench keeps it while the rest runs in FP16.
// Same seed and --threads: the same run, bit for bit. stdout: one line per epoch, then a final
// line holding one JSON object; --metrics: JSON lines with examples/mnist.cpp's schema.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "amp/autocast.h"
#include "amp/grad_scaler.h"
#include "amp/inspector.h"
#include "amp/policy.h"
#include "core/generator.h"
#include "core/kernels/device_memory.h"
#include "data/cifar10.h"
#include "data/loader.h"
#include "data/synthetic.h"
#include "examples/common/checkpoint.h"
#include "examples/common/cifar_nets.h"
#include "examples/common/flags.h"
#include "examples/common/metrics.h"
#include "examples/common/progress.h"
#include "examples/common/training.h"
#include "nn/nn.h"
#include "optim/optim.h"

using namespace mantissa;
namespace ex = mantissa::examples;
using ex::Evaluation;
using ex::evaluate;
using ex::loss_scale_json;
using ex::scaler_text;
using ex::seconds_since;

namespace {

// The per-channel statistics of the CIFAR-10 training images (airbench's values).
const std::vector<float> kCifarMean = {0.4914f, 0.4822f, 0.4465f};
const std::vector<float> kCifarStd = {0.2470f, 0.2435f, 0.2616f};

// airbench94's hyperparameters (hyp in airbench94.py).
constexpr double kAirbenchLr = 11.5;              // per 1024 examples, decoupled from momentum
constexpr double kAirbenchMomentum = 0.85;
constexpr double kAirbenchWeightDecay = 0.0153;   // per 1024 examples, decoupled from the lr
constexpr double kAirbenchBiasScaler = 64.0;      // lr multiplier of the BatchNorm shifts
constexpr double kAirbenchLabelSmoothing = 0.2;
constexpr int64_t kAirbenchWhitenBiasEpochs = 3;  // the whitening bias trains this long, then freezes
constexpr int64_t kAirbenchWhitenImages = 5000;
// Lookahead-style weight averaging (hyp['opt']['ema']): from epoch 3, every 5 steps.
constexpr int64_t kEmaStartEpochs = 3;
constexpr int64_t kEmaEveryNSteps = 5;
constexpr double kEmaDecayBase = 0.95;
constexpr double kEmaDecayPow = 3.0;

struct Config {
  std::string model = "airbench";
  int64_t epochs = -1;     // -1: the model's default (airbench 10, resnet20 200); 0 evaluates only
  int64_t batch_size = 0;  // 0: the model's default (airbench 1024, resnet20 128)
  double lr = 0.0;         // 0: the model's default (airbench 11.5 decoupled, resnet20 0.1)
  double weight_decay = -1.0;     // < 0: the model's default (airbench 0.0153 decoupled, resnet20 5e-4)
  double label_smoothing = -1.0;  // < 0: the model's default (airbench 0.2, resnet20 0)
  std::string optimizer = "sgd";
  std::string schedule = "auto";  // the model's default: airbench triangle, resnet20 cosine
  int64_t seed = 1;
  std::string data = "datasets/cifar10";
  bool synthetic = false;
  std::string device = "cpu";
  std::string precision = "fp32";
  bool inspect = false;
  int64_t threads = 0;
  std::string checkpoint;
  std::string resume;
  std::string metrics;
  int64_t log_interval = 50;
  int64_t train_limit = 0;  // 0: every training image
  int64_t test_limit = 0;   // 0: every test image
  std::string ema = "auto";  // airbench's Lookahead averaging: auto = on for airbench, off for resnet20
  int64_t tta = -1;          // test-time augmentation level of the final evaluation; -1: airbench 2, resnet20 0

  bool airbench() const { return model == "airbench"; }

  // The settings a resumed run must share with the run that wrote the checkpoint.
  std::map<std::string, std::string> as_map() const {
    auto exact = [](double v) {
      char text[32];
      std::snprintf(text, sizeof text, "%.17g", v);  // round-trips exactly
      return std::string(text);
    };
    return {{"model", model},
            {"epochs", std::to_string(epochs)},
            {"batch_size", std::to_string(batch_size)},
            {"lr", exact(lr)},
            {"weight_decay", exact(weight_decay)},
            {"label_smoothing", exact(label_smoothing)},
            {"optimizer", optimizer},
            {"schedule", schedule},
            {"seed", std::to_string(seed)},
            {"synthetic", synthetic ? "1" : "0"},
            {"ema", ema},
            {"train_limit", std::to_string(train_limit)},
            {"precision", precision}};
  }
};

// The optimizer for the policy. airbench: two groups as in airbench94.py, the BatchNorm shifts
// at bias_scaler x the lr and the rest, with PyTorch SGD's coupled weight decay chosen so that
// lr * weight_decay (the decay per step) is the same in both groups. ResNet-20: one group.
std::unique_ptr<optim::Optimizer> make_optimizer(const Config& c, const amp::Precision& precision, nn::Module& model) {
  const auto seed = static_cast<uint64_t>(c.seed);
  if (auto* air = dynamic_cast<ex::Airbench94*>(&model)) {
    // Nesterov momentum m multiplies a constant gradient's step by 1 + 1/(1 - m); airbench
    // divides it out (and works per 1024 examples), so lr and momentum can be tuned separately.
    const double kilostep_scale = 1024.0 * (1.0 + 1.0 / (1.0 - kAirbenchMomentum));
    const double lr = c.lr / kilostep_scale;
    const double wd = c.weight_decay * static_cast<double>(c.batch_size) / kilostep_scale;  // decay per step
    const double lr_biases = lr * kAirbenchBiasScaler;
    const optim::SGDOptions base = optim::SGDOptions(lr).momentum(kAirbenchMomentum).nesterov(true);
    std::vector<optim::ParamGroup> groups;
    groups.emplace_back(air->norm_biases(), optim::SGDOptions(base).lr(lr_biases).weight_decay(wd / lr_biases));
    groups.emplace_back(air->other_parameters(), optim::SGDOptions(base).weight_decay(wd / lr));
    return amp::make_optimizer(precision, std::move(groups), base, seed);
  }
  return amp::make_optimizer(precision, {model.parameters()},
                             optim::SGDOptions(c.lr).momentum(0.9).nesterov(true).weight_decay(c.weight_decay), seed);
}

// Stepped per batch. cosine: CosineAnnealingLR to 0 over the run. onecycle: OneCycleLR with the
// lr as its peak. triangle (airbench's): linear from 0.2 x lr to lr at 23% of the steps, then
// linear to 0.07 x lr at the end, as two LinearLR in a SequentialLR.
std::unique_ptr<optim::LRScheduler> make_schedule(const Config& c, optim::Optimizer& opt, int64_t total_steps) {
  const int64_t steps = std::max<int64_t>(total_steps, 2);
  if (c.schedule == "constant") return nullptr;
  if (c.schedule == "cosine") return std::make_unique<optim::CosineAnnealingLR>(opt, steps);
  if (c.schedule == "onecycle")
    return std::make_unique<optim::OneCycleLR>(opt, optim::OneCycleLROptions(c.lr).total_steps(steps));
  const int64_t peak = std::clamp<int64_t>(static_cast<int64_t>(0.23 * static_cast<double>(steps)), 1, steps - 1);
  auto up = std::make_shared<optim::LinearLR>(opt, 0.2, 1.0, peak);
  auto down = std::make_shared<optim::LinearLR>(opt, 1.0, 0.07, steps - peak);
  return std::make_unique<optim::SequentialLR>(opt, std::vector<std::shared_ptr<optim::LRScheduler>>{up, down},
                                               std::vector<int64_t>{peak});
}


// airbench's Lookahead-style averaging: every kEmaEveryNSteps steps from epoch kEmaStartEpochs
// on, ema <- ema + (net - ema) (1 - rho) and net <- ema, with rho = 0.95^5 (step / total)^3
// growing over the run (move fast early, average hard at the end); at each epoch's end net <- ema.
// It covers the trained parameters (through their F32 masters under master policies: averaging
// the 16-bit working copies would be undone by the next master update) and the floating buffers
// (BatchNorm's running statistics), as airbench's state_dict walk does; frozen parameters never
// change, so they are left out.
class LookaheadEma {
 public:
  LookaheadEma(nn::Module& model, optim::Optimizer& optimizer) {
    auto* masters = dynamic_cast<optim::MasterWeights*>(&optimizer);
    for (const Tensor& p : model.parameters()) {
      if (!p.requires_grad() || !p.is_floating_point()) continue;
      live_.push_back(masters ? masters->master(p) : p);
      work_.push_back(p);
    }
    for (const auto& [name, b] : model.named_buffers()) {
      if (!b.is_floating_point()) continue;
      live_.push_back(b);
      work_.push_back(b);
    }
  }

  bool started() const { return !ema_.empty(); }
  // The first call snapshots the live tensors; later ones average with weight `decay` on the
  // average, then write it into the model.
  void update(double decay) {
    NoGradGuard no_grad;
    if (ema_.empty()) {
      for (const Tensor& t : live_) ema_.push_back(t.clone());
      return;
    }
    for (size_t i = 0; i < live_.size(); ++i) {
      if (decay != 1.0) ema_[i].copy_(add(ema_[i], mul(sub(live_[i], ema_[i]), 1.0 - decay)));
      live_[i].copy_(ema_[i]);
      if (!work_[i].is_same(live_[i])) work_[i].copy_(live_[i]);  // RNE into the 16-bit working copy
    }
  }

 private:
  std::vector<Tensor> live_, work_, ema_;
};

// airbench's test-time augmentation: level 1 averages the logits of the image and its mirror
// image; level 2 also those of the image translated by one pixel up-left and down-right (with
// reflected borders), weighted 1/2 untranslated, 1/4 each translation.
Tensor tta_logits(nn::Module& model, const Tensor& x, int64_t level) {
  if (level == 0) return model.forward(x);
  const int64_t w = x.size(3), h = x.size(2);
  auto index = [&](int64_t n, int64_t shift, bool reverse) {  // reflect-padded shift, or mirror
    std::vector<int64_t> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t j = reverse ? n - 1 - i : i + shift;
      v[static_cast<size_t>(i)] = j < 0 ? -j : (j >= n ? 2 * (n - 1) - j : j);
    }
    return from_vector(v, {n}).to(x.device());
  };
  auto mirror = [&](const Tensor& in) {
    return mul(add(model.forward(in), model.forward(index_select(in, 3, index(w, 0, true)))), 0.5);
  };
  const Tensor plain = mirror(x);
  if (level == 1) return plain;
  const Tensor up_left = index_select(index_select(x, 2, index(h, -1, false)), 3, index(w, -1, false));
  const Tensor down_right = index_select(index_select(x, 2, index(h, 1, false)), 3, index(w, 1, false));
  return add(mul(plain, 0.5), mul(add(mirror(up_left), mirror(down_right)), 0.25));
}

// Test accuracy with test-time augmentation (the final evaluation).
double evaluate_tta(nn::Module& model, data::DataLoader& loader, const Device& device, const amp::Precision& p,
                    int64_t level) {
  model.eval();
  NoGradGuard no_grad;
  amp::AutocastGuard autocast(device.type, p.autocast.value_or(DType::BF16), p.autocast.has_value());
  int64_t correct = 0, total = 0;
  for (data::Example& batch : loader) {
    const Tensor x = batch.data.to(device);
    const Tensor y = batch.target.to(device);
    correct += static_cast<int64_t>(eq(argmax(tta_logits(model, x, level), 1), y).sum().item_double());
    total += y.numel();
  }
  model.train();
  return total > 0 ? static_cast<double>(correct) / static_cast<double>(total) : 0.0;
}

// The synthetic stand-in, materialized as 8-bit pixels in CIFAR10 data sets (so the loader, the
// limits and the whitening init treat it exactly as the real files): the first n_train samples
// of one fixed-seed SyntheticDataset for training, the next n_test for testing (same class
// prototypes, fresh noise).
std::pair<std::shared_ptr<data::CIFAR10>, std::shared_ptr<data::CIFAR10>> make_synthetic(int64_t n_train,
                                                                                          int64_t n_test) {
  const data::SyntheticDataset source(data::SyntheticOptions().set_size(n_train + n_test).set_seed(20241128));
  std::vector<uint8_t> pixels(static_cast<size_t>((n_train + n_test) * data::kCifarImageBytes));
  std::vector<int64_t> labels(static_cast<size_t>(n_train + n_test));
  const int64_t chunk = 2048;
  for (int64_t first = 0; first < n_train + n_test; first += chunk) {
    const int64_t n = std::min(chunk, n_train + n_test - first);
    std::vector<size_t> idx(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) idx[static_cast<size_t>(i)] = static_cast<size_t>(first + i);
    const data::Example b = source.get_batch(idx);
    const std::vector<float> v = to_vector<float>(b.data);
    for (size_t i = 0; i < v.size(); ++i)
      pixels[static_cast<size_t>(first * data::kCifarImageBytes) + i] =
          static_cast<uint8_t>(std::lround(std::clamp(v[i], 0.0f, 1.0f) * 255.0f));
    const std::vector<int64_t> t = to_vector<int64_t>(b.target);
    std::copy(t.begin(), t.end(), labels.begin() + first);
  }
  const Tensor images = from_vector(pixels, {n_train + n_test, 3, 32, 32});
  const Tensor targets = from_vector(labels, {n_train + n_test});
  return {std::make_shared<data::CIFAR10>(images.narrow(0, 0, n_train).contiguous(),
                                          targets.narrow(0, 0, n_train).contiguous()),
          std::make_shared<data::CIFAR10>(images.narrow(0, n_train, n_test).contiguous(),
                                          targets.narrow(0, n_train, n_test).contiguous())};
}

// The first n training images, normalized as the loader does (no augmentation), for the
// whitening init.
Tensor normalized_images(const data::CIFAR10& set, int64_t n) {
  std::vector<size_t> idx(static_cast<size_t>(std::min<int64_t>(n, static_cast<int64_t>(set.size()))));
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  const Tensor x = set.get_batch(idx).data;  // F32 [n, 3, 32, 32] in [0, 1]
  const Tensor mean = from_vector(kCifarMean, {1, 3, 1, 1});
  const Tensor std = from_vector(kCifarStd, {1, 3, 1, 1});
  return div(sub(x, mean), std);
}

bool cifar_files_present(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  return fs::exists(fs::path(dir) / "data_batch_1.bin", ec) ||
         fs::exists(fs::path(dir) / "cifar-10-batches-bin" / "data_batch_1.bin", ec);
}

int run(int argc, const char* const* argv) {
  const auto start = std::chrono::steady_clock::now();

  // Flags ----------------------------------------------------------------------------------
  Config c;
  ex::Flags flags("cifar10", "Trains ResNet-20 or airbench94 on CIFAR-10 (binary batches) and reports the test accuracy.");
  flags.add("model", &c.model, "network", {"airbench", "resnet20"});
  flags.add("epochs", &c.epochs, "passes over the training set; -1 = 10 for airbench, 200 for resnet20");
  flags.add("batch-size", &c.batch_size, "training batch size; 0 = 1024 for airbench, 128 for resnet20");
  flags.add("lr", &c.lr, "learning rate (the schedule's peak); 0 = 0.1 for resnet20; for airbench its decoupled "
            "lr per 1024 examples, 0 = 11.5");
  flags.add("weight-decay", &c.weight_decay, "L2 weight decay; -1 = 5e-4 for resnet20; for airbench its decoupled "
            "decay per 1024 examples, -1 = 0.0153");
  flags.add("label-smoothing", &c.label_smoothing, "label smoothing of the training loss; -1 = 0.2 for airbench, 0 for resnet20");
  flags.add("optimizer", &c.optimizer, "optimizer (Nesterov SGD with the model's momentum)", {"sgd"});
  flags.add("schedule", &c.schedule, "learning-rate schedule, stepped per batch; auto = triangle for airbench, "
            "cosine for resnet20", {"auto", "cosine", "onecycle", "triangle", "constant"});
  flags.add("seed", &c.seed, "seeds the initialization and the data order/augmentation");
  flags.add("data", &c.data, "directory with the CIFAR-10 binary batches (data_batch_1.bin ... test_batch.bin)");
  flags.add("synthetic", &c.synthetic, "train on a synthetic data set of CIFAR-10's shape instead (timing and smoke "
            "tests; its accuracy says nothing about CIFAR-10)");
  flags.add("device", &c.device, "where to train: cpu, cuda or cuda:N");
  flags.add("precision", &c.precision, "precision policy (amp/policy.h)", amp::precision_names());
  flags.add("inspect", &c.inspect, "record F16 overflow/underflow statistics of gradients and layer outputs every "
            "--log-interval steps into the --metrics file");
  flags.add("threads", &c.threads, "CPU threads; 0 = all cores");
  flags.add("checkpoint", &c.checkpoint, "save model + optimizer + schedule + RNG state here after every epoch");
  flags.add("resume", &c.resume, "continue the run saved in this checkpoint");
  flags.add("metrics", &c.metrics, "write JSON lines here (every log interval and every epoch)");
  flags.add("log-interval", &c.log_interval, "steps between log lines / metrics records");
  flags.add("train-limit", &c.train_limit, "train on the first N images only (quick checks); 0 = all");
  flags.add("test-limit", &c.test_limit, "evaluate on the first N test images only (quick checks); 0 = all");
  flags.add("ema", &c.ema, "airbench's Lookahead weight averaging from epoch 3; auto = on for airbench", {"auto", "on", "off"});
  flags.add("tta", &c.tta, "test-time augmentation of the final evaluation: 0 none, 1 mirror, 2 mirror + translate; "
            "-1 = 2 for airbench, 0 for resnet20");
  if (!flags.parse(argc, argv)) return 0;
  const bool air = c.airbench();
  if (c.epochs == -1) c.epochs = air ? 10 : 200;
  if (c.batch_size == 0) c.batch_size = air ? 1024 : 128;
  if (c.lr == 0) c.lr = air ? kAirbenchLr : 0.1;
  if (c.weight_decay < 0) c.weight_decay = air ? kAirbenchWeightDecay : 5e-4;
  if (c.label_smoothing < 0) c.label_smoothing = air ? kAirbenchLabelSmoothing : 0.0;
  if (c.schedule == "auto") c.schedule = air ? "triangle" : "cosine";
  if (c.ema == "auto") c.ema = air ? "on" : "off";
  if (c.tta < 0) c.tta = air ? 2 : 0;
  if (c.tta > 2) throw ex::FlagError("--tta " + std::to_string(c.tta) + ": expected 0, 1 or 2");
  if (c.epochs < 0) throw ex::FlagError("--epochs " + std::to_string(c.epochs) + ": must be >= 0");
  if (c.batch_size < 1) throw ex::FlagError("--batch-size " + std::to_string(c.batch_size) + ": must be >= 1");
  if (c.log_interval < 1) throw ex::FlagError("--log-interval " + std::to_string(c.log_interval) + ": must be >= 1");
  if (c.threads < 0) throw ex::FlagError("--threads " + std::to_string(c.threads) + ": must be >= 0");
  if (c.train_limit < 0) throw ex::FlagError("--train-limit " + std::to_string(c.train_limit) + ": must be >= 0");
  if (c.test_limit < 0) throw ex::FlagError("--test-limit " + std::to_string(c.test_limit) + ": must be >= 0");
  if (c.lr < 0) throw ex::FlagError("--lr " + std::to_string(c.lr) + ": must be >= 0");
  if (c.label_smoothing > 1) throw ex::FlagError("--label-smoothing " + std::to_string(c.label_smoothing) + ": must be <= 1");
  if (c.inspect && c.metrics.empty()) throw ex::FlagError("--inspect writes its records into --metrics; give --metrics FILE");
  const amp::Precision precision = amp::parse_precision(c.precision);

  if (c.threads > 0) omp_set_num_threads(static_cast<int>(c.threads));
  Device device;
  try {
    device = Device(c.device);
  } catch (const Error&) {
    throw ex::FlagError("--device " + c.device + ": expected cpu, cuda or cuda:N");
  }
  if (device.is_cuda() && !kernels::cuda_is_available())
    throw ex::FlagError("--device " + c.device + ": CUDA is not usable here (" + kernels::cuda_unavailable_reason() +
                        "); train with --device cpu");
  if (device.is_cuda() && device.index >= kernels::cuda_device_count())
    throw ex::FlagError("--device " + c.device + ": this machine has " + std::to_string(kernels::cuda_device_count()) +
                        " CUDA device(s)");

  manual_seed(static_cast<uint64_t>(c.seed));

  // Data -----------------------------------------------------------------------------------
  std::shared_ptr<data::CIFAR10> train_set, test_set;
  if (c.synthetic) {
    const int64_t n_train = c.train_limit > 0 ? std::min<int64_t>(c.train_limit, 50000) : 50000;
    const int64_t n_test = c.test_limit > 0 ? std::min<int64_t>(c.test_limit, 10000) : 10000;
    std::tie(train_set, test_set) = make_synthetic(n_train, n_test);
  } else {
    if (!cifar_files_present(c.data))
      throw ex::FlagError("--data " + c.data + ": no CIFAR-10 binary batches here (data_batch_1.bin ... test_batch.bin). "
                          "Download " + std::string(data::kCifarUrl) + ", extract it (tar xzf) and pass --data DIR "
                          "(DIR/cifar-10-batches-bin works too); or run with --synthetic");
    train_set = std::make_shared<data::CIFAR10>(c.data, data::Split::Train);
    test_set = std::make_shared<data::CIFAR10>(c.data, data::Split::Test);
    if (c.train_limit > 0 && c.train_limit < static_cast<int64_t>(train_set->size()))
      train_set = std::make_shared<data::CIFAR10>(train_set->images().narrow(0, 0, c.train_limit).contiguous(),
                                                  train_set->targets().narrow(0, 0, c.train_limit).contiguous());
    if (c.test_limit > 0 && c.test_limit < static_cast<int64_t>(test_set->size()))
      test_set = std::make_shared<data::CIFAR10>(test_set->images().narrow(0, 0, c.test_limit).contiguous(),
                                                 test_set->targets().narrow(0, 0, c.test_limit).contiguous());
  }
  // Crop padding 2 is airbench's translate 2; 4 is the usual (He et al.'s) ResNet augmentation.
  data::DataLoader train_loader(train_set, data::DataLoaderOptions(c.batch_size)
                                               .set_shuffle(true)
                                               .set_seed(static_cast<uint64_t>(c.seed))
                                               .set_normalize(kCifarMean, kCifarStd)
                                               .set_random_crop(air ? 2 : 4)
                                               .set_random_flip(true)
                                               .set_pin_memory(device.is_cuda()));
  data::DataLoader test_loader(test_set, data::DataLoaderOptions(1000).set_normalize(kCifarMean, kCifarStd));
  const auto steps_per_epoch = static_cast<int64_t>(train_loader.size());

  // Model, optimizer, schedule, loss ----------------------------------------------------------
  nn::ModulePtr model = ex::make_cifar_model(c.model);
  model->to(device);
  amp::prepare_model(*model, precision);
  auto* airbench = dynamic_cast<ex::Airbench94*>(model.get());
  // The whitening conv from the data (a resumed run loads the saved weight over it).
  if (airbench) airbench->init_whitening(normalized_images(*train_set, kAirbenchWhitenImages));
  std::unique_ptr<optim::Optimizer> optimizer = make_optimizer(c, precision, *model);
  std::unique_ptr<optim::LRScheduler> schedule = make_schedule(c, *optimizer, c.epochs * steps_per_epoch);
  // airbench sums the per-example losses (its lr is per example); ResNet-20 takes the mean.
  nn::CrossEntropyLoss criterion(nn::CrossEntropyLossOptions()
                                     .reduction(air ? Reduction::Sum : Reduction::Mean)
                                     .label_smoothing(c.label_smoothing));
  amp::GradScaler scaler(amp::GradScalerOptions().enabled(precision.grad_scaler));
  std::unique_ptr<amp::Inspector> inspector;
  if (c.inspect) {
    inspector = std::make_unique<amp::Inspector>(amp::InspectorOptions().every_n_steps(c.log_interval));
    inspector->attach(model);
    inspector->attach(scaler);
  }

  int64_t first_epoch = 0, step = 0;
  if (!c.resume.empty()) {
    std::vector<std::string> keys = {"model",  "batch_size", "lr",        "weight_decay", "label_smoothing", "optimizer",
                                     "schedule", "seed",     "synthetic", "train_limit",  "precision", "ema"};
    // The schedule's shape and the averaging's rho depend on the run's length.
    if (c.schedule != "constant" || c.ema == "on") keys.push_back("epochs");
    const std::map<std::string, std::string> saved = ex::load_training_config(c.resume);
    const auto bad = ex::config_mismatches(saved, c.as_map(), keys);
    if (!bad.empty()) {
      std::string msg = "--resume " + c.resume + ": the checkpoint comes from a different run; change the flags to match:";
      for (const std::string& b : bad) msg += "\n  " + b;
      throw ex::FlagError(msg);
    }
    const ex::TrainingProgress p = ex::load_training_checkpoint(c.resume, *model, *optimizer, schedule.get());
    if (scaler.is_enabled()) {
      if (p.grad_scaler.empty())
        throw ex::FlagError("--resume " + c.resume + ": the checkpoint holds no loss-scaler state");
      scaler.load_state_dict(amp::GradScalerState::from_json(p.grad_scaler));
    }
    default_generator().set_state(p.generator);
    first_epoch = p.epoch;
    step = p.step;
    std::printf("resumed from %s after epoch %lld (step %lld)\n", c.resume.c_str(), static_cast<long long>(p.epoch),
                static_cast<long long>(p.step));
  }
  const int64_t total_steps = c.epochs * steps_per_epoch;
  std::unique_ptr<LookaheadEma> ema;
  if (c.ema == "on") {
    ema = std::make_unique<LookaheadEma>(*model, *optimizer);
    // Each epoch ends with net <- ema, so a checkpoint's weights are the average: a resumed run
    // whose average had started restarts it from them, bit for bit.
    const int64_t s0 = kEmaStartEpochs * steps_per_epoch;
    if (first_epoch > kEmaStartEpochs && step / kEmaEveryNSteps > s0 / kEmaEveryNSteps) ema->update(1.0);
  }
  train_loader.set_epoch(static_cast<uint64_t>(first_epoch));
  ex::MetricsWriter metrics(c.metrics, /*append=*/!c.resume.empty());

  std::printf("training %s on %zu %simages (%lld steps/epoch, batch %lld), %s lr %g, schedule %s, %d threads, %s\n",
              c.model.c_str(), train_set->size(), c.synthetic ? "synthetic " : "",
              static_cast<long long>(steps_per_epoch), static_cast<long long>(c.batch_size), c.optimizer.c_str(), c.lr,
              c.schedule.c_str(), omp_get_max_threads(), device.str().c_str());
  std::printf("precision %s\n", precision.describe().c_str());
  std::fflush(stdout);

  // The loop ---------------------------------------------------------------------------------
  const bool bar_on = ex::ProgressBar::enabled();
  double last_train_loss = NAN;
  Evaluation ev;
  bool evaluated = false;
  for (int64_t epoch = first_epoch; epoch < c.epochs; ++epoch) {
    model->train();
    // airbench trains the whitening bias for its first epochs only; with requires_grad off the
    // backward leaves its .grad undefined and SGD skips it (no momentum, no decay), as PyTorch.
    if (airbench) airbench->whiten->bias.requires_grad_(epoch < kAirbenchWhitenBiasEpochs);
    ex::ProgressBar bar("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(c.epochs), steps_per_epoch);
    const auto epoch_start = std::chrono::steady_clock::now();
    auto interval_start = epoch_start;
    double epoch_loss = 0.0, interval_loss = 0.0;
    int64_t epoch_images = 0, interval_images = 0, interval_steps = 0, batch_index = 0;

    for (data::Example& batch : train_loader) {
      const Tensor x = batch.data.to(device);
      const Tensor y = batch.target.to(device);

      const bool inspecting = inspector && inspector->begin_step(step + 1);
      optimizer->zero_grad();
      Tensor loss;
      {
        amp::AutocastGuard autocast(device.type, precision.autocast.value_or(DType::BF16),
                                    precision.autocast.has_value());
        loss = criterion((*model)(x), y);  // F32 under every policy
      }
      scaler.scale(loss).backward();
      if (inspecting) inspector->capture_grads();
      scaler.step(*optimizer);
      scaler.update();
      if (schedule) schedule->step();
      ++step;
      ++batch_index;
      if (ema && epoch >= kEmaStartEpochs && step % kEmaEveryNSteps == 0) {
        const double rho = std::pow(kEmaDecayBase, static_cast<double>(kEmaEveryNSteps)) *
                           std::pow(static_cast<double>(step) / static_cast<double>(total_steps), kEmaDecayPow);
        ema->update(rho);
      }
      if (inspecting) {
        if (const std::optional<amp::InspectorRecord> rec = inspector->end_step()) {
          ex::Json line = {{"event", "inspect"}, {"epoch", epoch + 1}, {"precision", c.precision}};
          const ex::Json fields = ex::Json::parse(rec->to_json());
          for (const auto& [k, v] : fields.items()) line[k] = v;
          metrics.write(line);
        }
      }

      // Reported per image, whichever reduction the loss used.
      const double l = loss.item_double() / (air ? static_cast<double>(x.size(0)) : 1.0);
      epoch_loss += l * static_cast<double>(x.size(0));
      interval_loss += l;
      ++interval_steps;
      epoch_images += x.size(0);
      interval_images += x.size(0);
      bar.update(batch_index, epoch_images, l);

      if (interval_steps == c.log_interval || batch_index == steps_per_epoch) {
        const double dt = seconds_since(interval_start);
        // The last group's lr: ResNet-20's only one, airbench's main group (not the 64x shifts).
        const double lr = optimizer->param_groups().back().options().get_lr();
        const double mean_loss = interval_loss / static_cast<double>(interval_steps);
        const double ips = dt > 0 ? static_cast<double>(interval_images) / dt : 0.0;
        metrics.write({{"event", "log"}, {"epoch", epoch + 1}, {"step", step}, {"loss", ex::json_number(mean_loss)},
                       {"lr", lr}, {"test_accuracy", nullptr}, {"images_per_s", ips},
                       {"elapsed_s", seconds_since(start)}, {"precision", c.precision},
                       {"loss_scale", loss_scale_json(scaler)}, {"skipped_steps", scaler.skipped_steps()},
                       {"consecutive_skips", scaler.consecutive_skipped_steps()}});
        if (!bar_on)
          std::fprintf(stderr, "epoch %lld step %lld/%lld  loss %.4f  lr %.3g  %.0f img/s%s\n",
                       static_cast<long long>(epoch + 1), static_cast<long long>(batch_index),
                       static_cast<long long>(steps_per_epoch), mean_loss, lr, ips, scaler_text(scaler).c_str());
        interval_start = std::chrono::steady_clock::now();
        interval_loss = 0.0;
        interval_images = interval_steps = 0;
      }
    }
    bar.done();
    if (ema && ema->started()) ema->update(1.0);  // the model is the average from here to the next step
    const double epoch_s = seconds_since(epoch_start);
    last_train_loss = epoch_images > 0 ? epoch_loss / static_cast<double>(epoch_images) : NAN;

    ev = evaluate(*model, test_loader, device, precision);
    evaluated = true;
    const double lr = optimizer->param_groups().back().options().get_lr();
    const double ips = epoch_s > 0 ? static_cast<double>(epoch_images) / epoch_s : 0.0;
    std::printf("epoch %lld/%lld: train loss %.4f, test loss %.4f, test accuracy %.2f%% (%lld/%lld), %.1f s, %.0f img/s\n",
                static_cast<long long>(epoch + 1), static_cast<long long>(c.epochs), last_train_loss, ev.loss,
                100.0 * ev.accuracy, static_cast<long long>(ev.correct), static_cast<long long>(ev.total), epoch_s, ips);
    std::fflush(stdout);
    metrics.write({{"event", "epoch"}, {"epoch", epoch + 1}, {"step", step}, {"loss", ex::json_number(last_train_loss)},
                   {"lr", lr}, {"test_accuracy", ev.accuracy}, {"test_loss", ex::json_number(ev.loss)},
                   {"images_per_s", ips}, {"epoch_s", epoch_s}, {"elapsed_s", seconds_since(start)},
                   {"precision", c.precision}, {"loss_scale", loss_scale_json(scaler)},
                   {"skipped_steps", scaler.skipped_steps()}, {"consecutive_skips", scaler.consecutive_skipped_steps()}});

    if (!c.checkpoint.empty()) {
      ex::TrainingProgress p;
      p.epoch = epoch + 1;
      p.step = step;
      p.generator = default_generator().state();
      p.config = c.as_map();
      if (scaler.is_enabled()) p.grad_scaler = scaler.state_dict().to_json();
      ex::save_training_checkpoint(c.checkpoint, *model, *optimizer, schedule.get(), p);
    }
  }
  if (!evaluated) ev = evaluate(*model, test_loader, device, precision);
  std::optional<double> tta_accuracy;
  if (c.tta > 0) {
    tta_accuracy = evaluate_tta(*model, test_loader, device, precision, c.tta);
    std::printf("test accuracy with test-time augmentation (level %lld): %.2f%%\n", static_cast<long long>(c.tta),
                100.0 * *tta_accuracy);
  }

  ex::Json result = {{"model", c.model},
                     {"precision", c.precision},
                     {"epochs", c.epochs},
                     {"steps", step},
                     {"test_accuracy", ev.accuracy},
                     {"test_loss", ex::json_number(ev.loss)},
                     {"train_loss", ex::json_number(last_train_loss)},
                     {"skipped_steps", scaler.skipped_steps()},
                     {"elapsed_s", seconds_since(start)}};
  if (tta_accuracy) result["tta_test_accuracy"] = *tta_accuracy;
  std::printf("%s\n", result.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return ex::run_main("cifar10", run, argc, argv); }
