// The trainer's hook into a data-parallel run. One Trainer per process; each rank trains on
// its shard of every global batch, and this object keeps the replicas identical: rank 0's
// initial weights are broadcast, gradients are averaged after backward (bucketed all-reduce),
// loss values and evaluation counts are combined across ranks, and BatchNorm statistics are
// synchronised when the recipe asks for it. Only rank 0 writes files.
#pragma once
#include <torch/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "distillery/distributed/distributed_options.h"
#include "distillery/distributed/gradient_averager.h"
#include "distillery/distributed/sync_batch_norm.h"

namespace distillery {

class ProcessGroup;

class DataParallel {
 public:
  // nullptr unless RANK/WORLD_SIZE/... describe a run of more than one process; otherwise joins
  // (on its first call in this process: connects) the world process group.
  static std::unique_ptr<DataParallel> from_environment(const DistributedOptions& options);

  DataParallel(ProcessGroup& group, const DistributedOptions& options);

  int rank() const;
  int world_size() const;
  bool is_main() const { return rank() == 0; }
  ProcessGroup& group() { return group_; }

  // Rank 0's values into every rank's tensors (parameters and buffers, in the same order).
  void broadcast_from_main(const std::vector<torch::Tensor>& tensors);
  // Every parameter's gradient becomes its mean over the ranks. The list must be the same on
  // every call (the buckets are planned on the first).
  void average_gradients(const std::vector<torch::Tensor>& parameters);
  // Means over ranks of named values (the same names on every rank); a NaN anywhere stays NaN,
  // so every rank takes the same decision about a non-finite loss.
  std::map<std::string, double> average_values(const std::map<std::string, double>& values);
  // Element-wise sum over ranks, in place (e.g. confusion-matrix counts).
  void sum(torch::Tensor& tensor);
  void barrier();

  double gradient_seconds() const { return gradient_seconds_; }  // spent in average_gradients

 private:
  ProcessGroup& group_;
  DistributedOptions options_;
  std::unique_ptr<GradientAverager> averager_;
  BatchNormSyncScope batch_norm_scope_;
  double gradient_seconds_ = 0;
};

}  // namespace distillery
