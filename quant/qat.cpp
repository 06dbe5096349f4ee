// prepare_qat and QATSchedule: a pre-order walk over the model's modules that attaches fake
// quantizers to Linear/Conv2d layers in place, and flips their switches (and BatchNorm's mode).
#include "quant/qat.h"

#include <vector>

#include "core/error.h"
#include "nn/conv.h"
#include "nn/linear.h"
#include "nn/norm.h"
#include "quant/observer.h"
#include "quant/stubs.h"

namespace mantissa::quant {

namespace {

// The walk collects first and changes after: attaching children while Module::apply iterates a
// module's child list would invalidate its iterators.
std::vector<nn::Module*> all_modules(nn::Module& model) {
  std::vector<nn::Module*> out;
  model.apply([&](nn::Module& m) { out.push_back(&m); });
  return out;
}

std::shared_ptr<FakeQuantizeBase> make_checked(const std::function<std::shared_ptr<FakeQuantizeBase>()>& factory,
                                               const char* which) {
  std::shared_ptr<FakeQuantizeBase> fq = factory();
  MANTISSA_CHECK(fq != nullptr, "prepare_qat: the qconfig's ", which, " factory returned null");
  return fq;
}

template <typename Layer>
bool prepare_layer(Layer& layer, const QConfig& qconfig) {
  if (layer.weight_fake_quant() || layer.activation_post_process()) return false;
  const Device device = layer.weight.device();
  if (qconfig.weight) {
    std::shared_ptr<FakeQuantizeBase> w = make_checked(qconfig.weight, "weight");
    w->to(device);
    layer.set_weight_fake_quant(w);
  }
  if (qconfig.activation) {
    std::shared_ptr<FakeQuantizeBase> a = make_checked(qconfig.activation, "activation");
    a->to(device);
    layer.set_activation_post_process(a);
  }
  return qconfig.weight || qconfig.activation;
}

template <typename Layer>
void collect_from(const Layer& layer, std::vector<std::shared_ptr<FakeQuantizeBase>>& out) {
  for (const nn::ModulePtr& m : {layer.weight_fake_quant(), layer.activation_post_process()}) {
    if (auto fq = std::dynamic_pointer_cast<FakeQuantizeBase>(m)) out.push_back(std::move(fq));
  }
}

bool prepare_stub(OutputQuantizer& stub, const QConfig& qconfig) {
  if (stub.activation_post_process() || !qconfig.activation) return false;
  stub.set_activation_post_process(make_checked(qconfig.activation, "activation"));
  return true;
}

}  // namespace

QConfig default_qat_qconfig() {
  QConfig c;
  c.weight = [] {
    QSpec spec;
    spec.dtype = QDType::Int8;
    spec.scheme = QScheme::Symmetric;
    return std::make_shared<FakeQuantize>(make_moving_average_per_channel_observer(spec, 0));
  };
  c.activation = [] {
    QSpec spec;
    spec.dtype = QDType::UInt8;
    spec.scheme = QScheme::Affine;
    return std::make_shared<FakeQuantize>(std::make_shared<MovingAverageMinMaxObserver>(spec));
  };
  return c;
}

int64_t prepare_qat(nn::Module& model, const QConfig& qconfig) {
  int64_t prepared = 0;
  for (nn::Module* m : all_modules(model)) {
    if (auto* lin = dynamic_cast<nn::Linear*>(m)) {
      prepared += prepare_layer(*lin, qconfig);
    } else if (auto* conv = dynamic_cast<nn::Conv2d*>(m)) {
      prepared += prepare_layer(*conv, qconfig);
    } else if (auto* stub = dynamic_cast<OutputQuantizer*>(m)) {
      prepared += prepare_stub(*stub, qconfig);
    }
  }
  return prepared;
}

std::vector<std::shared_ptr<FakeQuantizeBase>> attached_fake_quantizers(nn::Module& model) {
  std::vector<std::shared_ptr<FakeQuantizeBase>> out;
  for (nn::Module* m : all_modules(model)) {
    if (auto* lin = dynamic_cast<nn::Linear*>(m)) {
      collect_from(*lin, out);
    } else if (auto* conv = dynamic_cast<nn::Conv2d*>(m)) {
      collect_from(*conv, out);
    } else if (auto* stub = dynamic_cast<OutputQuantizer*>(m)) {
      if (auto fq = std::dynamic_pointer_cast<FakeQuantizeBase>(stub->activation_post_process())) out.push_back(fq);
    }
  }
  return out;
}

void QATSchedule::apply(nn::Module& model, int64_t step) const {
  MANTISSA_CHECK(step >= 0, "QATSchedule::apply: step must be non-negative, got ", step);
  const bool fake_quant = step >= start_fake_quant_step;
  const bool observe = step < freeze_observer_step;
  for (const auto& fq : attached_fake_quantizers(model)) {
    fq->enable_fake_quant(fake_quant);
    fq->enable_observer(observe);
  }
  const bool bn_frozen = step >= freeze_bn_step;
  for (nn::Module* m : all_modules(model)) {
    if (auto* bn = dynamic_cast<nn::BatchNormBase*>(m)) bn->train(bn_frozen ? false : model.is_training());
  }
}

}  // namespace mantissa::quant
