// Matmul geometry shared by the CPU (matmul.cpp) and CUDA (matmul.cu) kernels: which strided
// matrices a BLAS call can read in place (row- or column-major with a valid leading dimension),
// and the batch dims of out/a/b merged into as few strided loops as possible.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace mantissa::kernels::gemm {

struct MatLayout {
  int64_t rs = 0, cs = 0;  // element strides of rows and columns
  bool ok = false;         // row- or column-major with a valid leading dimension
};

// Row-major (cs == 1, rs >= cols) or column-major (rs == 1, cs >= rows), with the stride of a
// size-1 dim replaced by one that says the same thing: BLAS libraries read the layout off the
// strides and reject a leading dimension smaller than the matrix.
inline MatLayout matrix_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  if (rows == 1 && cols == 1) return {1, 1, true};
  if (rows == 1) return cs == 1 ? MatLayout{cols, 1, true} : MatLayout{1, cs, cs >= 1};
  if (cols == 1) return rs == 1 ? MatLayout{1, rows, true} : MatLayout{rs, 1, rs >= 1};
  if (cs == 1 && rs >= cols) return {rs, 1, true};
  if (rs == 1 && cs >= rows) return {1, cs, true};
  return {rs, cs, false};
}

// Elements from a matrix's first to its last element, plus one.
inline int64_t matrix_span(int64_t rows, int64_t cols, const MatLayout& l) {
  return (rows - 1) * l.rs + (cols - 1) * l.cs + 1;
}

// Whether t's matrices ([..., rows, cols]) can be handed to a GEMM as they are: a usable matrix
// layout, and batch dims that do not overlap. A batch stride of 0 (an expanded dim) is a
// broadcast the CUDA path expresses directly; the CPU path copies it.
inline bool layout_usable(const Tensor& t, bool allow_zero_batch_stride) {
  const int64_t nd = t.dim();
  const int64_t rows = t.size(nd - 2), cols = t.size(nd - 1);
  const MatLayout l = matrix_layout(rows, cols, t.stride(nd - 2), t.stride(nd - 1));
  if (!l.ok) return false;
  const int64_t span = matrix_span(rows, cols, l);
  for (int64_t d = 0; d < nd - 2; ++d) {
    if (t.size(d) <= 1) continue;
    if (allow_zero_batch_stride && t.stride(d) == 0) continue;
    if (t.stride(d) < span) return false;
  }
  return true;
}

struct BatchDim {
  int64_t size, sa, sb, so;  // extent and the element strides of a, b and out (0: broadcast)
};

// Batch dims of out with the operands' strides (0 where broadcast), size-1 dims dropped and
// neighbours merged when every operand steps through them uniformly.
inline std::vector<BatchDim> batch_dims(const Tensor& out, const Tensor& a, const Tensor& b) {
  std::vector<BatchDim> dims;
  for (int64_t d = 0; d < out.dim() - 2; ++d) {
    const int64_t size = out.size(d);
    if (size == 1) continue;
    BatchDim cur{size, a.size(d) == 1 ? 0 : a.stride(d), b.size(d) == 1 ? 0 : b.stride(d), out.stride(d)};
    if (!dims.empty()) {
      BatchDim& p = dims.back();
      if (p.sa == cur.sa * size && p.sb == cur.sb * size && p.so == cur.so * size) {
        p.size *= size;
        p.sa = cur.sa;
        p.sb = cur.sb;
        p.so = cur.so;
        continue;
      }
    }
    dims.push_back(cur);
  }
  return dims;
}

// Calls f(a_offset, b_offset, out_offset) for every index of the outer batch dims.
template <typename F>
void for_outer(const std::vector<BatchDim>& outer, const F& f) {
  int64_t total = 1;
  for (const BatchDim& d : outer) total *= d.size;
  for (int64_t i = 0; i < total; ++i) {
    int64_t rem = i, oa = 0, ob = 0, oo = 0;
    for (int64_t d = static_cast<int64_t>(outer.size()) - 1; d >= 0; --d) {
      const int64_t idx = rem % outer[d].size;
      rem /= outer[d].size;
      oa += idx * outer[d].sa;
      ob += idx * outer[d].sb;
      oo += idx * outer[d].so;
    }
    f(oa, ob, oo);
  }
}

}  // namespace mantissa::kernels::gemm
