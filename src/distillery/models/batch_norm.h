// The BatchNorm2d every model uses. It behaves exactly like torch::nn::BatchNorm2d (same
// options, parameters, buffers and checkpoint names: weight, bias, running_mean, running_var,
// num_batches_tracked), except that while training inside a BatchNormSyncScope (a data-parallel
// run with train.distributed.sync_batch_norm) its batch statistics span all ranks.
//
// It is its own module rather than a subclass of torch's: forward() there is not virtual, and
// Debian's LibTorch does not export the BatchNormImplBase members a subclass's vtable needs.
#pragma once
#include <torch/nn/cloneable.h>
#include <torch/nn/options/batchnorm.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <ostream>

namespace distillery {

class BatchNorm2dImpl : public torch::nn::Cloneable<BatchNorm2dImpl> {
 public:
  explicit BatchNorm2dImpl(int64_t num_features)
      : BatchNorm2dImpl(torch::nn::BatchNormOptions(num_features)) {}
  explicit BatchNorm2dImpl(const torch::nn::BatchNormOptions& options);

  torch::Tensor forward(const torch::Tensor& input);
  void reset() override;
  void reset_running_stats();
  void reset_parameters();
  void pretty_print(std::ostream& stream) const override;

  torch::nn::BatchNormOptions options;
  torch::Tensor weight, bias;                                    // undefined without affine
  torch::Tensor running_mean, running_var, num_batches_tracked;  // undefined without tracking
};
TORCH_MODULE(BatchNorm2d);

}  // namespace distillery
