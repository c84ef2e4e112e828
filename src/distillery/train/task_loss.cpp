#include "distillery/train/task_loss.h"

#include <torch/torch.h>

#include "distillery/data/batch.h"

namespace distillery {

namespace F = torch::nn::functional;

torch::Tensor upsample_logits(const torch::Tensor& logits, at::IntArrayRef size) {
  if (logits.size(2) == size[0] && logits.size(3) == size[1]) return logits;
  return F::interpolate(logits, F::InterpolateFuncOptions()
                                    .size(std::vector<int64_t>{size[0], size[1]})
                                    .mode(torch::kBilinear)
                                    .align_corners(false));
}

torch::Tensor task_loss(const torch::Tensor& logits, const torch::Tensor& targets, Task task) {
  if (task == Task::Classification) return F::cross_entropy(logits, targets);
  auto full = upsample_logits(logits, {targets.size(1), targets.size(2)});
  return F::cross_entropy(full, targets, F::CrossEntropyFuncOptions().ignore_index(kIgnoreLabel));
}

torch::Tensor predict_classes(const torch::Tensor& logits, at::IntArrayRef target_size, Task task) {
  if (task == Task::Classification) return logits.argmax(1);
  return upsample_logits(logits, {target_size[target_size.size() - 2], target_size.back()}).argmax(1);
}

}  // namespace distillery
