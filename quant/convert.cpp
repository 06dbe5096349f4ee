// prepare (observers only) and convert (in place, to int8 modules); see convert.h.
#include "quant/convert.h"

#include <vector>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "nn/conv.h"
#include "nn/linear.h"
#include "nn/norm.h"
#include "quant/fake_quantize.h"
#include "quant/learnable_fake_quantize.h"
#include "quant/fuse.h"
#include "quant/histogram_observer.h"
#include "quant/quantized_modules.h"
#include "quant/stubs.h"

namespace mantissa::quant {

namespace {

FakeQuantizeBase& fake_quant_of(const nn::ModulePtr& m, const char* layer, const char* which) {
  auto* fq = dynamic_cast<FakeQuantizeBase*>(m.get());
  MANTISSA_CHECK(fq != nullptr, "convert: the ", which, " of ", layer, " is a ", m->name(),
                 ", not a fake quantizer (FakeQuantize / LearnableFakeQuantize)");
  return *fq;
}

// The weight qparams conversion quantizes with (convert.h): the fake quantizer's.
QParams weight_qparams_for(const nn::ModulePtr& wfq, const Tensor& weight, const char* layer) {
  if (!wfq) return weight_qparams(weight);
  FakeQuantizeBase& fq = fake_quant_of(wfq, layer, "weight_fake_quant");
  if (!fq.observer().has_data()) {
    NoGradGuard ng;
    fq.observer()(weight.detach());
    // A FakeQuantize refreshes its qparams from the observer lazily; observing through the
    // module keeps that bookkeeping right.
    const bool fq_on = fq.fake_quant_enabled();
    fq.disable_fake_quant();
    (void)fq(weight.detach());
    fq.enable_fake_quant(fq_on);
  }
  return fq.qparams();
}

QParams output_qparams_for(const nn::ModulePtr& afq, const char* layer) {
  FakeQuantizeBase& fq = fake_quant_of(afq, layer, "activation_post_process");
  MANTISSA_CHECK(fq.observer().has_data() || dynamic_cast<LearnableFakeQuantize*>(&fq) != nullptr, "convert: ", layer,
                 "'s output observer saw no data; run calibration batches (or train) between prepare and convert");
  return fq.qparams();
}

// The float state of a converted layer leaves its registry (PyTorch's converted modules hold no
// float weight); the members are released so the memory goes too.
template <typename Layer>
void drop_float_state(Layer& layer) {
  if (layer.has_parameter("weight")) layer.remove_parameter("weight");
  if (layer.has_parameter("bias")) layer.remove_parameter("bias");
  for (const char* child : {"weight_fake_quant", "activation_post_process"}) {
    for (const auto& [name, m] : layer.named_children())
      if (name == child) {
        layer.remove_module(child);
        break;
      }
  }
  layer.weight = Tensor();
  layer.bias = Tensor();
}

// A BatchNorm folded into its conv keeps its identity forward; its state leaves the model.
void drop_batch_norm_state(nn::BatchNorm2d& bn) {
  for (const auto& [name, t] : bn.named_parameters(false)) bn.remove_parameter(name);
  for (const auto& [name, t] : bn.named_buffers(false)) bn.remove_buffer(name);
}

bool convert_linear(nn::Linear& lin, const std::string& path) {
  if (lin.quantized() || !lin.activation_post_process()) return false;
  const std::string layer = "Linear '" + path + "'";
  NoGradGuard ng;
  const QParams wq = weight_qparams_for(lin.weight_fake_quant(), lin.weight, layer.c_str());
  const QParams oq = output_qparams_for(lin.activation_post_process(), layer.c_str());
  auto q = std::make_shared<QuantizedLinear>(lin.weight.detach(), lin.bias.defined() ? lin.bias.detach() : Tensor(), wq,
                                             oq, lin.fused_relu());
  q->to(lin.weight.device());
  drop_float_state(lin);
  lin.set_quantized(q);
  return true;
}

bool convert_conv(nn::Conv2d& conv, const std::string& path) {
  if (conv.quantized() || !conv.activation_post_process()) return false;
  const std::string layer = "Conv2d '" + path + "'";
  NoGradGuard ng;
  Tensor w = conv.weight.detach(), b = conv.bias.defined() ? conv.bias.detach() : Tensor();
  std::shared_ptr<nn::BatchNorm2d> bn = conv.fused_batch_norm();
  if (bn) {
    FoldedConv f = fold_batch_norm(conv, *bn);
    w = f.weight;
    b = f.bias;
  }
  const QParams wq = weight_qparams_for(conv.weight_fake_quant(), w, layer.c_str());
  const QParams oq = output_qparams_for(conv.activation_post_process(), layer.c_str());
  auto q = std::make_shared<QuantizedConv2d>(conv, w, b, wq, oq, conv.fused_relu());
  q->to(conv.weight.device());
  drop_float_state(conv);
  if (bn) drop_batch_norm_state(*bn);
  conv.set_quantized(q);
  return true;
}

}  // namespace

QConfig make_qconfig(const ObserverFactory& weight_observer, const ObserverFactory& activation_observer) {
  QConfig c;
  if (weight_observer) {
    c.weight = [weight_observer]() -> std::shared_ptr<FakeQuantizeBase> {
      return std::make_shared<FakeQuantize>(weight_observer());
    };
  }
  if (activation_observer) {
    c.activation = [activation_observer]() -> std::shared_ptr<FakeQuantizeBase> {
      return std::make_shared<FakeQuantize>(activation_observer());
    };
  }
  return c;
}

QConfig default_qconfig() {
  QSpec w;
  w.dtype = QDType::Int8;
  w.scheme = QScheme::Symmetric;
  QSpec a;
  a.dtype = QDType::UInt8;
  a.scheme = QScheme::Affine;
  return make_qconfig([w] { return make_per_channel_min_max_observer(w, 0); },
                      [a] { return std::make_shared<HistogramObserver>(a); });
}

int64_t prepare(nn::Module& model, const QConfig& qconfig) {
  const int64_t n = prepare_qat(model, qconfig);
  for (const auto& fq : attached_fake_quantizers(model)) fq->disable_fake_quant();
  return n;
}

int64_t convert(nn::Module& model) {
  // Collect with paths first: converting changes the registries the walk would iterate.
  // The listing holds a reference to every module for the whole walk: converting a QuantStub
  // unregisters (and would otherwise free) its fake quantizer, which comes later in the list.
  const nn::NamedModules owned = model.named_modules("", false);
  std::vector<std::pair<std::string, nn::Module*>> mods{{"", &model}};
  for (const auto& [path, m] : owned) mods.emplace_back(path, m.get());
  int64_t converted = 0;
  for (const auto& [path, m] : mods) {
    if (auto* lin = dynamic_cast<nn::Linear*>(m)) {
      converted += convert_linear(*lin, path);
    } else if (auto* conv = dynamic_cast<nn::Conv2d*>(m)) {
      converted += convert_conv(*conv, path);
    } else if (auto* stub = dynamic_cast<OutputQuantizer*>(m)) {
      if (!stub->converted() && stub->activation_post_process()) {
        stub->convert(output_qparams_for(stub->activation_post_process(), (stub->name() + " '" + path + "'").c_str()));
        ++converted;
      }
    }
  }
  model.eval();
  return converted;
}

int64_t state_dict_bytes(const nn::Module& model) {
  int64_t bytes = 0;
  for (const auto& [name, t] : model.state_dict()) bytes += static_cast<int64_t>(t.nbytes());
  return bytes;
}

}  // namespace mantissa::quant
