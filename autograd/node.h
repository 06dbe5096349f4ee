// The autograd graph: a Node computes the gradients of its forward inputs from the
// gradients of its outputs; its next edges point at the nodes of those inputs. AutogradMeta
// is the per-tensor autograd state (grad, grad_fn, hooks). SavedTensor checks versions.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mantissa::autograd {

class Node;

struct Edge {
  std::shared_ptr<Node> fn;
  uint32_t input_nr = 0;  // which output of fn this edge feeds
  bool valid() const { return fn != nullptr; }
};

// What the engine checks a returned gradient against: the forward input's metadata.
struct InputMeta {
  Shape shape;
  DType dtype = DType::F32;
  Device device;
};

using Hook = std::function<Tensor(const Tensor&)>;

class Node {
 public:
  Node();
  virtual ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // grads[i] is the gradient w.r.t. output i (undefined when nothing flowed there). Returns
  // one gradient per next edge (undefined for inputs that need none).
  virtual std::vector<Tensor> apply(std::vector<Tensor>&& grads) = 0;
  virtual std::string name() const = 0;
  // Drops saved tensors after a backward without retain_graph.
  virtual void release_saved() {}

  std::vector<Edge> next_edges;
  std::vector<InputMeta> input_meta;  // parallel to next_edges
  uint32_t num_outputs = 1;
  uint64_t sequence_nr;               // creation order: later nodes run first when both are ready
  std::map<uint32_t, std::vector<Hook>> pre_hooks;  // per output: hooks of non-leaf tensors
};

// Accumulates the incoming gradient into a leaf's .grad.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf);
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override;
  std::string name() const override { return "AccumulateGrad"; }
  const std::shared_ptr<TensorImpl>& leaf() const { return leaf_; }

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

struct AutogradMeta {
  bool requires_grad = false;
  bool retains_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;         // null for leaves
  uint32_t output_nr = 0;
  std::weak_ptr<AccumulateGrad> grad_accumulator;
  std::vector<Hook> leaf_hooks;          // hooks of a leaf, run by its AccumulateGrad
};

AutogradMeta& meta(const Tensor& t);        // creates the metadata when absent
AutogradMeta* meta_or_null(const Tensor& t);

// The edge along which a gradient for t flows: its grad_fn, or its leaf accumulator.
Edge gradient_edge(const Tensor& t);

// A tensor kept for backward: an alias without history plus the version it had when saved.
class SavedTensor {
 public:
  SavedTensor() = default;
  SavedTensor(const Tensor& t);  // NOLINT: implicit so captures read naturally
  // Returns the saved tensor; throws naming the running node when it was modified in place.
  Tensor unpack() const;
  bool defined() const { return data_.defined(); }

 private:
  Tensor data_;
  uint32_t version_ = 0;
  std::shared_ptr<void> accounting_;  // saved_tensor_bytes() registration (autograd/function.h)
};

// The node the engine is running on this thread (for error messages), or null.
const Node* current_node();

}  // namespace mantissa::autograd
