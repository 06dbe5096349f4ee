// Shared helpers of the example programs (see training.h).
#include "examples/common/training.h"

#include <cstdio>
#include <exception>

#include "amp/autocast.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "examples/common/flags.h"

namespace mantissa::examples {

Evaluation evaluate(nn::Module& model, data::DataLoader& loader, const Device& device, const amp::Precision& p) {
  model.eval();
  NoGradGuard no_grad;
  amp::AutocastGuard autocast(device.type, p.autocast.value_or(DType::BF16), p.autocast.has_value());
  Evaluation ev;
  double loss_sum = 0.0;
  for (data::Example& batch : loader) {
    const Tensor x = batch.data.to(device);
    const Tensor y = batch.target.to(device);
    const Tensor logits = model.forward(x);
    loss_sum += cross_entropy(logits, y, Reduction::Sum).item_double();
    ev.correct += static_cast<int64_t>(eq(argmax(logits, 1), y).sum().item_double());
    ev.total += y.numel();
  }
  model.train();
  if (ev.total > 0) {
    ev.loss = loss_sum / static_cast<double>(ev.total);
    ev.accuracy = static_cast<double>(ev.correct) / static_cast<double>(ev.total);
  }
  return ev;
}

Json loss_scale_json(const amp::GradScaler& scaler) {
  return scaler.is_enabled() ? Json(scaler.get_scale()) : Json(nullptr);
}

std::string scaler_text(const amp::GradScaler& scaler) {
  if (!scaler.is_enabled()) return "";
  char buf[96];
  std::snprintf(buf, sizeof buf, "  scale %g (%lld skipped)", scaler.get_scale(),
                static_cast<long long>(scaler.skipped_steps()));
  return buf;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int run_main(const char* program, int (*run)(int, const char* const*), int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const FlagError& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    return 1;
  }
}

}  // namespace mantissa::examples
