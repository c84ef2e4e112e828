// Segmentation and classification metrics from a confusion matrix.
#pragma once
#include <torch/types.h>

#include <vector>

namespace distillery {

class ConfusionMatrix {
 public:
  explicit ConfusionMatrix(int64_t num_classes);
  // From counts made elsewhere (e.g. summed over data-parallel ranks): int64 [K, K].
  static ConfusionMatrix from_counts(const torch::Tensor& counts);

  // predictions, targets: int64 of the same shape; targets equal to 255 are skipped, other
  // out-of-range targets throw (they would silently corrupt the matrix).
  void update(const torch::Tensor& predictions, const torch::Tensor& targets);
  void merge(const ConfusionMatrix& other);

  // IoU per class; NaN for classes absent from both prediction and truth.
  std::vector<double> per_class_iou() const;
  // Mean over classes that appear in truth or prediction (NaN-skipping, as mmseg/CIRKD do).
  double mean_iou() const;
  double pixel_accuracy() const;
  const torch::Tensor& counts() const { return counts_; }  // int64 [truth, prediction]
  int64_t num_classes() const { return num_classes_; }

 private:
  int64_t num_classes_;
  torch::Tensor counts_;
};

}  // namespace distillery
