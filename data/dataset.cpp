// The Dataset defaults: split names, index checks, and get_batch by stacking get() results
// into one preallocated batch (readers override it with a direct copy).
#include "data/dataset.h"

#include "core/error.h"

namespace mantissa::data {

const char* split_name(Split split) { return split == Split::Train ? "train" : "test"; }

void Dataset::check_index(size_t index, const char* who) const {
  MANTISSA_CHECK(index < size(), who, ": index ", index, " is out of range for a dataset of ", size(),
                 " samples (valid: 0..", size() == 0 ? 0 : size() - 1, ")");
}

namespace {

Shape batched(int64_t batch, const Shape& sample) {
  Shape s{batch};
  s.insert(s.end(), sample.begin(), sample.end());
  return s;
}

}  // namespace

Example Dataset::get_batch(const std::vector<size_t>& indices) const {
  const int64_t b = static_cast<int64_t>(indices.size());
  if (indices.empty()) {
    // The sample shape comes from the first sample when there is one.
    if (size() == 0) return {zeros({0}), zeros({0}, DType::I64)};
    Example first = get(0);
    return {empty(batched(0, first.data.sizes()), first.data.dtype()),
            empty(batched(0, first.target.sizes()), first.target.dtype())};
  }
  Example first = get(indices[0]);
  Example out{empty(batched(b, first.data.sizes()), first.data.dtype()),
              empty(batched(b, first.target.sizes()), first.target.dtype())};
  for (int64_t k = 0; k < b; ++k) {
    Example e = k == 0 ? first : get(indices[static_cast<size_t>(k)]);
    MANTISSA_CHECK(e.data.sizes() == first.data.sizes() && e.data.dtype() == first.data.dtype(),
                   "get_batch: sample ", indices[static_cast<size_t>(k)], " has data ", shape_str(e.data.sizes()), " ",
                   e.data.dtype(), " but sample ", indices[0], " has ", shape_str(first.data.sizes()), " ",
                   first.data.dtype(), "; samples in one batch must match");
    MANTISSA_CHECK(e.target.sizes() == first.target.sizes() && e.target.dtype() == first.target.dtype(),
                   "get_batch: sample ", indices[static_cast<size_t>(k)], " has target ", shape_str(e.target.sizes()),
                   " ", e.target.dtype(), " but sample ", indices[0], " has ", shape_str(first.target.sizes()), " ",
                   first.target.dtype(), "; samples in one batch must match");
    out.data.select(0, k).copy_(e.data);
    out.target.select(0, k).copy_(e.target);
  }
  return out;
}

}  // namespace mantissa::data
