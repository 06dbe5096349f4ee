// Quantizes the MNIST CNN every way quant/ offers and prints one table of what each costs:
// test accuracy, model bytes and inference images/s, against the FP32 model they all start from.
//
//   build/examples/quantize_mnist --data datasets/mnist                  (trains the FP32 model first)
//   build/examples/quantize_mnist --data datasets/mnist --fp32 cnn.safetensors   (saves it there, or
//                                                     loads it when the file exists)
//   build/examples/quantize_mnist --data datasets/mnist --only fp32,ptq-static-histogram,qat-int8
//
// Rows (each from a fresh copy of the FP32 weights):
//   fp32                     the float model
//   ptq-dynamic              Linear layers int8 (weights once, activations per batch); convs float
//   ptq-static-<observer>    prepare -> calibrate (--calib-batches training batches) -> convert, with
//                            minmax / moving-average / histogram / percentile activation observers
//                            (uint8 affine per tensor) and int8 symmetric per-channel weights
//   ptq-static-per-tensor-weights   the histogram row with one weight scale per layer
//   ptq-static-symmetric-acts       the histogram row with int8 symmetric activations (zero point 0)
//   qat-int8                 fused, prepare_qat, --qat-epochs of fine-tuning, convert
//   qat-int4-weights         the same with int4 weight codes ([-8, 7], stored in int8)
// Conv+ReLU and Linear+ReLU are fused first (quant::fuse_*), so each int8 layer quantizes its
// post-ReLU output. Inference speed: the whole test set in batches of --bench-batch, eval mode, no
// autograd, best of --bench-rounds passes, in the same process for every row.
// stdout: the table, then one line holding the same table as a JSON object.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/grad_mode.h"
#include "core/generator.h"
#include "core/kernels/device_memory.h"
#include "data/loader.h"
#include "data/mnist.h"
#include "examples/common/flags.h"
#include "examples/common/metrics.h"
#include "examples/common/mnist_nets.h"
#include "examples/common/training.h"
#include "nn/nn.h"
#include "nn/safetensors.h"
#include "optim/optim.h"
#include "quant/convert.h"
#include "quant/dynamic.h"
#include "quant/fuse.h"
#include "quant/histogram_observer.h"
#include "quant/percentile_observer.h"

using namespace mantissa;
namespace ex = mantissa::examples;
using ex::seconds_since;

namespace {

constexpr float kMnistMean = 0.1307f;
constexpr float kMnistStd = 0.3081f;

struct Config {
  std::string data = "datasets/mnist";
  std::string fp32_path;
  int64_t epochs = 2;
  int64_t qat_epochs = 1;
  double qat_lr = 1e-4;
  int64_t calib_batches = 32;
  int64_t batch_size = 64;
  int64_t bench_batch = 256;
  int64_t bench_rounds = 3;
  int64_t threads = 0;
  int64_t seed = 1;
  int64_t train_limit = 0;
  std::string device = "cpu";
  std::string only;
};

std::shared_ptr<ex::MnistCnn> fresh_cnn(const nn::NamedTensors& fp32_state) {
  auto m = std::make_shared<ex::MnistCnn>();
  if (!fp32_state.empty()) m->load_state_dict(fp32_state);
  return m;
}

// conv1 -> relu, conv2 -> relu, fc1 -> relu: the layers whose outputs only ever pass a ReLU.
void fuse_cnn(ex::MnistCnn& m) {
  quant::fuse_conv_relu(m, "conv1");
  quant::fuse_conv_relu(m, "conv2");
  quant::fuse_linear_relu(m, "fc1");
}

// AdamW under a OneCycle schedule (examples/mnist's recipe), or a constant rate for fine-tuning.
void train(nn::Module& model, data::DataLoader& loader, int64_t epochs, double lr, bool one_cycle, const Device& device,
           const std::function<void(int64_t)>& before_step, const char* what) {
  optim::AdamW opt(model.parameters(), optim::AdamWOptions(lr));
  std::unique_ptr<optim::LRScheduler> sched;
  const auto steps_per_epoch = static_cast<int64_t>(loader.size());
  if (one_cycle)
    sched = std::make_unique<optim::OneCycleLR>(opt,
                                                optim::OneCycleLROptions(lr).epochs(epochs).steps_per_epoch(steps_per_epoch));
  int64_t step = 0;
  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    loader.set_epoch(static_cast<uint64_t>(epoch));
    const auto t0 = std::chrono::steady_clock::now();
    double loss_sum = 0;
    int64_t n = 0;
    for (data::Example& b : loader) {
      model.train();
      if (before_step) before_step(step);
      opt.zero_grad();
      Tensor loss = cross_entropy(model(b.data.to(device)), b.target.to(device));
      loss.backward();
      opt.step();
      if (sched) sched->step();
      loss_sum += loss.item_double();
      ++n;
      ++step;
    }
    std::fprintf(stderr, "%s: epoch %lld/%lld, train loss %.4f, %.1f s\n", what, static_cast<long long>(epoch + 1),
                 static_cast<long long>(epochs), n ? loss_sum / static_cast<double>(n) : NAN, seconds_since(t0));
  }
  model.eval();
}

// Test accuracy of the model as it is (eval mode, no autograd).
double accuracy(nn::Module& model, data::DataLoader& loader, const Device& device) {
  model.eval();
  NoGradGuard ng;
  int64_t correct = 0, total = 0;
  for (data::Example& b : loader) {
    Tensor y = b.target.to(device);
    correct += static_cast<int64_t>(eq(argmax(model(b.data.to(device)), 1), y).sum().item_double());
    total += y.numel();
  }
  return total ? static_cast<double>(correct) / static_cast<double>(total) : 0.0;
}

// Inference images/s over pre-made batches (on the device already): best of `rounds` passes.
double images_per_s(nn::Module& model, const std::vector<Tensor>& batches, int64_t rounds) {
  model.eval();
  NoGradGuard ng;
  (void)model(batches.front());  // warm-up: primitive caches, packed weights
  double best = 0;
  int64_t images = 0;
  for (const Tensor& b : batches) images += b.size(0);
  for (int64_t r = 0; r < rounds; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (const Tensor& b : batches) {
      Tensor out = model(b);
      (void)out.sum().item_double();  // waits for the device
    }
    best = std::max(best, static_cast<double>(images) / seconds_since(t0));
  }
  return best;
}

struct Row {
  std::string name, what;
  double accuracy = 0, images_per_s = 0;
  int64_t bytes = 0;
  double seconds = 0;  // calibration / fine-tuning / conversion time
};

quant::QSpec spec(quant::QDType d, quant::QScheme s, int64_t axis = -1) {
  quant::QSpec q;
  q.dtype = d;
  q.scheme = s;
  q.axis = axis;
  return q;
}

quant::ObserverFactory activation_observer(const std::string& kind, const quant::QSpec& s) {
  if (kind == "minmax") return [s] { return std::make_shared<quant::MinMaxObserver>(s); };
  if (kind == "moving-average") return [s] { return std::make_shared<quant::MovingAverageMinMaxObserver>(s); };
  if (kind == "histogram") return [s] { return std::make_shared<quant::HistogramObserver>(s); };
  if (kind == "percentile") return [s] { return std::make_shared<quant::PercentileObserver>(s); };
  throw std::runtime_error("unknown observer " + kind);
}

int run(int argc, const char* const* argv) {
  Config c;
  ex::Flags flags("quantize_mnist", "Quantizes the MNIST CNN (PTQ dynamic and static, QAT int8 and int4) and "
                  "prints accuracy, size and speed against FP32.");
  flags.add("data", &c.data, "directory with the four MNIST IDX files (scripts/fetch-mnist.sh DIR)");
  flags.add("fp32", &c.fp32_path, "FP32 weights (safetensors state_dict): loaded if the file exists, else trained "
            "and saved there");
  flags.add("epochs", &c.epochs, "FP32 training epochs when no --fp32 file exists");
  flags.add("qat-epochs", &c.qat_epochs, "QAT fine-tuning epochs from the FP32 weights");
  flags.add("qat-lr", &c.qat_lr, "QAT fine-tuning learning rate (AdamW, constant)");
  flags.add("calib-batches", &c.calib_batches, "training batches the static PTQ observers see");
  flags.add("batch-size", &c.batch_size, "training and calibration batch size");
  flags.add("bench-batch", &c.bench_batch, "inference batch size of the speed column");
  flags.add("bench-rounds", &c.bench_rounds, "passes over the test set per speed figure (best kept)");
  flags.add("threads", &c.threads, "CPU threads; 0 = all cores");
  flags.add("seed", &c.seed, "seeds initialization, dropout and shuffling");
  flags.add("train-limit", &c.train_limit, "train on the first N images only (quick checks); 0 = all");
  flags.add("device", &c.device, "cpu, or cuda[:N] for an extra speed column of the models that run there");
  flags.add("only", &c.only, "comma-separated row names to run (fp32 always runs); empty = all");
  if (!flags.parse(argc, argv)) return 0;
  if (c.epochs < 0 || c.qat_epochs < 0) throw ex::FlagError("--epochs and --qat-epochs must be >= 0");
  if (c.calib_batches < 1) throw ex::FlagError("--calib-batches must be >= 1");
  if (c.batch_size < 1 || c.bench_batch < 1 || c.bench_rounds < 1)
    throw ex::FlagError("--batch-size, --bench-batch and --bench-rounds must be >= 1");
  if (c.threads < 0 || c.train_limit < 0) throw ex::FlagError("--threads and --train-limit must be >= 0");
  if (c.threads > 0) omp_set_num_threads(static_cast<int>(c.threads));
  Device cuda;
  bool with_cuda = false;
  if (c.device != "cpu") {
    try {
      cuda = Device(c.device);
    } catch (const Error&) {
      throw ex::FlagError("--device " + c.device + ": expected cpu, cuda or cuda:N");
    }
    if (!cuda.is_cuda() || !kernels::cuda_is_available())
      throw ex::FlagError("--device " + c.device + ": CUDA is not usable here (" + kernels::cuda_unavailable_reason() + ")");
    with_cuda = true;
  }
  std::set<std::string> only;
  {
    std::stringstream ss(c.only);
    for (std::string item; std::getline(ss, item, ',');)
      if (!item.empty()) only.insert(item);
  }
  auto wanted = [&](const std::string& name) { return only.empty() || only.count(name) > 0; };
  manual_seed(static_cast<uint64_t>(c.seed));
  const Device cpu;

  // Data -----------------------------------------------------------------------------------
  auto train_set = std::make_shared<data::MNIST>(c.data, data::Split::Train);
  auto test_set = std::make_shared<data::MNIST>(c.data, data::Split::Test);
  if (c.train_limit > 0 && c.train_limit < static_cast<int64_t>(train_set->size()))
    train_set = std::make_shared<data::MNIST>(train_set->images().narrow(0, 0, c.train_limit),
                                              train_set->targets().narrow(0, 0, c.train_limit));
  data::DataLoader train_loader(train_set, data::DataLoaderOptions(c.batch_size)
                                               .set_shuffle(true)
                                               .set_seed(static_cast<uint64_t>(c.seed))
                                               .set_normalize({kMnistMean}, {kMnistStd}));
  data::DataLoader test_loader(test_set, data::DataLoaderOptions(c.bench_batch).set_normalize({kMnistMean}, {kMnistStd}));
  std::vector<Tensor> bench_cpu, bench_cuda;
  for (data::Example& b : test_loader) {
    bench_cpu.push_back(b.data.contiguous());
    if (with_cuda) bench_cuda.push_back(b.data.to(cuda));
  }
  std::vector<Tensor> calib;  // the same calibration batches for every static row
  for (data::Example& b : train_loader) {
    if (static_cast<int64_t>(calib.size()) == c.calib_batches) break;
    calib.push_back(b.data.contiguous());
  }

  // FP32 -----------------------------------------------------------------------------------
  nn::NamedTensors fp32_state;
  std::string fp32_source;
  if (!c.fp32_path.empty() && std::filesystem::exists(c.fp32_path)) {
    fp32_state = safetensors::load(c.fp32_path).tensors;
    fp32_source = "loaded from " + c.fp32_path;
  } else {
    auto m = std::make_shared<ex::MnistCnn>();
    const auto t0 = std::chrono::steady_clock::now();
    train(*m, train_loader, c.epochs, 2e-3, /*one_cycle=*/true, cpu, nullptr, "fp32");
    fp32_state = m->state_dict();
    fp32_source = "trained " + std::to_string(c.epochs) + " epochs in " + std::to_string(seconds_since(t0)) + " s";
    if (!c.fp32_path.empty()) safetensors::save(c.fp32_path, fp32_state);
  }
  std::printf("quantize_mnist: cnn, fp32 weights %s; %lld calibration batches of %lld; QAT %lld epoch(s) at lr %g; "
              "speed at batch %lld, %d threads\n",
              fp32_source.c_str(), static_cast<long long>(calib.size()), static_cast<long long>(c.batch_size),
              static_cast<long long>(c.qat_epochs), c.qat_lr, static_cast<long long>(c.bench_batch), omp_get_max_threads());
  std::fflush(stdout);

  std::vector<Row> rows;
  std::vector<double> cuda_speed;
  auto finish = [&](Row r, nn::Module& m, double seconds) {
    r.seconds = seconds;
    r.accuracy = accuracy(m, test_loader, cpu);
    r.bytes = quant::state_dict_bytes(m);
    r.images_per_s = images_per_s(m, bench_cpu, c.bench_rounds);
    double cu = NAN;
    if (with_cuda) {
      try {
        m.to(cuda);
        cu = images_per_s(m, bench_cuda, c.bench_rounds);
        m.to(cpu);
      } catch (const Error& e) {
        std::fprintf(stderr, "%s: no CUDA figure: %s\n", r.name.c_str(), e.what());
      }
    }
    cuda_speed.push_back(cu);
    std::fprintf(stderr, "%-32s %6.2f%%  %9lld bytes  %8.0f img/s\n", r.name.c_str(), 100 * r.accuracy,
                 static_cast<long long>(r.bytes), r.images_per_s);
    rows.push_back(std::move(r));
  };

  {
    auto m = fresh_cnn(fp32_state);
    finish({"fp32", "float model"}, *m, 0);
  }
  if (wanted("ptq-dynamic")) {
    auto m = fresh_cnn(fp32_state);
    const auto t0 = std::chrono::steady_clock::now();
    quant::quantize_dynamic(*m);
    finish({"ptq-dynamic", "Linear int8, activations per batch; convs float"}, *m, seconds_since(t0));
  }
  const quant::QSpec w_per_channel = spec(quant::QDType::Int8, quant::QScheme::Symmetric, 0);
  const quant::QSpec w_per_tensor = spec(quant::QDType::Int8, quant::QScheme::Symmetric);
  const quant::QSpec a_affine = spec(quant::QDType::UInt8, quant::QScheme::Affine);
  const quant::QSpec a_symmetric = spec(quant::QDType::Int8, quant::QScheme::Symmetric);
  auto static_row = [&](const std::string& name, const std::string& what, const quant::QSpec& wspec,
                        const std::string& observer, const quant::QSpec& aspec) {
    if (!wanted(name)) return;
    auto m = fresh_cnn(fp32_state);
    const auto t0 = std::chrono::steady_clock::now();
    fuse_cnn(*m);
    m->eval();
    quant::ObserverFactory wobs = wspec.per_channel()
                                      ? quant::ObserverFactory([wspec] { return quant::make_per_channel_min_max_observer(wspec, 0); })
                                      : quant::ObserverFactory([wspec] { return std::make_shared<quant::MinMaxObserver>(wspec); });
    quant::prepare(*m, quant::make_qconfig(wobs, activation_observer(observer, aspec)));
    {
      NoGradGuard ng;
      for (const Tensor& b : calib) (*m)(b);
    }
    quant::convert(*m);
    finish({name, what}, *m, seconds_since(t0));
  };
  for (const std::string obs : {"minmax", "moving-average", "histogram", "percentile"})
    static_row("ptq-static-" + obs, obs + " activations, per-channel weights", w_per_channel, obs, a_affine);
  static_row("ptq-static-per-tensor-weights", "histogram activations, one weight scale per layer", w_per_tensor,
             "histogram", a_affine);
  static_row("ptq-static-symmetric-acts", "histogram int8 symmetric activations, per-channel weights", w_per_channel,
             "histogram", a_symmetric);

  auto qat_row = [&](const std::string& name, const std::string& what, quant::QDType wdtype) {
    if (!wanted(name)) return;
    auto m = fresh_cnn(fp32_state);
    const auto t0 = std::chrono::steady_clock::now();
    fuse_cnn(*m);
    quant::QConfig qc = quant::default_qat_qconfig();
    const quant::QSpec ws = spec(wdtype, quant::QScheme::Symmetric, 0);
    qc.weight = [ws]() -> std::shared_ptr<quant::FakeQuantizeBase> {
      return std::make_shared<quant::FakeQuantize>(quant::make_moving_average_per_channel_observer(ws, 0));
    };
    quant::prepare_qat(*m, qc);
    // From trained FP32 weights the observers' first batch already gives usable ranges, so fake
    // quantization starts at step 0; the qparams freeze for the last 30% of the steps so the
    // weights settle against fixed grids (PyTorch's tutorial freezes observers late, by epoch).
    const auto steps = static_cast<int64_t>(train_loader.size()) * c.qat_epochs;
    quant::QATSchedule sched;
    sched.start_fake_quant_step = 0;
    sched.freeze_observer_step = steps - steps * 3 / 10;
    train(*m, train_loader, c.qat_epochs, c.qat_lr, /*one_cycle=*/false, cpu,
          [&](int64_t step) { sched.apply(*m, step); }, name.c_str());
    quant::convert(*m);
    finish({name, what}, *m, seconds_since(t0));
  };
  qat_row("qat-int8", "QAT " + std::to_string(c.qat_epochs) + " epoch(s), int8", quant::QDType::Int8);
  qat_row("qat-int4-weights", "QAT " + std::to_string(c.qat_epochs) + " epoch(s), int4 weights, uint8 activations",
          quant::QDType::Int4);

  // The table -------------------------------------------------------------------------------
  const Row& fp32 = rows.front();
  std::printf("\n%-32s %9s %8s %11s %7s %10s %6s", "model", "accuracy", "vs fp32", "bytes", "x fp32", "img/s",
              "x fp32");
  if (with_cuda) std::printf(" %11s", "cuda img/s");
  std::printf("  %s\n", "what");
  ex::Json jrows = ex::Json::array();
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    const double dpp = 100 * (r.accuracy - fp32.accuracy);
    std::printf("%-32s %8.2f%% %+7.2f %11lld %7.3f %10.0f %6.2f", r.name.c_str(), 100 * r.accuracy, dpp,
                static_cast<long long>(r.bytes), static_cast<double>(r.bytes) / static_cast<double>(fp32.bytes),
                r.images_per_s, r.images_per_s / fp32.images_per_s);
    if (with_cuda) std::printf(" %11.0f", cuda_speed[i]);
    std::printf("  %s\n", r.what.c_str());
    ex::Json j = {{"name", r.name},
                  {"accuracy", r.accuracy},
                  {"accuracy_delta_pp", dpp},
                  {"bytes", r.bytes},
                  {"images_per_s", r.images_per_s},
                  {"speedup", r.images_per_s / fp32.images_per_s},
                  {"prepare_s", r.seconds}};
    if (with_cuda) j["cuda_images_per_s"] = ex::json_number(cuda_speed[i]);
    jrows.push_back(j);
  }
  ex::Json out = {{"model", "cnn"},
                  {"fp32", fp32_source},
                  {"bench_batch", c.bench_batch},
                  {"threads", omp_get_max_threads()},
                  {"calib_batches", static_cast<int64_t>(calib.size())},
                  {"qat_epochs", c.qat_epochs},
                  {"rows", jrows}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return ex::run_main("quantize_mnist", run, argc, argv); }
