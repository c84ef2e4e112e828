#include "distillery/train/metrics.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "distillery/core/error.h"
#include "distillery/data/batch.h"

namespace distillery {

ConfusionMatrix::ConfusionMatrix(int64_t num_classes)
    : num_classes_(num_classes), counts_(torch::zeros({num_classes, num_classes}, torch::kInt64)) {}

ConfusionMatrix ConfusionMatrix::from_counts(const torch::Tensor& counts) {
  TORCH_CHECK(counts.dim() == 2 && counts.size(0) == counts.size(1) && counts.scalar_type() == torch::kInt64,
              "ConfusionMatrix::from_counts: expected int64 [K, K], got ", counts.sizes());
  ConfusionMatrix matrix(counts.size(0));
  matrix.counts_ = counts.clone();
  return matrix;
}

void ConfusionMatrix::update(const torch::Tensor& predictions, const torch::Tensor& targets) {
  TORCH_CHECK(predictions.sizes() == targets.sizes(), "prediction/target shape mismatch");
  auto truth = targets.reshape(-1).to(torch::kInt64);
  auto pred = predictions.reshape(-1).to(torch::kInt64);
  auto keep = truth != kIgnoreLabel;
  truth = truth.masked_select(keep);
  pred = pred.masked_select(keep);
  if (truth.numel() == 0) return;
  int64_t bad_truth = (truth.lt(0) | truth.ge(num_classes_)).sum().item<int64_t>();
  if (bad_truth > 0)
    throw DataError(fmt::format("{} target labels outside [0, {}) and not 255", bad_truth,
                                num_classes_));
  pred = pred.clamp(0, num_classes_ - 1);
  counts_ += torch::bincount(truth * num_classes_ + pred, {}, num_classes_ * num_classes_)
                 .reshape({num_classes_, num_classes_});
}

void ConfusionMatrix::merge(const ConfusionMatrix& other) { counts_ += other.counts_; }

std::vector<double> ConfusionMatrix::per_class_iou() const {
  auto c = counts_.to(torch::kDouble);
  auto tp = c.diagonal();
  auto uni = c.sum(0) + c.sum(1) - tp;
  std::vector<double> out(num_classes_);
  auto tp_a = tp.accessor<double, 1>();
  auto uni_a = uni.accessor<double, 1>();
  for (int64_t k = 0; k < num_classes_; ++k)
    out[k] = uni_a[k] > 0 ? tp_a[k] / uni_a[k] : std::numeric_limits<double>::quiet_NaN();
  return out;
}

double ConfusionMatrix::mean_iou() const {
  double sum = 0;
  int64_t n = 0;
  for (double v : per_class_iou())
    if (!std::isnan(v)) sum += v, ++n;
  return n > 0 ? sum / n : 0.0;
}

double ConfusionMatrix::pixel_accuracy() const {
  double total = counts_.sum().item<double>();
  return total > 0 ? counts_.diagonal().sum().item<double>() / total : 0.0;
}

}  // namespace distillery
