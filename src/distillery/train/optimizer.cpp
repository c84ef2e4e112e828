#include "distillery/train/optimizer.h"

#include <torch/torch.h>

#include <cmath>

#include "distillery/train/dot.h"

namespace distillery {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerOptions& o,
                                                        const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& p : params) {
    if (!p.requires_grad()) continue;
    (p.dim() > 1 ? decay : no_decay).push_back(p);
  }
  if (o.type == "adamw") {
    auto make = [&](double wd) {
      return std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).weight_decay(wd));
    };
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(decay, make(o.weight_decay));
    groups.emplace_back(no_decay, make(0.0));
    return std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(o.lr));
  }
  auto make = [&](double wd) {
    return std::make_unique<torch::optim::SGDOptions>(
        torch::optim::SGDOptions(o.lr).momentum(o.momentum).weight_decay(wd));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, make(o.weight_decay));
  groups.emplace_back(no_decay, make(0.0));
  if (o.type == "dot") return std::make_unique<DotOptimizer>(groups, o.delta);
  return std::make_unique<torch::optim::SGD>(groups, torch::optim::SGDOptions(o.lr));
}

double learning_rate_at(const OptimizerOptions& o, int64_t step, int64_t total_steps) {
  if (step < o.warmup_steps) {
    double t = static_cast<double>(step) / o.warmup_steps;
    return o.lr * (o.warmup_start_factor + (1.0 - o.warmup_start_factor) * t);
  }
  double progress = static_cast<double>(step) / std::max<int64_t>(total_steps, 1);
  return o.lr * std::pow(std::max(0.0, 1.0 - progress), o.poly_power);
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

}  // namespace distillery
