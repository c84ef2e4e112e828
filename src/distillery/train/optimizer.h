// Optimizers and learning-rate schedules named by a recipe's `train.optimizer` block.
#pragma once
#include <torch/optim/optimizer.h>

#include <memory>
#include <vector>

#include "distillery/train/recipe.h"

namespace distillery {

// An optimizer that needs the task loss and the distillation loss apart (DOT): the trainer
// hands it both sums instead of calling backward() and step().
class SplitLossOptimizer {
 public:
  virtual ~SplitLossOptimizer() = default;
  // Either loss may be undefined (no distillers); back-propagates and updates.
  virtual void backward_and_step(const torch::Tensor& task_loss, const torch::Tensor& distill_loss) = 0;
};

// SGD with momentum, AdamW or DOT; weight decay only on tensors with more than one dimension.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerOptions& options,
                                                        const std::vector<torch::Tensor>& params);

// Linear warm-up then polynomial decay: lr * (1 - step/total)^power.
double learning_rate_at(const OptimizerOptions& options, int64_t step, int64_t total_steps);

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

}  // namespace distillery
