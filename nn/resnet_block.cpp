// nn::BasicBlock: out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)).
#include "nn/resnet_block.h"

namespace mantissa::nn {

BasicBlock::BasicBlock(int64_t in_planes, int64_t planes, int64_t stride) {
  MANTISSA_CHECK(in_planes > 0 && planes > 0 && stride > 0, "BasicBlock: in_planes ", in_planes, ", planes ", planes,
                 " and stride ", stride, " must be positive");
  conv1 = register_module("conv1",
                          std::make_shared<Conv2d>(Conv2dOptions(in_planes, planes, 3).stride(stride).padding(1).bias(false)));
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(planes));
  relu = register_module("relu", std::make_shared<ReLU>());
  conv2 = register_module("conv2", std::make_shared<Conv2d>(Conv2dOptions(planes, planes, 3).padding(1).bias(false)));
  bn2 = register_module("bn2", std::make_shared<BatchNorm2d>(planes));
  if (stride != 1 || in_planes != planes * expansion) {
    downsample = register_module(
        "downsample",
        std::make_shared<Sequential>(
            std::make_shared<Conv2d>(Conv2dOptions(in_planes, planes * expansion, 1).stride(stride).bias(false)),
            std::make_shared<BatchNorm2d>(planes * expansion)));
  }
}

Tensor BasicBlock::forward(const Tensor& input) {
  Tensor out = relu->forward(bn1->forward(conv1->forward(input)));
  out = bn2->forward(conv2->forward(out));
  Tensor identity = downsample ? downsample->forward(input) : input;
  return relu->forward(add(out, identity));
}

}  // namespace mantissa::nn
