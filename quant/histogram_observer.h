// HistogramObserver (torch.ao.quantization.HistogramObserver, torch 1.13 numerics): a running
// 2048-bin histogram of everything observed, re-binned onto a wider grid when the range grows,
// and qparams from the sub-range that minimizes the L2 quantization error of that histogram.
#pragma once

#include <string>
#include <vector>

#include "quant/observer.h"

namespace mantissa::quant {

// Per tensor only (affine or symmetric). min_val/max_val hold the histogram's range (which,
// as in PyTorch, is the data range with the max relaxed so the grid of the combine step is
// exact); calculate_qparams() narrows it by PyTorch's non-linear search first.
class HistogramObserver : public Observer {
 public:
  explicit HistogramObserver(QSpec spec = {}, int64_t bins = 2048, int64_t upsample_rate = 128);
  std::string name() const override { return "HistogramObserver"; }
  std::string extra_repr() const override;
  Tensor forward(const Tensor& x) override;
  QParams calculate_qparams() const override;

  // The running histogram (F32 [bins]; meaningful once has_data()).
  Tensor histogram() const { return histogram_; }
  // The range the L2 search keeps (F32 0-d each); what calculate_qparams() quantizes.
  std::pair<Tensor, Tensor> search_range() const;

 protected:
  void update(const Tensor& lo, const Tensor& hi) override;

 private:
  double quantization_error(const std::vector<float>& hist, float min_v, float max_v, int64_t start_bin,
                            int64_t end_bin) const;

  int64_t bins_, upsample_rate_, dst_nbins_;
  Tensor histogram_;
  const Tensor* batch_ = nullptr;  // the tensor forward() is observing, for update()
};

}  // namespace mantissa::quant
