// The engine: dependency counting, accumulation, retain_graph, grad(), hooks, grad mode
// guards, saved-tensor version checks, deep graphs, and the checks on backward outputs.
#include <gtest/gtest.h>

#include "autograd/function.h"
#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "autograd/ops.h"

namespace mantissa {
namespace {

Tensor vec(std::vector<double> v) { return from_vector(v, {static_cast<int64_t>(v.size())}, DType::F64); }

TEST(Autograd, LeafAccumulatesAcrossBackwardCalls) {
  Tensor x = vec({1, 2, 3}).requires_grad_();
  Tensor y = mul(x, x).sum();
  y.backward(Tensor(), /*retain_graph=*/true);
  EXPECT_EQ(to_vector<double>(x.grad()), (std::vector<double>{2, 4, 6}));
  y.backward();
  EXPECT_EQ(to_vector<double>(x.grad()), (std::vector<double>{4, 8, 12}));
}

TEST(Autograd, SecondBackwardWithoutRetainGraphIsAnError) {
  Tensor x = vec({1, 2}).requires_grad_();
  Tensor y = exp(x).sum();
  y.backward();
  try {
    y.backward();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("second time"), std::string::npos) << e.what();
  }
}

TEST(Autograd, DiamondRunsEachNodeOnceAndSums) {
  Tensor x = vec({0.5, -1.0}).requires_grad_();
  Tensor a = mul(x, 3.0);
  Tensor b = add(mul(a, a), a);  // d/dx = (2a + 1) * 3
  b.sum().backward();
  auto g = to_vector<double>(x.grad());
  EXPECT_DOUBLE_EQ(g[0], (2 * 1.5 + 1) * 3);
  EXPECT_DOUBLE_EQ(g[1], (2 * -3.0 + 1) * 3);
}

TEST(Autograd, RequiresGradPropagatesAndNoGradStopsIt) {
  Tensor x = vec({1}).requires_grad_();
  Tensor c = vec({2});
  EXPECT_TRUE(add(x, c).requires_grad());
  EXPECT_FALSE(add(c, c).requires_grad());
  {
    NoGradGuard g;
    EXPECT_FALSE(add(x, c).requires_grad());
    {
      EnableGradGuard e;
      EXPECT_TRUE(add(x, c).requires_grad());
    }
    EXPECT_FALSE(GradMode::is_enabled());
  }
  EXPECT_TRUE(GradMode::is_enabled());
  EXPECT_FALSE(x.detach().requires_grad());
  EXPECT_TRUE(x.is_leaf());
  EXPECT_FALSE(add(x, c).is_leaf());
  EXPECT_EQ(add(x, c).grad_fn_name(), "AddBackward");
  EXPECT_THROW(zeros({2}, DType::I64).requires_grad_(), Error);
}

TEST(Autograd, GradReturnsGradientsWithoutTouchingLeaves) {
  Tensor x = vec({1, 2}).requires_grad_();
  Tensor w = vec({3, 4}).requires_grad_();
  Tensor y = mul(x, w).sum();
  auto g = autograd::grad({y}, {x, w});
  EXPECT_EQ(to_vector<double>(g[0]), (std::vector<double>{3, 4}));
  EXPECT_EQ(to_vector<double>(g[1]), (std::vector<double>{1, 2}));
  EXPECT_FALSE(x.grad().defined());
  EXPECT_FALSE(w.grad().defined());
}

TEST(Autograd, GradOfAnIntermediateAndUnusedInputs) {
  Tensor x = vec({1, 2}).requires_grad_();
  Tensor u = vec({5}).requires_grad_();
  Tensor h = mul(x, 2.0);
  Tensor y = mul(h, h).sum();
  auto g = autograd::grad({y}, {h}, {}, true);
  EXPECT_EQ(to_vector<double>(g[0]), (std::vector<double>{4, 8}));
  EXPECT_THROW(autograd::grad({y}, {u}, {}, true), Error);
  auto g2 = autograd::grad({y}, {u}, {}, true, /*allow_unused=*/true);
  EXPECT_FALSE(g2[0].defined());
}

TEST(Autograd, NonScalarBackwardNeedsAGradient) {
  Tensor x = vec({1, 2}).requires_grad_();
  Tensor y = mul(x, 2.0);
  EXPECT_THROW(y.backward(), Error);
  y.backward(vec({1, 10}));
  EXPECT_EQ(to_vector<double>(x.grad()), (std::vector<double>{2, 20}));
  EXPECT_THROW(vec({1}).backward(), Error);  // no grad_fn, no requires_grad
}

TEST(Autograd, HooksSeeAndReplaceGradients) {
  Tensor x = vec({1, 2}).requires_grad_();
  Tensor h = mul(x, 3.0);
  std::vector<double> seen;
  h.register_hook([&](const Tensor& g) {
    seen = to_vector<double>(g);
    return mul(g, 10.0);
  });
  x.register_hook([](const Tensor& g) { return add(g, 1.0); });
  h.sum().backward();
  EXPECT_EQ(seen, (std::vector<double>{1, 1}));
  EXPECT_EQ(to_vector<double>(x.grad()), (std::vector<double>{31, 31}));
}

TEST(Autograd, RetainGradKeepsNonLeafGradient) {
  Tensor x = vec({1, 2}).requires_grad_();
  Tensor h = mul(x, 3.0);
  h.retain_grad();
  mul(h, h).sum().backward();
  EXPECT_EQ(to_vector<double>(h.grad()), (std::vector<double>{6, 12}));
}

TEST(Autograd, ModifyingASavedTensorInPlaceIsAnErrorNamingTheOp) {
  Tensor x = vec({1, 2}).requires_grad_();
  Tensor w = vec({3, 4});
  Tensor y = mul(x, w).sum();  // saves w
  w.mul_(2.0);
  try {
    y.backward();
    FAIL();
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("MulBackward"), std::string::npos) << m;
    EXPECT_NE(m.find("version 0"), std::string::npos) << m;
    EXPECT_NE(m.find("version 1"), std::string::npos) << m;
  }
}

TEST(Autograd, InPlaceOnLeafRequiringGradIsRefused) {
  Tensor x = vec({1, 2}).requires_grad_();
  EXPECT_THROW(x.add_(1.0), Error);
  {
    NoGradGuard g;
    x.add_(1.0);
  }
  EXPECT_EQ(to_vector<double>(x), (std::vector<double>{2, 3}));
  EXPECT_THROW(mul(x, 2.0).mul_(2.0), Error);
}

TEST(Autograd, DeepChainDoesNotOverflowTheStack) {
  // 100,000 nodes: both the backward walk and the graph's destruction must be iterative.
  Tensor x = vec({1.0}).requires_grad_();
  Tensor y = x;
  for (int i = 0; i < 100000; ++i) y = add(y, 1e-6);
  y.sum().backward();
  EXPECT_DOUBLE_EQ(to_vector<double>(x.grad())[0], 1.0);
  y = Tensor();  // frees the chain
}

TEST(Autograd, GradientsFlowThroughCastsAsTheInputDtype) {
  Tensor w = from_vector(std::vector<float>{1.5f, -2.0f}, {2}).requires_grad_();
  Tensor h = w.to(DType::BF16);
  Tensor y = mul(h, h).sum();
  y.backward();
  EXPECT_EQ(w.grad().dtype(), DType::F32);
  EXPECT_EQ(to_vector<float>(w.grad()), (std::vector<float>{3.0f, -4.0f}));
}

TEST(Autograd, BroadcastGradientsAreSummedToTheInputShape) {
  Tensor a = from_vector(std::vector<double>{1, 2, 3}, {3, 1}, DType::F64).requires_grad_();
  Tensor b = from_vector(std::vector<double>{1, 1, 1, 1}, {4}, DType::F64).requires_grad_();
  add(a, b).sum().backward();
  EXPECT_EQ(a.grad().sizes(), (Shape{3, 1}));
  EXPECT_EQ(to_vector<double>(a.grad()), (std::vector<double>{4, 4, 4}));
  EXPECT_EQ(to_vector<double>(b.grad()), (std::vector<double>{3, 3, 3, 3}));
}

// A node that returns a gradient of the wrong shape is reported with the node's name.
class BadNode : public autograd::Node {
 public:
  std::vector<Tensor> apply(std::vector<Tensor>&&) override { return {zeros({5}, DType::F64)}; }
  std::string name() const override { return "BadBackward"; }
};

TEST(Autograd, EngineChecksBackwardOutputsAndNamesTheNode) {
  Tensor x = vec({1, 2}).requires_grad_();
  Tensor y = mul(x, 1.0);
  auto node = std::make_shared<BadNode>();
  node->next_edges.push_back(autograd::gradient_edge(x));
  node->input_meta.push_back({x.sizes(), x.dtype(), x.device()});
  Tensor out = y.detach();
  auto& m = autograd::meta(out);
  m.requires_grad = true;
  m.grad_fn = node;
  try {
    out.sum().backward();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("BadBackward"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("[5]"), std::string::npos) << e.what();
  }
}

TEST(Gradcheck, CatchesAWrongFormula) {
  // A deliberately wrong backward (factor 3 instead of 2) must be caught.
  auto fn = [](const std::vector<Tensor>& in) {
    Tensor x = in[0];
    Tensor out = mul(x.detach(), x.detach());
    if (autograd::needs_grad(x)) {
      autograd::record(OpId::mul, {x}, {out}, [s = autograd::SavedTensor(x)](const std::vector<Tensor>& g) {
        return std::vector<Tensor>{mul(mul(g[0], s.unpack()), 3.0)};
      });
    }
    return out;
  };
  Tensor x = vec({0.3, -0.7, 1.1}).requires_grad_();
  auto r = autograd::gradcheck(fn, {x});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("analytical"), std::string::npos);
}

}  // namespace
}  // namespace mantissa
