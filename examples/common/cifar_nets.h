// The two CIFAR-10 networks of the examples and benchmarks, written as a user writes a model:
// ResNet-20 (He et al.'s CIFAR ResNet) and airbench94 (Keller Jordan's speed-record network),
// plus the 12x12 symmetric eigen-solver that sets airbench's frozen 2x2 patch-whitening conv.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "nn/init.h"
#include "nn/nn.h"
#include "nn/resnet_block.h"

namespace mantissa::examples {

// ------------------------------------------------------------------------------------------
// ResNet-20
// ------------------------------------------------------------------------------------------

// He et al. (2015), section 4.2: a 3x3 stem conv (16 channels) + BN + ReLU, three stages of three
// BasicBlocks with 16/32/64 channels (stride 2 at the first block of stages 2 and 3), global
// average pooling and Linear(64, 10).
//
// Shortcuts: the paper's CIFAR nets use option A (parameter-free identity shortcuts, subsampled
// and zero-padded in channels; 0.27M parameters). This model uses option B, nn::BasicBlock's
// 1x1 conv + BN projection where the shape changes (the torchvision block, so a PyTorch peer is
// torchvision.models.resnet.BasicBlock): two projections, 16->32 and 32->64, add
// 512 + 64 + 2048 + 128 = 2,752 parameters, 272,474 in all (269,722 with option A, the
// paper's "0.27M"). Accuracy is
// the same to within the seed spread (the paper's Table 3 on ImageNet shows B marginally ahead).
//
// Init as torchvision's ResNet: convs kaiming_normal_(fan_out, relu), BatchNorm weight 1 and
// bias 0, the Linear with PyTorch's default. Names follow torchvision ("layer2.0.downsample.0").
class ResNet20 : public nn::Module {
 public:
  static constexpr int64_t kBlocksPerStage = 3;
  static constexpr int64_t kParameterCount = 272474;

  explicit ResNet20(int64_t num_classes = 10) {
    conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(nn::Conv2dOptions(3, 16, 3).padding(1).bias(false)));
    bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(16));
    layer1 = register_module("layer1", make_stage(16, 16, 1));
    layer2 = register_module("layer2", make_stage(16, 32, 2));
    layer3 = register_module("layer3", make_stage(32, 64, 2));
    fc = register_module("fc", std::make_shared<nn::Linear>(64, num_classes));
    // He init keeps the activations' variance constant through the ReLU stack (fan_out: of
    // the backward pass, torchvision's choice); without it a 20-layer net starts much slower.
    apply([](nn::Module& m) {
      if (auto* conv = dynamic_cast<nn::Conv2d*>(&m)) nn::init::kaiming_normal_(conv->weight, 0.0, "fan_out", "relu");
    });
  }

  // [N, 3, 32, 32] -> logits [N, num_classes].
  Tensor forward(const Tensor& x) override {
    Tensor h = relu((*bn1)((*conv1)(x)));  // [N, 16, 32, 32]
    h = (*layer1)(h);                      // [N, 16, 32, 32]
    h = (*layer2)(h);                      // [N, 32, 16, 16]
    h = (*layer3)(h);                      // [N, 64, 8, 8]
    h = mean(h, {2, 3});                   // global average pool -> [N, 64]
    return (*fc)(h);
  }

  std::shared_ptr<nn::Conv2d> conv1;
  std::shared_ptr<nn::BatchNorm2d> bn1;
  std::shared_ptr<nn::Sequential> layer1, layer2, layer3;
  std::shared_ptr<nn::Linear> fc;

 private:
  static std::shared_ptr<nn::Sequential> make_stage(int64_t in_planes, int64_t planes, int64_t stride) {
    auto stage = std::make_shared<nn::Sequential>();
    for (int64_t i = 0; i < kBlocksPerStage; ++i)
      stage->push_back(std::make_shared<nn::BasicBlock>(i == 0 ? in_planes : planes, planes, i == 0 ? stride : 1));
    return stage;
  }
};

// ------------------------------------------------------------------------------------------
// Symmetric eigen-decomposition (cyclic Jacobi)
// ------------------------------------------------------------------------------------------

struct SymmetricEigen {
  std::vector<double> values;   // [n], descending
  std::vector<double> vectors;  // [n, n] row-major, row k = unit eigenvector of values[k]
};

// Eigenvalues and eigenvectors of the symmetric n x n matrix `a` (row-major; only symmetric
// input is meaningful, the strictly lower triangle is read as the upper one). Cyclic Jacobi:
// each rotation zeroes one off-diagonal pair, sweeps repeat until the off-diagonal mass is
// below 1e-30 of the total, which converges quadratically; for the 12x12 patch covariance that
// is under ten sweeps. Jacobi is chosen over QR for its accuracy on small eigenvalues (the
// whitening divides by their square roots), with every sum in double.
inline SymmetricEigen symmetric_eigen(std::vector<double> a, int64_t n) {
  MANTISSA_CHECK(n > 0 && static_cast<int64_t>(a.size()) == n * n, "symmetric_eigen: expected ", n * n,
                 " values for a ", n, "x", n, " matrix, got ", a.size());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < i; ++j) a[i * n + j] = a[j * n + i];  // symmetric by construction
  std::vector<double> v(static_cast<size_t>(n * n), 0.0);          // accumulated rotations, columns
  for (int64_t i = 0; i < n; ++i) v[i * n + i] = 1.0;
  auto off_norm = [&] {
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = i + 1; j < n; ++j) s += a[i * n + j] * a[i * n + j];
    return s;
  };
  double total = 0.0;
  for (double x : a) total += x * x;
  for (int sweep = 0; sweep < 100 && off_norm() > 1e-30 * total; ++sweep) {
    for (int64_t p = 0; p < n; ++p) {
      for (int64_t q = p + 1; q < n; ++q) {
        const double apq = a[p * n + q];
        if (apq == 0.0) continue;
        // The rotation angle that zeroes a[p][q] (Golub & Van Loan 8.4.2), the smaller root of
        // t^2 + 2 theta t - 1 = 0, which keeps the rotation near the identity (stable).
        const double theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1.0));
        const double c = 1.0 / std::sqrt(t * t + 1.0), s = t * c;
        for (int64_t k = 0; k < n; ++k) {  // A <- A J (columns p, q)
          const double akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (int64_t k = 0; k < n; ++k) {  // A <- J^T A (rows p, q)
          const double apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        a[p * n + q] = a[q * n + p] = 0.0;  // exactly, instead of its rounding residue
        for (int64_t k = 0; k < n; ++k) {  // V <- V J
          const double vkp = v[k * n + p], vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](int64_t i, int64_t j) { return a[i * n + i] > a[j * n + j]; });
  SymmetricEigen out;
  out.values.resize(static_cast<size_t>(n));
  out.vectors.resize(static_cast<size_t>(n * n));
  for (int64_t k = 0; k < n; ++k) {
    const int64_t col = order[static_cast<size_t>(k)];
    out.values[static_cast<size_t>(k)] = a[col * n + col];
    for (int64_t i = 0; i < n; ++i) out.vectors[static_cast<size_t>(k * n + i)] = v[i * n + col];
  }
  return out;
}

// The uncentered covariance E[p p^T] of every k x k patch (stride 1, no padding) of images
// [N, C, H, W] (any device and floating dtype; read as F32 on the CPU, summed in double), patches
// flattened in (c, kh, kw) order, i.e. the layout of a Conv2d weight row. [C*k*k, C*k*k] row-major.
inline std::vector<double> patch_covariance(const Tensor& images, int64_t k) {
  MANTISSA_CHECK(images.dim() == 4 && images.size(2) >= k && images.size(3) >= k && k > 0,
                 "patch_covariance: expected images [N, C, H, W] with H, W >= ", k, ", got ", shape_str(images.sizes()));
  const Tensor x = images.to(kCPU, DType::F32).contiguous();
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3), d = c * k * k;
  const float* px = x.data<float>();
  std::vector<double> cov(static_cast<size_t>(d * d), 0.0);
  std::vector<double> p(static_cast<size_t>(d));
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t y = 0; y + k <= h; ++y)
      for (int64_t xo = 0; xo + k <= w; ++xo, ++count) {
        for (int64_t ch = 0; ch < c; ++ch)
          for (int64_t ky = 0; ky < k; ++ky)
            for (int64_t kx = 0; kx < k; ++kx)
              p[static_cast<size_t>((ch * k + ky) * k + kx)] = px[((i * c + ch) * h + y + ky) * w + xo + kx];
        for (int64_t r = 0; r < d; ++r)
          for (int64_t s = r; s < d; ++s) cov[static_cast<size_t>(r * d + s)] += p[r] * p[s];
      }
  MANTISSA_CHECK(count > 0, "patch_covariance: no patches in an empty batch ", shape_str(images.sizes()));
  for (int64_t r = 0; r < d; ++r)
    for (int64_t s = r; s < d; ++s)
      cov[static_cast<size_t>(s * d + r)] = cov[static_cast<size_t>(r * d + s)] /= static_cast<double>(count);
  return cov;
}

// ------------------------------------------------------------------------------------------
// airbench94
// ------------------------------------------------------------------------------------------

// airbench's conv: 'same' padding, and an identity ("dirac") init of the first C_in output
// filters on top of PyTorch's default init, an implicit residual that lets the deep plain
// stack train at airbench's high learning rate from the first step. A bias, if any, starts at 0.
inline std::shared_ptr<nn::Conv2d> make_airbench_conv(int64_t in, int64_t out, int64_t kernel, int64_t padding,
                                                      bool bias) {
  auto conv = std::make_shared<nn::Conv2d>(nn::Conv2dOptions(in, out, kernel).padding(padding).bias(bias));
  NoGradGuard no_grad;
  std::vector<float> w = to_vector<float>(conv->weight);
  const int64_t per_in = kernel * kernel, per_out = in * per_in, center = (kernel / 2) * kernel + kernel / 2;
  for (int64_t o = 0; o < std::min(in, out); ++o) {
    std::fill(w.begin() + o * per_out, w.begin() + (o + 1) * per_out, 0.0f);
    w[static_cast<size_t>(o * per_out + o * per_in + center)] = 1.0f;
  }
  conv->weight.copy_(from_vector(w, conv->weight.sizes()));
  if (bias) conv->bias.zero_();
  return conv;
}

// airbench's BatchNorm: eps 1e-12, the scale frozen at 1 (requires_grad false: the following
// conv or linear absorbs any scale), the shift trained. airbench writes momentum=0.6 as "keep
// 0.6 of the running statistics" and passes PyTorch's momentum = 1 - 0.6 = 0.4, the weight of
// the new batch; this is that PyTorch momentum 0.4. amp::prepare_model keeps it F32.
inline std::shared_ptr<nn::BatchNorm2d> make_airbench_norm(int64_t channels) {
  auto bn = std::make_shared<nn::BatchNorm2d>(nn::BatchNorm2dOptions(channels).eps(1e-12).momentum(0.4));
  bn->weight.requires_grad_(false);
  return bn;
}

// conv 3x3 -> max_pool 2 -> BN -> GELU -> conv 3x3 -> BN -> GELU (pooling before the first norm
// halves the norm's work; the order is airbench's).
class AirbenchConvGroup : public nn::Module {
 public:
  AirbenchConvGroup(int64_t in, int64_t out) {
    conv1 = register_module("conv1", make_airbench_conv(in, out, 3, 1, false));
    pool = register_module("pool", std::make_shared<nn::MaxPool2d>(2));
    norm1 = register_module("norm1", make_airbench_norm(out));
    conv2 = register_module("conv2", make_airbench_conv(out, out, 3, 1, false));
    norm2 = register_module("norm2", make_airbench_norm(out));
    activ = register_module("activ", std::make_shared<nn::GELU>());
  }

  Tensor forward(const Tensor& x) override {
    Tensor h = (*activ)((*norm1)((*pool)((*conv1)(x))));
    return (*activ)((*norm2)((*conv2)(h)));
  }

  std::shared_ptr<nn::Conv2d> conv1, conv2;
  std::shared_ptr<nn::MaxPool2d> pool;
  std::shared_ptr<nn::BatchNorm2d> norm1, norm2;
  std::shared_ptr<nn::GELU> activ;
};

// airbench94 (github.com/KellerJordan/cifar10-airbench, airbench94.py): a 2x2 whitening conv
// 3 -> 24 with bias, GELU, three ConvGroups of widths 64/256/256, max_pool 3, flatten,
// Linear(256, 10) without bias, logits times 1/9. 1,972,792 parameters (1,971,352 trained: the
// whitening weight (288) and the BatchNorm scales (1,152) are frozen; the whitening bias
// trains for the first epochs only, which the training script arranges, as airbench does).
//
// The whitening weight is not learned: init_whitening() sets it from the training images so
// that its first 12 outputs are the 2x2 patches in the eigenbasis of their covariance, each
// scaled to unit variance, and the other 12 the negations (after the GELU, the pair carries
// both signs of each component).
class Airbench94 : public nn::Module {
 public:
  static constexpr int64_t kParameterCount = 1972792;
  static constexpr int64_t kTrainableParameterCount = kParameterCount - 288 - 1152;
  static constexpr double kScale = 1.0 / 9.0;  // logit scaling: a temperature airbench tuned

  explicit Airbench94(int64_t num_classes = 10, int64_t width1 = 64, int64_t width2 = 256, int64_t width3 = 256) {
    whiten = register_module("whiten", make_airbench_conv(3, 24, 2, 0, true));
    whiten->weight.requires_grad_(false);
    activ = register_module("activ", std::make_shared<nn::GELU>());
    block1 = register_module("block1", std::make_shared<AirbenchConvGroup>(24, width1));
    block2 = register_module("block2", std::make_shared<AirbenchConvGroup>(width1, width2));
    block3 = register_module("block3", std::make_shared<AirbenchConvGroup>(width2, width3));
    pool = register_module("pool", std::make_shared<nn::MaxPool2d>(3));
    head = register_module("head", std::make_shared<nn::Linear>(nn::LinearOptions(width3, num_classes).bias(false)));
  }

  // [N, 3, 32, 32] -> logits [N, num_classes]: 31x31 after the 2x2 conv, then 15, 7, 3 after the
  // groups' pools, 1 after the final max_pool 3.
  Tensor forward(const Tensor& x) override {
    Tensor h = (*activ)((*whiten)(x));
    h = (*block1)(h);
    h = (*block2)(h);
    h = (*block3)(h);
    h = flatten((*pool)(h), 1);
    return mul((*head)(h), kScale);
  }

  // Sets the whitening weight from (normalized) training images [N, 3, H, W]: with C the 12x12
  // covariance of their 2x2 patches and C = sum_k l_k e_k e_k^T (l descending), row k is
  // e_k / sqrt(l_k + eps) and row 12 + k its negation. eps (airbench's 5e-4) bounds the gain of
  // the near-null directions, where the estimate is mostly noise. airbench uses 5000 images.
  void init_whitening(const Tensor& images, double eps = 5e-4) {
    MANTISSA_CHECK(images.dim() == 4 && images.size(1) == 3, "Airbench94::init_whitening: expected images [N, 3, H, W], got ",
                   shape_str(images.sizes()));
    const int64_t k = 2, d = 3 * k * k;
    const SymmetricEigen eig = symmetric_eigen(patch_covariance(images, k), d);
    std::vector<float> w(static_cast<size_t>(2 * d * d));
    for (int64_t r = 0; r < d; ++r) {
      const double scale = 1.0 / std::sqrt(std::max(eig.values[r], 0.0) + eps);  // a covariance is PSD
      for (int64_t i = 0; i < d; ++i) {
        const auto v = static_cast<float>(eig.vectors[r * d + i] * scale);
        w[static_cast<size_t>(r * d + i)] = v;
        w[static_cast<size_t>((r + d) * d + i)] = -v;
      }
    }
    NoGradGuard no_grad;
    whiten->weight.copy_(from_vector(w, {2 * d, 3, k, k}));  // converts to the weight's device/dtype
  }

  // airbench's two SGD groups: the BatchNorm shifts (names containing "norm"; trained with a
  // 64x learning rate) and everything else trainable, frozen tensors left out.
  std::vector<Tensor> norm_biases() const { return select(true); }
  std::vector<Tensor> other_parameters() const { return select(false); }

  std::shared_ptr<nn::Conv2d> whiten;
  std::shared_ptr<nn::GELU> activ;
  std::shared_ptr<AirbenchConvGroup> block1, block2, block3;
  std::shared_ptr<nn::MaxPool2d> pool;
  std::shared_ptr<nn::Linear> head;

 private:
  std::vector<Tensor> select(bool norms) const {
    std::vector<Tensor> out;
    for (const auto& [name, p] : named_parameters())
      if (p.requires_grad() && (name.find("norm") != std::string::npos) == norms) out.push_back(p);
    return out;
  }
};

// "resnet20" or "airbench"; parameters drawn from the default generator, so seed it first.
// The airbench model still needs init_whitening() on training images.
inline nn::ModulePtr make_cifar_model(const std::string& kind) {
  if (kind == "resnet20") return std::make_shared<ResNet20>();
  if (kind == "airbench") return std::make_shared<Airbench94>();
  MANTISSA_ERROR("make_cifar_model: unknown model \"", kind, "\"; expected resnet20 or airbench");
}

}  // namespace mantissa::examples
