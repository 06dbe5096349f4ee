// nn::Embedding: the lookup table module over the embedding op (which range-checks indices).
#include "nn/embedding.h"

#include "nn/init.h"

namespace mantissa::nn {

Embedding::Embedding(const EmbeddingOptions& opts) : options(opts) {
  MANTISSA_CHECK(options.num_embeddings() >= 0 && options.embedding_dim() >= 0,
                 "Embedding: num_embeddings and embedding_dim must be non-negative (got ", options.num_embeddings(),
                 " and ", options.embedding_dim(), ")");
  weight = register_parameter("weight", empty({options.num_embeddings(), options.embedding_dim()}));
  reset_parameters();
}

void Embedding::reset_parameters() { init::normal_(weight); }

Tensor Embedding::forward(const Tensor& indices) {
  MANTISSA_CHECK(indices.defined(), "embedding: the indices are an undefined tensor");
  return embedding(weight, indices);
}

std::string Embedding::extra_repr() const {
  return std::to_string(options.num_embeddings()) + ", " + std::to_string(options.embedding_dim());
}

}  // namespace mantissa::nn
