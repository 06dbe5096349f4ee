// Module fusion for quantization-aware training (torch.ao.quantization.fuse_modules_qat, in
// place): Conv2d + BatchNorm2d (+ ReLU), Conv2d + ReLU and Linear + ReLU pairs named by their
// dotted module paths are fused on the existing layers, and fold_batch_norm gives the folded
// weight and bias that conversion to int8 uses.
#pragma once

#include <string>

#include "core/tensor.h"
#include "nn/conv.h"
#include "nn/module.h"
#include "nn/norm.h"

namespace mantissa::quant {

// Fuses the BatchNorm2d at dotted path `bn` (as Module::named_modules names it) into the
// Conv2d at `conv`, and with relu also the ReLU after it: see nn::Conv2d::set_fused_batch_norm
// for the forward (PyTorch's ConvBn2d / ConvBnReLU2d approximation). Nothing is swapped or
// re-registered: the model's typed members and its state_dict keys stay as they are, the
// BatchNorm's own forward becomes the identity, and a model forward that still applies relu
// afterwards applies it to nonnegative values (a no-op).
// As in PyTorch, fuse before quant::prepare_qat (which then puts the weight fake quantizer on the
// folded weight): a layer that already carries fake quantizers is refused, since its observers
// would have seen unfolded weights or pre-ReLU outputs. Also refused, with an Error naming the
// paths: a missing path, a module of the wrong type, BatchNorm num_features != out_channels, a
// BatchNorm without running statistics (track_running_stats=false: the fold needs running_var),
// a conv or BatchNorm already fused, devices that differ. affine=false BatchNorms fuse with
// gamma = 1, beta = 0 (as fold_batch_norm and PyTorch's fuse_conv_bn_weights treat them).
void fuse_conv_bn(nn::Module& model, const std::string& conv, const std::string& bn, bool relu = false);
// Linear + ReLU and Conv2d + ReLU (also after fuse_conv_bn without relu): the layer applies relu
// before its activation_post_process. Same rules as fuse_conv_bn.
void fuse_linear_relu(nn::Module& model, const std::string& linear);
void fuse_conv_relu(nn::Module& model, const std::string& conv);

// The conv and BatchNorm (running statistics) as one conv, for conversion:
//   w' = w * (gamma * rsqrt(running_var + eps))[:, None, None, None]
//   b' = (b - running_mean) * rsqrt(running_var + eps) * gamma + beta
// computed in F32 op by op in torch.nn.utils.fusion.fuse_conv_bn_weights's order (which is what
// PyTorch's convert computes, so the result matches it bit for bit); b = 0 without conv bias,
// gamma = 1 and beta = 0 without affine. Finite when gamma = 0 (that channel: w' = 0, b' = beta).
// The results are new detached F32 tensors on the conv's device.
struct FoldedConv {
  Tensor weight;
  Tensor bias;
};
FoldedConv fold_batch_norm(const nn::Conv2d& conv, const nn::BatchNorm2d& bn);

}  // namespace mantissa::quant
