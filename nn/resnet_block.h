// nn::BasicBlock: torchvision's ResNet basic block (two 3x3 convs with batch norm and ReLU, plus
// the identity or a 1x1-conv + BN `downsample` shortcut), with torchvision's child names.
#pragma once

#include "nn/activation.h"
#include "nn/container.h"
#include "nn/conv.h"
#include "nn/norm.h"

namespace mantissa::nn {

class BasicBlock : public Module {
 public:
  static constexpr int64_t expansion = 1;

  // downsample = Sequential(Conv2d(in_planes, planes, 1, stride, bias=false), BatchNorm2d(planes))
  // when stride != 1 or in_planes != planes; otherwise the shortcut is the identity.
  BasicBlock(int64_t in_planes, int64_t planes, int64_t stride = 1);
  Tensor forward(const Tensor& input) override;

  std::shared_ptr<Conv2d> conv1;  // 3x3, stride, padding 1, no bias
  std::shared_ptr<BatchNorm2d> bn1;
  std::shared_ptr<ReLU> relu;
  std::shared_ptr<Conv2d> conv2;  // 3x3, padding 1, no bias
  std::shared_ptr<BatchNorm2d> bn2;
  std::shared_ptr<Sequential> downsample;  // null for the identity shortcut
};

}  // namespace mantissa::nn
