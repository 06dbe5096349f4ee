// The two MNIST networks of the examples and benchmarks, written as a user writes a model: a
// Module subclass that registers its layers in its constructor and chains them in forward().
// Both return logits [N, 10]; train them with cross_entropy (log_softmax + nll_loss in one op).
#pragma once

#include <memory>
#include <string>

#include "core/error.h"
#include "nn/nn.h"
#include "quant/stubs.h"

namespace mantissa::examples {

// PyTorch's examples/mnist network. Layer names match it ("conv1.weight", "fc2.bias"), so a
// checkpoint loads into the PyTorch model and back.
class MnistCnn : public nn::Module {
 public:
  MnistCnn() {
    quant = register_module("quant", std::make_shared<quant::QuantStub>());  // identity until quantized
    conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(1, 32, 3));   // [N,1,28,28] -> [N,32,26,26]
    conv2 = register_module("conv2", std::make_shared<nn::Conv2d>(32, 64, 3));  // -> [N,64,24,24]
    dropout1 = register_module("dropout1", std::make_shared<nn::Dropout>(0.25));
    dropout2 = register_module("dropout2", std::make_shared<nn::Dropout>(0.5));
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(9216, 128));      // 64 * 12 * 12 after the pool
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(128, 10));
    dequant = register_module("dequant", std::make_shared<quant::DeQuantStub>());
  }

  // Children are called through operator(), so forward hooks (amp::Inspector) see each layer.
  // The stubs mark where quant::convert's int8 model quantizes its input and dequantizes its
  // logits (PyTorch's QuantStub / DeQuantStub); in a float model they pass tensors through and
  // hold no state, so the state_dict is PyTorch's examples/mnist one.
  Tensor forward(const Tensor& x) override {
    Tensor h = relu((*conv1)((*quant)(x)));
    h = relu((*conv2)(h));
    h = max_pool2d(h, {2, 2});
    h = (*dropout1)(h);  // identity in eval mode
    h = flatten(h, 1);
    h = relu((*fc1)(h));
    h = (*dropout2)(h);
    return (*dequant)((*fc2)(h));
  }

  std::shared_ptr<quant::QuantStub> quant;
  std::shared_ptr<quant::DeQuantStub> dequant;
  std::shared_ptr<nn::Conv2d> conv1, conv2;
  std::shared_ptr<nn::Dropout> dropout1, dropout2;
  std::shared_ptr<nn::Linear> fc1, fc2;
};

// A plain multilayer perceptron 784 -> 512 -> 256 -> 10 with ReLU.
class MnistMlp : public nn::Module {
 public:
  MnistMlp() {
    quant = register_module("quant", std::make_shared<quant::QuantStub>());
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(784, 512));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(512, 256));
    fc3 = register_module("fc3", std::make_shared<nn::Linear>(256, 10));
    dequant = register_module("dequant", std::make_shared<quant::DeQuantStub>());
  }

  Tensor forward(const Tensor& x) override {
    Tensor h = flatten((*quant)(x), 1);  // [N,1,28,28] -> [N,784], a view
    h = relu((*fc1)(h));
    h = relu((*fc2)(h));
    return (*dequant)((*fc3)(h));
  }

  std::shared_ptr<quant::QuantStub> quant;
  std::shared_ptr<quant::DeQuantStub> dequant;
  std::shared_ptr<nn::Linear> fc1, fc2, fc3;
};

// "cnn" or "mlp"; parameters drawn from the default generator, so seed it first.
inline nn::ModulePtr make_mnist_model(const std::string& kind) {
  if (kind == "cnn") return std::make_shared<MnistCnn>();
  if (kind == "mlp") return std::make_shared<MnistMlp>();
  MANTISSA_ERROR("make_mnist_model: unknown model \"", kind, "\"; expected cnn or mlp");
}

}  // namespace mantissa::examples
