// DOT, the Distillation-Oriented Trainer (Zhao et al., ICCV 2023; seed 000, Paper 22): SGD
// with two momentum buffers per parameter. The task loss and the distillation loss are
// back-propagated separately; the task gradient (with the weight decay) goes into a buffer
// with momentum mu - delta, the distillation gradient into one with mu + delta, and the
// parameter moves by the sum of the buffers. A parameter that only one of the losses reaches
// in a step keeps a single buffer for that loss at the mean momentum mu (so DOT without
// distillers is SGD with momentum); its weight decay goes into that buffer. A parameter that
// neither loss reaches is left alone, as in SGD.
#pragma once
#include <torch/optim/optimizer.h>

#include <vector>

#include "distillery/train/optimizer.h"

namespace distillery {

class DotOptimizer : public torch::optim::Optimizer, public SplitLossOptimizer {
 public:
  // Each group's options must be torch::optim::SGDOptions (lr, momentum, weight_decay; no
  // dampening, no Nesterov); mu - delta >= 0 and mu + delta < 1 for every group.
  DotOptimizer(std::vector<torch::optim::OptimizerParamGroup> groups, double delta);

  // Back-propagates each defined loss on its own and applies the rule above.
  void backward_and_step(const torch::Tensor& task_loss, const torch::Tensor& distill_loss) override;

  // One update from given gradients, one entry per parameter in param-group order (see
  // flat_parameters()); an undefined entry means that loss did not reach the parameter.
  void apply(const std::vector<torch::Tensor>& task_grads,
             const std::vector<torch::Tensor>& distill_grads);

  // The plain optimizer interface: every parameter's .grad counts as task gradient.
  torch::Tensor step(LossClosure closure = nullptr) override;

  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

  std::vector<torch::Tensor> flat_parameters() const;
  double delta() const { return delta_; }
  // Per parameter (flat order); undefined until the loss first reaches it.
  const std::vector<torch::Tensor>& task_momentum() const { return task_buffers_; }
  const std::vector<torch::Tensor>& distill_momentum() const { return distill_buffers_; }

 private:
  double delta_;
  std::vector<torch::Tensor> task_buffers_, distill_buffers_;
};

}  // namespace distillery
