#include "distillery/train/dot.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include "distillery/core/error.h"

namespace distillery {
namespace {

const torch::optim::SGDOptions& sgd_options(const torch::optim::OptimizerParamGroup& group) {
  return static_cast<const torch::optim::SGDOptions&>(group.options());
}

// buffer <- momentum * buffer + gradient; a new buffer starts at the gradient (as torch's SGD).
void accumulate(torch::Tensor& buffer, const torch::Tensor& gradient, double momentum) {
  if (!buffer.defined()) {
    buffer = gradient.detach().clone();
  } else {
    buffer.mul_(momentum).add_(gradient);
  }
}

// Gradients of `loss` for every parameter; undefined where the loss does not reach one.
std::vector<torch::Tensor> gradients(const torch::Tensor& loss, const std::vector<torch::Tensor>& params,
                                     bool retain_graph) {
  if (!loss.defined() || !loss.requires_grad()) return std::vector<torch::Tensor>(params.size());
  return torch::autograd::grad({loss}, params, /*grad_outputs=*/{}, retain_graph,
                               /*create_graph=*/false, /*allow_unused=*/true);
}

}  // namespace

DotOptimizer::DotOptimizer(std::vector<torch::optim::OptimizerParamGroup> groups, double delta)
    : torch::optim::Optimizer(std::move(groups), std::make_unique<torch::optim::SGDOptions>(0.01)),
      delta_(delta) {
  for (const auto& group : param_groups_) {
    const auto* options = dynamic_cast<const torch::optim::SGDOptions*>(&group.options());
    TORCH_CHECK(options != nullptr, "DotOptimizer: every parameter group needs SGDOptions");
    if (options->momentum() - delta < 0 || options->momentum() + delta >= 1)
      throw ConfigError(fmt::format("DOT needs 0 <= momentum - delta and momentum + delta < 1 "
                                    "(momentum {}, delta {})", options->momentum(), delta));
  }
  const auto count = flat_parameters().size();
  task_buffers_.resize(count);
  distill_buffers_.resize(count);
}

std::vector<torch::Tensor> DotOptimizer::flat_parameters() const {
  std::vector<torch::Tensor> out;
  for (const auto& group : param_groups_)
    for (const auto& p : group.params()) out.push_back(p);
  return out;
}

void DotOptimizer::backward_and_step(const torch::Tensor& task_loss, const torch::Tensor& distill_loss) {
  const auto params = flat_parameters();
  // The graph below the student's output is shared: keep it for the second backward pass.
  auto distill_grads = gradients(distill_loss, params, /*retain_graph=*/task_loss.defined());
  auto task_grads = gradients(task_loss, params, /*retain_graph=*/false);
  apply(task_grads, distill_grads);
}

void DotOptimizer::apply(const std::vector<torch::Tensor>& task_grads,
                         const std::vector<torch::Tensor>& distill_grads) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(task_grads.size() == task_buffers_.size() && distill_grads.size() == task_buffers_.size(),
              "DotOptimizer::apply: expected ", task_buffers_.size(), " gradients per loss");
  size_t i = 0;
  for (auto& group : param_groups_) {
    const auto& o = sgd_options(group);
    for (auto& p : group.params()) {
      const auto& g_task = task_grads[i];
      const auto& g_distill = distill_grads[i];
      const bool task = g_task.defined(), distill = g_distill.defined();
      if (task && distill) {
        accumulate(task_buffers_[i], o.weight_decay() != 0 ? g_task + o.weight_decay() * p : g_task,
                   o.momentum() - delta_);
        accumulate(distill_buffers_[i], g_distill, o.momentum() + delta_);
        p.add_(task_buffers_[i] + distill_buffers_[i], -o.lr());
      } else if (task || distill) {
        auto& buffer = task ? task_buffers_[i] : distill_buffers_[i];
        const auto& g = task ? g_task : g_distill;
        accumulate(buffer, o.weight_decay() != 0 ? g + o.weight_decay() * p : g, o.momentum());
        p.add_(buffer, -o.lr());
      }
      ++i;
    }
  }
}

torch::Tensor DotOptimizer::step(LossClosure closure) {
  torch::Tensor loss;
  if (closure) {
    torch::AutoGradMode grad_mode(true);
    loss = closure();
  }
  std::vector<torch::Tensor> task_grads;
  for (const auto& p : flat_parameters()) task_grads.push_back(p.grad().defined() ? p.grad().detach() : torch::Tensor());
  apply(task_grads, std::vector<torch::Tensor>(task_grads.size()));
  return loss;
}

void DotOptimizer::save(torch::serialize::OutputArchive& archive) const {
  archive.write("dot_parameters", torch::tensor(static_cast<int64_t>(task_buffers_.size())));
  for (size_t i = 0; i < task_buffers_.size(); ++i) {
    if (task_buffers_[i].defined()) archive.write(fmt::format("dot_task_{}", i), task_buffers_[i]);
    if (distill_buffers_[i].defined()) archive.write(fmt::format("dot_distill_{}", i), distill_buffers_[i]);
  }
}

void DotOptimizer::load(torch::serialize::InputArchive& archive) {
  torch::Tensor count;
  if (!archive.try_read("dot_parameters", count))
    throw Error("optimizer state is not DOT's (was the run trained with another optimizer?)");
  if (count.item<int64_t>() != static_cast<int64_t>(task_buffers_.size()))
    throw Error(fmt::format("DOT state has {} parameters, this run has {}", count.item<int64_t>(),
                            task_buffers_.size()));
  const auto params = flat_parameters();
  for (size_t i = 0; i < task_buffers_.size(); ++i) {
    torch::Tensor task, distill;
    task_buffers_[i] = archive.try_read(fmt::format("dot_task_{}", i), task) ? task : torch::Tensor();
    distill_buffers_[i] =
        archive.try_read(fmt::format("dot_distill_{}", i), distill) ? distill : torch::Tensor();
    for (const auto& buffer : {task_buffers_[i], distill_buffers_[i]})
      if (buffer.defined() && buffer.sizes() != params[i].sizes())
        throw Error(fmt::format("DOT state for parameter {} does not match its shape", i));
  }
}

}  // namespace distillery
