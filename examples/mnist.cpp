// Trains a CNN or an MLP on MNIST-format data (the digits, Fashion-MNIST, any drop-in IDX set)
// and reports test accuracy: the model of a Mantissa training script. Read it top to bottom:
// flags, data, model, optimizer + schedule, the loop, evaluation, checkpoints.
//
//   build/examples/mnist --data datasets/mnist --model cnn --epochs 3
//   build/examples/mnist --data datasets/mnist --epochs 3 --checkpoint run.safetensors
//   build/examples/mnist --data datasets/mnist --epochs 3 --resume run.safetensors --checkpoint run.safetensors
//   build/examples/mnist --data datasets/mnist --precision bf16-master --metrics run.jsonl
//   build/examples/mnist --data datasets/mnist --precision fp16 --inspect --metrics run.jsonl
//   build/examples/mnist --data datasets/mnist --qat     # QAT, then the int8 model's accuracy too
//
// --precision picks one policy of amp/policy.h (fp32, fp16, bf16, fp16-noscale, fp16-master,
// bf16-master, bf16-pure, bf16-pure-sr, bf16-pure-kahan): the model's parameter dtype, autocast
// around forward + loss, dynamic loss scaling, FP32 master weights or the pure-BF16 update rule.
//
// Defaults: AdamW, OneCycle to a peak lr of 2e-3 over the whole run, batch 64. Measured on real
// MNIST (cnn, seeds 1-3): 98.56-98.66% test accuracy after a 1-epoch run, 99.08-99.13% after a
// 3-epoch run (PyTorch with the same recipe: 98.63-98.67% after one epoch).
// Same seed and --threads: the same run, bit for bit (a resumed one included).
// stdout: one line per epoch, then a final line holding one JSON object (test accuracy and loss).
// stderr: a progress bar when it is a terminal, otherwise a log line every --log-interval steps.
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
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
#include "data/loader.h"
#include "data/mnist.h"
#include "examples/common/checkpoint.h"
#include "examples/common/flags.h"
#include "examples/common/metrics.h"
#include "examples/common/mnist_nets.h"
#include "examples/common/progress.h"
#include "examples/common/training.h"
#include "nn/nn.h"
#include "optim/optim.h"
#include "quant/convert.h"
#include "quant/fuse.h"

using namespace mantissa;
namespace ex = mantissa::examples;
using ex::Evaluation;
using ex::evaluate;
using ex::loss_scale_json;
using ex::scaler_text;
using ex::seconds_since;

namespace {

// The statistics of the MNIST training images (torchvision's values). Centred, unit-scale
// inputs keep the first layers' activations in a range where the default init works well.
constexpr float kMnistMean = 0.1307f;
constexpr float kMnistStd = 0.3081f;

struct Config {
  std::string model = "cnn";
  int64_t epochs = 3;
  int64_t batch_size = 64;
  double lr = 0.0;  // 0: the optimizer's default below
  std::string optimizer = "adamw";
  std::string schedule = "onecycle";
  int64_t seed = 1;
  std::string data = "datasets/mnist";
  std::string device = "cpu";
  std::string precision = "fp32";
  bool inspect = false;
  int64_t threads = 0;  // 0: OpenMP's default (all cores)
  std::string checkpoint;
  std::string resume;
  std::string metrics;
  int64_t log_interval = 100;
  int64_t train_limit = 0;  // 0: every training image
  bool qat = false;

  // The settings a resumed run must share with the run that wrote the checkpoint: any other
  // value would make the continuation differ from the uninterrupted run.
  std::map<std::string, std::string> as_map() const {
    char lr_text[32];
    std::snprintf(lr_text, sizeof lr_text, "%.17g", lr);  // round-trips exactly
    return {{"model", model},       {"epochs", std::to_string(epochs)}, {"batch_size", std::to_string(batch_size)},
            {"lr", lr_text},        {"optimizer", optimizer},           {"schedule", schedule},
            {"seed", std::to_string(seed)}, {"train_limit", std::to_string(train_limit)},
            {"precision", precision}, {"qat", qat ? "1" : "0"}};
  }
};

// OneCycle peak learning rates (measured: 2e-3 to 3e-3 for AdamW and SGD's 0.05 land within
// 0.1% of each other): Adam-family updates are scale-free, SGD's scale with the gradient.
double default_lr(const std::string& optimizer) { return optimizer == "sgd" ? 0.05 : 2e-3; }

// The policy wraps the optimizer: F32 masters (master policies) or the BF16 update rounding,
// seeded by --seed so a resumed bf16-pure-sr run rounds exactly as the uninterrupted one.
std::unique_ptr<optim::Optimizer> make_optimizer(const Config& c, const amp::Precision& precision,
                                                 const std::vector<Tensor>& params) {
  const auto seed = static_cast<uint64_t>(c.seed);
  if (c.optimizer == "sgd")
    return amp::make_optimizer(precision, {params}, optim::SGDOptions(c.lr).momentum(0.9).nesterov(true), seed);
  if (c.optimizer == "adam") return amp::make_optimizer(precision, {params}, optim::AdamOptions(c.lr), seed);
  // AdamW's decoupled weight decay (default 1e-2) regularizes without fighting Adam's scaling.
  return amp::make_optimizer(precision, {params}, optim::AdamWOptions(c.lr), seed);
}

// OneCycle warms up from lr/25 over the first 30% of the run, then anneals to ~0: the warm-up
// keeps Adam's first, badly-estimated second moments from taking huge steps, and the annealing
// lets the final weights settle, which is worth a few tenths of a percent of test accuracy.
// The schedule is stepped per batch, so it is defined by the total number of steps.
std::unique_ptr<optim::LRScheduler> make_schedule(const Config& c, optim::Optimizer& opt, int64_t steps_per_epoch) {
  if (c.schedule == "constant") return nullptr;
  return std::make_unique<optim::OneCycleLR>(
      opt, optim::OneCycleLROptions(c.lr).epochs(c.epochs).steps_per_epoch(steps_per_epoch));
}

int run(int argc, const char* const* argv) {
  const auto start = std::chrono::steady_clock::now();

  // Flags ----------------------------------------------------------------------------------
  Config c;
  ex::Flags flags("mnist", "Trains a CNN or MLP on MNIST-format IDX data and reports the test accuracy.");
  flags.add("model", &c.model, "network", {"cnn", "mlp"});
  flags.add("epochs", &c.epochs, "passes over the training set");
  flags.add("batch-size", &c.batch_size, "training batch size");
  flags.add("lr", &c.lr, "learning rate (OneCycle's peak); 0 = 2e-3 for adam/adamw, 0.05 for sgd");
  flags.add("optimizer", &c.optimizer, "optimizer", {"adamw", "adam", "sgd"});
  flags.add("schedule", &c.schedule, "learning-rate schedule, stepped per batch", {"onecycle", "constant"});
  flags.add("seed", &c.seed, "seeds the initialization, dropout and the shuffling");
  flags.add("data", &c.data, "directory with the four MNIST IDX files (scripts/fetch-mnist.sh DIR)");
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
  flags.add("qat", &c.qat, "quantization-aware training (fp32 only): fuse conv/linear + ReLU, quant::prepare_qat, "
            "observers frozen for the last 30% of the steps; at the end the model is converted to int8 and its "
            "test accuracy reported as int8_test_accuracy");
  if (!flags.parse(argc, argv)) return 0;
  if (c.epochs < 0) throw ex::FlagError("--epochs " + std::to_string(c.epochs) + ": must be >= 0");
  if (c.batch_size < 1) throw ex::FlagError("--batch-size " + std::to_string(c.batch_size) + ": must be >= 1");
  if (c.log_interval < 1) throw ex::FlagError("--log-interval " + std::to_string(c.log_interval) + ": must be >= 1");
  if (c.threads < 0) throw ex::FlagError("--threads " + std::to_string(c.threads) + ": must be >= 0");
  if (c.train_limit < 0) throw ex::FlagError("--train-limit " + std::to_string(c.train_limit) + ": must be >= 0");
  if (c.lr < 0) throw ex::FlagError("--lr " + std::to_string(c.lr) + ": must be >= 0");
  if (c.lr == 0) c.lr = default_lr(c.optimizer);

  if (c.inspect && c.metrics.empty()) throw ex::FlagError("--inspect writes its records into --metrics; give --metrics FILE");
  if (c.qat && c.precision != "fp32")
    throw ex::FlagError("--qat trains with fake quantization in F32; it does not combine with --precision " + c.precision);
  // What the metrics call this run: the precision policy, or "qat-int8" for fp32 + QAT.
  const std::string policy_label = c.qat ? "qat-int8" : c.precision;
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

  // Everything random (init, dropout masks) draws from the default generator; the data order
  // comes from the loader's own seeded stream. Same seed, same threads: the same run.
  manual_seed(static_cast<uint64_t>(c.seed));

  // Data -----------------------------------------------------------------------------------
  auto train_set = std::make_shared<data::MNIST>(c.data, data::Split::Train);
  auto test_set = std::make_shared<data::MNIST>(c.data, data::Split::Test);
  if (c.train_limit > 0 && c.train_limit < static_cast<int64_t>(train_set->size()))
    train_set = std::make_shared<data::MNIST>(train_set->images().narrow(0, 0, c.train_limit),
                                              train_set->targets().narrow(0, 0, c.train_limit));
  // Shuffled each epoch from (seed, epoch) alone, so a resumed run sees the same order; the
  // background thread assembles the next batches while this one trains.
  data::DataLoader train_loader(train_set, data::DataLoaderOptions(c.batch_size)
                                               .set_shuffle(true)
                                               .set_seed(static_cast<uint64_t>(c.seed))
                                               .set_normalize({kMnistMean}, {kMnistStd}));
  data::DataLoader test_loader(test_set, data::DataLoaderOptions(1000).set_normalize({kMnistMean}, {kMnistStd}));
  const auto steps_per_epoch = static_cast<int64_t>(train_loader.size());

  // Model, optimizer, schedule, loss ----------------------------------------------------------
  nn::ModulePtr model = ex::make_mnist_model(c.model);
  model->to(device);
  amp::prepare_model(*model, precision);  // 16-bit parameters for master and pure policies
  // QAT: each layer followed by a ReLU observes its post-ReLU output (the int8 model fuses them),
  // then fake quantizers join every layer and the input QuantStub (PyTorch's default QAT qconfig).
  // Before the optimizer is built: the fake quantizers hold no parameters, only observer buffers.
  quant::QATSchedule qat_schedule;
  if (c.qat) {
    for (const std::string& layer : c.model == "cnn" ? std::vector<std::string>{"conv1", "conv2", "fc1"}
                                                     : std::vector<std::string>{"fc1", "fc2"}) {
      if (layer.rfind("conv", 0) == 0) quant::fuse_conv_relu(*model, layer);
      else quant::fuse_linear_relu(*model, layer);
    }
    quant::prepare_qat(*model);
  }
  std::unique_ptr<optim::Optimizer> optimizer = make_optimizer(c, precision, model->parameters());
  std::unique_ptr<optim::LRScheduler> schedule = make_schedule(c, *optimizer, steps_per_epoch);
  nn::CrossEntropyLoss criterion;
  // Disabled (a pass-through) unless the policy scales the loss.
  amp::GradScaler scaler(amp::GradScalerOptions().enabled(precision.grad_scaler));
  std::unique_ptr<amp::Inspector> inspector;
  if (c.inspect) {
    inspector = std::make_unique<amp::Inspector>(amp::InspectorOptions().every_n_steps(c.log_interval));
    inspector->attach(model);
    inspector->attach(scaler);
  }

  // Resume: the checkpoint replaces the fresh weights, the optimizer's moments and step counts,
  // the schedule's position and the dropout stream, and says which epoch comes next.
  int64_t first_epoch = 0, step = 0;
  if (!c.resume.empty()) {
    // The settings first: a checkpoint of another run (say, another --precision) fails its
    // loads too, but this names the flag to change. OneCycle's shape depends on the run's
    // length; a constant rate may be trained for longer.
    std::vector<std::string> keys = {"model",     "batch_size", "lr",          "optimizer", "schedule",
                                     "seed",      "train_limit", "precision",  "qat"};
    if (c.schedule == "onecycle") keys.push_back("epochs");
    std::map<std::string, std::string> saved = ex::load_training_config(c.resume);
    saved.emplace("precision", "fp32");  // checkpoints from before --precision trained in F32
    saved.emplace("qat", "0");           // and from before --qat, without it
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
  train_loader.set_epoch(static_cast<uint64_t>(first_epoch));
  // The qparams settle in the last 30% of the run, so the weights finish training against fixed grids.
  const int64_t total_steps = steps_per_epoch * c.epochs;
  qat_schedule.freeze_observer_step = total_steps - total_steps * 3 / 10;
  ex::MetricsWriter metrics(c.metrics, /*append=*/!c.resume.empty());

  std::printf("training %s on %zu images (%lld steps/epoch, batch %lld), %s lr %g, schedule %s, %d threads, %s\n",
              c.model.c_str(), train_set->size(), static_cast<long long>(steps_per_epoch),
              static_cast<long long>(c.batch_size), c.optimizer.c_str(), c.lr, c.schedule.c_str(),
              omp_get_max_threads(), device.str().c_str());
  std::printf("precision %s\n", precision.describe().c_str());
  std::fflush(stdout);

  // The loop ---------------------------------------------------------------------------------
  const bool bar_on = ex::ProgressBar::enabled();
  double last_train_loss = NAN;
  Evaluation ev;
  bool evaluated = false;
  for (int64_t epoch = first_epoch; epoch < c.epochs; ++epoch) {
    model->train();
    ex::ProgressBar bar("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(c.epochs), steps_per_epoch);
    const auto epoch_start = std::chrono::steady_clock::now();
    auto interval_start = epoch_start;
    double epoch_loss = 0.0, interval_loss = 0.0;
    int64_t epoch_images = 0, interval_images = 0, interval_steps = 0, batch_index = 0;

    for (data::Example& batch : train_loader) {
      const Tensor x = batch.data.to(device);
      const Tensor y = batch.target.to(device);

      if (c.qat) qat_schedule.apply(*model, step);  // fake quant on; observers frozen late
      const bool inspecting = inspector && inspector->begin_step(step + 1);
      optimizer->zero_grad();                // drop last step's gradients
      Tensor loss;
      {
        // Forward and loss only: backward runs in the dtypes the forward chose.
        amp::AutocastGuard autocast(device.type, precision.autocast.value_or(DType::BF16),
                                    precision.autocast.has_value());
        loss = criterion((*model)(x), y);    // F32 under every policy
      }
      scaler.scale(loss).backward();         // fills every parameter's .grad (scaled for fp16)
      if (inspecting) inspector->capture_grads();  // as the backward produced them
      // Unscales and checks the gradients (master policies: widens the 16-bit ones into the F32
      // masters' .grad in the same pass), then steps unless one holds Inf/NaN.
      scaler.step(*optimizer);
      scaler.update();
      if (schedule) schedule->step();        // OneCycle moves per batch, after the update
      ++step;
      ++batch_index;
      if (inspecting) {
        if (const std::optional<amp::InspectorRecord> rec = inspector->end_step()) {
          ex::Json line = {{"event", "inspect"}, {"epoch", epoch + 1}, {"precision", policy_label}};
          const ex::Json fields = ex::Json::parse(rec->to_json());
          for (const auto& [k, v] : fields.items()) line[k] = v;
          metrics.write(line);
        }
      }

      const double l = loss.item_double();
      epoch_loss += l * static_cast<double>(x.size(0));
      interval_loss += l;
      ++interval_steps;
      epoch_images += x.size(0);
      interval_images += x.size(0);
      bar.update(batch_index, epoch_images, l);

      if (interval_steps == c.log_interval || batch_index == steps_per_epoch) {
        const double dt = seconds_since(interval_start);
        const double lr = optimizer->param_groups()[0].options().get_lr();
        const double mean_loss = interval_loss / static_cast<double>(interval_steps);
        const double ips = dt > 0 ? static_cast<double>(interval_images) / dt : 0.0;
        metrics.write({{"event", "log"}, {"epoch", epoch + 1}, {"step", step}, {"loss", ex::json_number(mean_loss)},
                       {"lr", lr}, {"test_accuracy", nullptr}, {"images_per_s", ips},
                       {"elapsed_s", seconds_since(start)}, {"precision", policy_label},
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
    const double epoch_s = seconds_since(epoch_start);
    last_train_loss = epoch_images > 0 ? epoch_loss / static_cast<double>(epoch_images) : NAN;

    ev = evaluate(*model, test_loader, device, precision);
    evaluated = true;
    const double lr = optimizer->param_groups()[0].options().get_lr();
    const double ips = epoch_s > 0 ? static_cast<double>(epoch_images) / epoch_s : 0.0;
    std::printf("epoch %lld/%lld: train loss %.4f, test loss %.4f, test accuracy %.2f%% (%lld/%lld), %.1f s, %.0f img/s\n",
                static_cast<long long>(epoch + 1), static_cast<long long>(c.epochs), last_train_loss, ev.loss,
                100.0 * ev.accuracy, static_cast<long long>(ev.correct), static_cast<long long>(ev.total), epoch_s, ips);
    std::fflush(stdout);
    metrics.write({{"event", "epoch"}, {"epoch", epoch + 1}, {"step", step}, {"loss", ex::json_number(last_train_loss)},
                   {"lr", lr}, {"test_accuracy", ev.accuracy}, {"test_loss", ex::json_number(ev.loss)},
                   {"images_per_s", ips}, {"epoch_s", epoch_s}, {"elapsed_s", seconds_since(start)},
                   {"precision", policy_label}, {"loss_scale", loss_scale_json(scaler)},
                   {"skipped_steps", scaler.skipped_steps()}, {"consecutive_skips", scaler.consecutive_skipped_steps()}});

    // Saved after the evaluation, which draws nothing: the generator state is the one the next
    // epoch starts from in this run, so a resumed run draws the same dropout masks.
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
  // A run resumed after its last epoch (or --epochs 0) still reports where the model stands.
  if (!evaluated) ev = evaluate(*model, test_loader, device, precision);
  // QAT: the int8 model the fake-quantized one stands for (quant::convert, in place), evaluated on
  // the same test set. The accuracy above is the fake-quant model's.
  std::optional<Evaluation> int8_ev;
  if (c.qat) {
    quant::convert(*model);
    int8_ev = evaluate(*model, test_loader, device, precision);
    std::printf("int8 model (quant::convert): test loss %.4f, test accuracy %.2f%% (%lld/%lld), %lld bytes\n",
                int8_ev->loss, 100.0 * int8_ev->accuracy, static_cast<long long>(int8_ev->correct),
                static_cast<long long>(int8_ev->total), static_cast<long long>(quant::state_dict_bytes(*model)));
    metrics.write({{"event", "int8"}, {"step", step}, {"test_accuracy", int8_ev->accuracy},
                   {"test_loss", ex::json_number(int8_ev->loss)}, {"bytes", quant::state_dict_bytes(*model)}});
  }

  ex::Json result = {{"model", c.model},
                     {"precision", policy_label},
                     {"epochs", c.epochs},
                     {"steps", step},
                     {"test_accuracy", ev.accuracy},
                     {"test_loss", ex::json_number(ev.loss)},
                     {"train_loss", ex::json_number(last_train_loss)},
                     {"skipped_steps", scaler.skipped_steps()},
                     {"elapsed_s", seconds_since(start)}};
  if (int8_ev) result["int8_test_accuracy"] = int8_ev->accuracy;
  std::printf("%s\n", result.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return ex::run_main("mnist", run, argc, argv); }
