// Static post-training quantization and conversion to int8 (torch.ao.quantization's eager-mode
// prepare / convert), in place: prepare attaches observers to a model's Linear / Conv2d layers
// and QuantStubs, the user runs calibration batches, and convert turns every observed layer into
// the int8 module it now runs (nn::Linear::set_quantized), so a forward() that calls typed member
// layers and functional relu / max_pool2d / flatten runs on quantized tensors end to end.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "nn/module.h"
#include "quant/observer.h"
#include "quant/qat.h"

namespace mantissa::quant {

using ObserverFactory = std::function<std::shared_ptr<Observer>()>;

// A QConfig whose fake quantizers wrap these observers (a null factory skips that half).
QConfig make_qconfig(const ObserverFactory& weight_observer, const ObserverFactory& activation_observer);

// PyTorch's default static PTQ qconfig for x86 (fbgemm), without reduce_range: weights int8
// symmetric per output channel with a min/max observer; activations uint8 affine per tensor with
// a HistogramObserver (the range minimizing the L2 quantization error).
QConfig default_qconfig();

// Attaches qconfig's fake quantizers as prepare_qat does, with fake quantization switched off:
// forward() only observes (the model's outputs are unchanged). Put the model in eval() and run
// calibration batches, then convert. Returns the number of layers and stubs prepared.
int64_t prepare(nn::Module& model, const QConfig& qconfig = default_qconfig());

// Converts, in place, every prepared nn::Linear / nn::Conv2d (one with an activation_post_process)
// into a QuantizedLinear / QuantizedConv2d, every prepared QuantStub into a quantizer and every
// prepared FloatFunctional into a quantized add (quant/stubs.h):
//   weights: quantized with the weight fake quantizer's qparams (QAT: the ones fake quantization
//            trained with; PTQ: its observer's, which saw the weight in every calibration forward;
//            observed now if it never ran), which must be symmetric (zero point 0);
//   Conv2d with a fused BatchNorm2d (quant::fuse_conv_bn): the BatchNorm's running statistics are
//            folded into the weight and bias first (quant::fold_batch_norm), the BatchNorm's state
//            leaves the model (its forward stays the identity), as PyTorch replaces it by Identity;
//   outputs: the layer's activation_post_process qparams (per tensor, int8 or uint8), with a fused
//            ReLU kept as a floor at the zero point.
// The float weights, biases and fake quantizers leave the registry and state_dict, which then holds
// the int8 state (weight codes, scales, zero points). The model is put in eval(). Layers without an
// activation_post_process stay float: feed them through a DeQuantStub. Converting twice changes
// nothing. Returns the number of modules converted.
int64_t convert(nn::Module& model);

// Bytes of model.state_dict(): what a checkpoint of the model holds.
int64_t state_dict_bytes(const nn::Module& model);

}  // namespace mantissa::quant
