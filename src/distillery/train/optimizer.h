// Optimizers and learning-rate schedules named by a recipe's `train.optimizer` block.
#pragma once
#include <torch/optim/optimizer.h>

#include <memory>
#include <vector>

#include "distillery/train/recipe.h"

namespace distillery {

// SGD with momentum or AdamW; weight decay only on tensors with more than one dimension.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerOptions& options,
                                                        const std::vector<torch::Tensor>& params);

// Linear warm-up then polynomial decay: lr * (1 - step/total)^power.
double learning_rate_at(const OptimizerOptions& options, int64_t step, int64_t total_steps);

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

}  // namespace distillery
