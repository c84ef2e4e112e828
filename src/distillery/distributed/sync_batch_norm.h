// Batch normalisation whose batch statistics span every rank of a process group: the output
// and running statistics equal those of one BatchNorm over the concatenated global batch
// (count-weighted mean and variance), and the input gradient includes what the other ranks'
// losses contribute through those shared statistics.
#pragma once
#include <torch/types.h>

namespace distillery {

class ProcessGroup;

// input [N, C, ...]; weight, bias [C] or undefined (no affine); running_mean/var [C] or
// undefined (no tracking), updated in place with `momentum` (unbiased variance, as BatchNorm).
// Three small all-reduces per call: the sum, the squared deviations (forward) and the two
// gradient sums (backward); every rank must call it for the same layers in the same order.
torch::Tensor sync_batch_norm(const torch::Tensor& input, const torch::Tensor& weight,
                              const torch::Tensor& bias, torch::Tensor running_mean,
                              torch::Tensor running_var, double momentum, double eps,
                              ProcessGroup& group);

// The group that BatchNorm layers (models/batch_norm.h) synchronise over while training, or
// nullptr for local statistics. Set on the calling thread for the lifetime of a scope (a
// distributed training run).
ProcessGroup* batch_norm_sync_group();

class BatchNormSyncScope {
 public:
  explicit BatchNormSyncScope(ProcessGroup* group);  // nullptr: local statistics in the scope
  ~BatchNormSyncScope();
  BatchNormSyncScope(const BatchNormSyncScope&) = delete;
  BatchNormSyncScope& operator=(const BatchNormSyncScope&) = delete;

 private:
  ProcessGroup* previous_;
};

}  // namespace distillery
