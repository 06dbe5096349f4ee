// Tensor basics: metadata, views sharing storage, contiguity, broadcasting, factories,
// conversions, item(), printing, and the version counter.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/ops.h"
#include "core/generator.h"
#include "core/kernels/device_memory.h"

namespace mantissa {
namespace {

TEST(Tensor, FactoriesHaveShapeDtypeAndValues) {
  Tensor z = zeros({2, 3});
  EXPECT_EQ(z.sizes(), (Shape{2, 3}));
  EXPECT_EQ(z.strides(), (Shape{3, 1}));
  EXPECT_EQ(z.dtype(), DType::F32);
  EXPECT_EQ(z.numel(), 6);
  for (float v : to_vector<float>(z)) EXPECT_EQ(v, 0.0f);
  for (double v : to_vector<double>(ones({4}, DType::F16))) EXPECT_EQ(v, 1.0);
  for (double v : to_vector<double>(full({2, 2}, 2.5, DType::BF16))) EXPECT_EQ(v, 2.5);
  EXPECT_EQ(to_vector<int64_t>(arange(5, DType::I64)), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(to_vector<double>(arange(1.0, 2.0, 0.25, DType::F64)), (std::vector<double>{1.0, 1.25, 1.5, 1.75}));
  Tensor s = scalar_tensor(3.0);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(s.item<float>(), 3.0f);
}

TEST(Tensor, FromVectorConvertsAndChecksCount) {
  Tensor t = from_vector(std::vector<float>{1.5f, -2.0f, 3.25f}, {3}, DType::F16);
  EXPECT_EQ(t.dtype(), DType::F16);
  EXPECT_EQ(to_vector<double>(t), (std::vector<double>{1.5, -2.0, 3.25}));
  EXPECT_THROW(from_vector(std::vector<float>{1, 2, 3}, {2, 2}), Error);
  try {
    from_vector(std::vector<float>{1, 2, 3}, {2, 2});
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 2]"), std::string::npos) << e.what();
  }
}

TEST(Tensor, ViewsShareStorageAndVersion) {
  Tensor a = arange(12, DType::F32).reshape({3, 4});
  Tensor t = a.transpose(0, 1);
  EXPECT_EQ(t.sizes(), (Shape{4, 3}));
  EXPECT_EQ(t.strides(), (Shape{1, 4}));
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.storage(), a.storage());
  uint32_t v0 = a.version();
  t.fill_(1.0);
  EXPECT_EQ(a.version(), v0 + 1);
  EXPECT_EQ(to_vector<float>(a)[5], 1.0f);
  Tensor c = t.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_NE(c.storage(), a.storage());
}

TEST(Tensor, ViewOpsComputeGeometry) {
  Tensor a = arange(24, DType::F32).reshape({2, 3, 4});
  Tensor p = a.permute({2, 0, 1});
  EXPECT_EQ(p.sizes(), (Shape{4, 2, 3}));
  EXPECT_EQ(p.strides(), (Shape{1, 12, 4}));
  Tensor n = a.narrow(2, 1, 2);
  EXPECT_EQ(n.sizes(), (Shape{2, 3, 2}));
  EXPECT_EQ(n.storage_offset(), 1);
  EXPECT_EQ(to_vector<float>(n)[0], 1.0f);
  Tensor s = a.slice(1, 0, 3, 2);
  EXPECT_EQ(s.sizes(), (Shape{2, 2, 4}));
  EXPECT_EQ(to_vector<float>(s)[4], 8.0f);
  Tensor e = from_vector(std::vector<float>{1, 2, 3}, {3, 1}).expand({2, 3, 4});
  EXPECT_EQ(e.strides(), (Shape{0, 1, 0}));
  EXPECT_EQ(to_vector<float>(e)[5], 2.0f);
  EXPECT_EQ(a.unsqueeze(1).sizes(), (Shape{2, 1, 3, 4}));
  EXPECT_EQ(a.unsqueeze(1).squeeze().sizes(), (Shape{2, 3, 4}));
  EXPECT_EQ(a.flatten().sizes(), (Shape{24}));
  EXPECT_EQ(a.flatten(1).sizes(), (Shape{2, 12}));
  EXPECT_EQ(a.view({-1, 6}).sizes(), (Shape{4, 6}));
  EXPECT_EQ(a.select(0, 1).sizes(), (Shape{3, 4}));
  EXPECT_EQ(to_vector<float>(a.select(0, 1))[0], 12.0f);
}

TEST(Tensor, ViewOfNonContiguousFailsButReshapeCopies) {
  Tensor t = arange(6, DType::F32).reshape({2, 3}).t();
  EXPECT_THROW(t.view({6}), Error);
  Tensor r = t.reshape({6});
  EXPECT_EQ(to_vector<float>(r), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  // A transposed view can still be viewed when the merged dims stay contiguous.
  Tensor u = arange(24, DType::F32).reshape({2, 3, 4}).transpose(0, 1);
  EXPECT_EQ(u.view({3, 2, 2, 2}).sizes(), (Shape{3, 2, 2, 2}));
}

TEST(Tensor, BroadcastShapes) {
  EXPECT_EQ(broadcast_shapes({3, 1, 4}, {2, 4}, "t"), (Shape{3, 2, 4}));
  EXPECT_EQ(broadcast_shapes({}, {2, 4}, "t"), (Shape{2, 4}));
  EXPECT_THROW(broadcast_shapes({3}, {4}, "t"), Error);
}

TEST(Tensor, ConversionsRoundOnce) {
  // 1 + 2^-11 is a tie between two F16 values: rounds to even (1.0).
  Tensor x = from_vector(std::vector<double>{1.0 + std::ldexp(1.0, -11), 65520.0, -0.0}, {3}, DType::F64);
  auto h = to_vector<double>(x.to(DType::F16));
  EXPECT_EQ(h[0], 1.0);
  EXPECT_TRUE(std::isinf(h[1]));
  EXPECT_TRUE(std::signbit(h[2]));
  // Float -> int truncates toward zero; NaN never reaches an integer conversion as UB.
  Tensor f = from_vector(std::vector<float>{2.7f, -2.7f, NAN}, {3});
  auto i = to_vector<int64_t>(f.to(DType::I64));
  EXPECT_EQ(i[0], 2);
  EXPECT_EQ(i[1], -2);
  EXPECT_EQ(to_vector<uint8_t>(from_vector(std::vector<float>{0.0f, 0.5f}, {2}).to(DType::Bool)),
            (std::vector<uint8_t>{0, 1}));
}

TEST(Tensor, ItemNeedsOneElement) {
  EXPECT_EQ(from_vector(std::vector<float>{4.0f}, {1, 1}).item<float>(), 4.0f);
  EXPECT_THROW(zeros({2}).item<float>(), Error);
}

TEST(Tensor, PrintsLikePyTorch) {
  EXPECT_EQ(from_vector(std::vector<float>{1, 2, 3}, {3}).str(), "tensor([1., 2., 3.])");
  EXPECT_EQ(from_vector(std::vector<float>{1.5f, -2.25f}, {2}).str(), "tensor([ 1.5000, -2.2500])");
  EXPECT_EQ(from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2}).str(), "tensor([[1., 2.],\n        [3., 4.]])");
  EXPECT_EQ(from_vector(std::vector<float>{1, 2}, {2}, DType::F16).str(), "tensor([1., 2.], dtype=F16)");
  EXPECT_EQ(arange(3, DType::I64).str(), "tensor([0, 1, 2])");
  EXPECT_EQ(scalar_tensor(2.5).str(), "tensor(2.5000)");
  EXPECT_EQ(zeros({2}).requires_grad_().str(), "tensor([0., 0.], requires_grad=True)");
  EXPECT_EQ(from_vector(std::vector<float>{1e-5f, 1.0f}, {2}).str(), "tensor([1.0000e-05, 1.0000e+00])");
  Tensor big = arange(2000, DType::F32);
  EXPECT_NE(big.str().find("..."), std::string::npos);
}

TEST(Tensor, UndefinedTensorGivesAnError) {
  Tensor t;
  EXPECT_FALSE(t.defined());
  EXPECT_THROW(t.sizes(), Error);
  EXPECT_EQ(t.str(), "[ undefined Tensor ]");
}

TEST(Tensor, ZeroSizeTensorsWork) {
  Tensor e = zeros({0, 3});
  EXPECT_EQ(e.numel(), 0);
  EXPECT_TRUE(e.is_contiguous());
  EXPECT_EQ(e.reshape({3, 0}).sizes(), (Shape{3, 0}));
  EXPECT_EQ(e.to(DType::F16).numel(), 0);
  EXPECT_EQ(e.str(), "tensor([], size=(0, 3))");
}

TEST(Tensor, ShapeAndDimErrorsNameTheOp) {
  Tensor a = zeros({2, 3});
  try {
    a.transpose(0, 2);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("transpose: dimension 2 is out of range"), std::string::npos) << e.what();
  }
  EXPECT_THROW(a.view({4}), Error);
  EXPECT_THROW(a.expand({3, 3}), Error);
  EXPECT_THROW(a.permute({0, 0}), Error);
  EXPECT_THROW(a.select(1, 3), Error);
  EXPECT_THROW(a.narrow(1, 2, 2), Error);
  EXPECT_THROW(zeros({-1}), Error);
  EXPECT_THROW(a.data<double>(), Error);
}

TEST(Tensor, DeviceParsingAndCudaAbsence) {
  EXPECT_EQ(Device("cuda:1").index, 1);
  EXPECT_TRUE(Device("cpu").is_cpu());
  EXPECT_THROW(Device("gpu"), Error);
  if (!kernels::cuda_is_available()) {
    try {
      zeros({2}).to(kCUDA);
      FAIL();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cuda"), std::string::npos) << e.what();
    }
  }
}

TEST(Tensor, DTypeTableAndPromotion) {
  EXPECT_EQ(kNumDTypes, 9);
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_STREQ(dtype_name(DType::F16), "F16");
  EXPECT_EQ(dtype_from_name("bfloat16"), DType::BF16);
  EXPECT_THROW(dtype_from_name("float8"), Error);
  EXPECT_EQ(promote_types(DType::F16, DType::BF16), DType::F32);
  EXPECT_EQ(promote_types(DType::I64, DType::F16), DType::F16);
  EXPECT_EQ(promote_types(DType::U8, DType::I8), DType::I32);
  EXPECT_EQ(promote_types(DType::Bool, DType::I32), DType::I32);
}

TEST(Tensor, RandomFactoriesFollowTheGenerator) {
  manual_seed(42);
  Tensor a = randn({1000});
  manual_seed(42);
  Tensor b = randn({1000});
  EXPECT_EQ(to_vector<float>(a), to_vector<float>(b));
  Tensor c = randn({1000});
  EXPECT_NE(to_vector<float>(a), to_vector<float>(c));
  Generator g(7);
  Tensor h = rand({100}, DType::F16, &g);
  Generator g2(7);
  Tensor f = rand({100}, DType::F32, &g2);
  // Same stream: the F16 draw is the F32 draw rounded once.
  EXPECT_EQ(to_vector<double>(h), to_vector<double>(f.to(DType::F16)));
  for (float v : to_vector<float>(f)) {
    EXPECT_GE(v, 0.0f);
    EXPECT_LT(v, 1.0f);
  }
  EXPECT_THROW(rand({2}, DType::I64), Error);
}

}  // namespace
}  // namespace mantissa
