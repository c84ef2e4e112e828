// Averages gradients over the ranks of a process group after backward, as data-parallel
// training needs: the gradients are flattened into buckets of about `bucket_bytes`, one
// all-reduce per bucket (all in flight together), then divided by the number of ranks.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace distillery {

class ProcessGroup;

class GradientAverager {
 public:
  // The parameters (in the same order on every rank) and the bucket size in bytes.
  GradientAverager(std::vector<torch::Tensor> parameters, int64_t bucket_bytes);

  // A parameter without a gradient on every rank keeps none (the optimizer skips it, as in a
  // single process); one with a gradient on some ranks gets the average, counting the others'
  // as zeros.
  void average(ProcessGroup& group);

  size_t num_buckets() const { return buckets_.size(); }

 private:
  struct Bucket {
    std::vector<size_t> members;  // indices into parameters_
    int64_t numel = 0;            // gradient elements, before one "has a gradient" flag per member
  };
  std::vector<torch::Tensor> parameters_;
  std::vector<Bucket> buckets_;
};

}  // namespace distillery
