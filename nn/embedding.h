// nn::Embedding: a lookup table [num_embeddings, embedding_dim] indexed by I32/I64 tensors of any
// shape; initialized N(0, 1) as in PyTorch.
#pragma once

#include "nn/module.h"
#include "nn/options.h"

namespace mantissa::nn {

struct EmbeddingOptions {
  EmbeddingOptions(int64_t num_embeddings, int64_t embedding_dim)
      : num_embeddings_(num_embeddings), embedding_dim_(embedding_dim) {}
  MANTISSA_ARG(int64_t, num_embeddings);
  MANTISSA_ARG(int64_t, embedding_dim);
};

class Embedding : public Module {
 public:
  explicit Embedding(const EmbeddingOptions& options);
  Embedding(int64_t num_embeddings, int64_t embedding_dim)
      : Embedding(EmbeddingOptions(num_embeddings, embedding_dim)) {}
  void reset_parameters();
  // indices [...] -> [..., embedding_dim].
  Tensor forward(const Tensor& indices) override;
  std::string extra_repr() const override;

  EmbeddingOptions options;
  Tensor weight;  // [num_embeddings, embedding_dim]
};

}  // namespace mantissa::nn
