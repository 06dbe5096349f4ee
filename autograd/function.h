// How an op records itself: needs_grad(...) says whether the forward must build a node, and
// record(...) attaches a FunctionNode holding the backward formula (written right under the
// op's forward) to the op's outputs. Also the memory statistic of what the graph holds for
// backward (saved_tensor_bytes).
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/op_id.h"

namespace mantissa::autograd {

using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grad_outputs)>;

class FunctionNode final : public Node {
 public:
  FunctionNode(OpId op, BackwardFn fn) : op_(op), fn_(std::move(fn)) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override;
  std::string name() const override;
  void release_saved() override { fn_ = nullptr; }
  OpId op() const { return op_; }

 private:
  OpId op_;
  BackwardFn fn_;
};

// True when grad mode is on and any defined input requires grad.
inline bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!GradMode::is_enabled()) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}
template <typename... Ts>
bool needs_grad(const Ts&... ts) {
  return needs_grad({&ts...});
}
bool needs_grad(const std::vector<Tensor>& inputs);

// Attaches a node computing the inputs' gradients to `outputs` (floating outputs only get
// requires_grad). The backward receives one gradient per output (undefined where none
// flowed; the engine fills zeros for single-output ops) and returns one per input, in order
// (undefined where an input needs none). The engine sums broadcast gradients down to each
// input's shape and casts them to its dtype, so formulas need not.
void record(OpId op, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs, BackwardFn backward);

// Sums g over the broadcast dimensions so it has `shape` (the reverse of broadcasting).
Tensor sum_to(const Tensor& g, const Shape& shape);

}  // namespace mantissa::autograd

namespace mantissa::autograd {
// Memory held for backward: the bytes of every storage that some live SavedTensor refers to.
// Each storage counts once however many saves share it (a ReLU output saved by the ReLU and by
// the next Linear), at its full size (a saved view keeps its whole storage alive). Parameters
// that ops save (a Linear's weight when its input needs a gradient) count too: the graph holds
// them. Saves are released when the backward frees the graph (no retain_graph) or when the
// graph is dropped. Thread-safe; the counters are process-wide.
size_t saved_tensor_bytes();
// The largest saved_tensor_bytes() seen since the start or the last reset.
size_t saved_tensor_peak_bytes();
// Restarts the peak from the current value.
void reset_saved_tensor_peak();

namespace detail {
// Called by SavedTensor's constructor: registers t's storage and returns the token whose
// destruction (the last copy of that SavedTensor going away) releases it. Null for an
// undefined tensor.
std::shared_ptr<void> track_saved_storage(const Tensor& t);
}  // namespace detail

// In-place ops refuse tensors that are part of a recorded graph: the result would silently
// break gradients. The message tells the user the out-of-place form or NoGradGuard.
void check_inplace(const Tensor& self, const char* op);
}  // namespace mantissa::autograd
