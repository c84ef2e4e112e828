// Stochastic depth (Huang et al. 2016) as used by DeiT and SegFormer: in training, each
// sample's residual branch is dropped with probability p and kept samples are scaled by
// 1 / (1 - p), so the expected output equals the eval-mode output (identity).
#pragma once
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

namespace distillery {

// Functional form: x unchanged when !training or p == 0.
torch::Tensor drop_path(const torch::Tensor& x, double p, bool training);

class DropPathImpl : public torch::nn::Cloneable<DropPathImpl> {
 public:
  explicit DropPathImpl(double p = 0.0);
  void reset() override {}
  torch::Tensor forward(const torch::Tensor& x);
  double p() const { return p_; }

 private:
  double p_;
};
TORCH_MODULE(DropPath);

}  // namespace distillery
