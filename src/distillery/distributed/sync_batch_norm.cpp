#include "distillery/distributed/sync_batch_norm.h"

#include <torch/torch.h>

#include <cstdint>

#include "distillery/distributed/process_group.h"

namespace distillery {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Per thread: the trainer runs forward and backward on one thread, and tests run ranks as threads.
thread_local ProcessGroup* the_sync_group = nullptr;

// Reduction axes (all but channels) and the [1, C, 1, ...] shape that broadcasts per channel.
struct ChannelAxes {
  std::vector<int64_t> reduce;
  std::vector<int64_t> broadcast;
  explicit ChannelAxes(const torch::Tensor& input) {
    for (int64_t d = 0; d < input.dim(); ++d) {
      if (d != 1) reduce.push_back(d);
      broadcast.push_back(d == 1 ? input.size(1) : 1);
    }
  }
};

// Sums are taken in double and reduced in double: the variance is a difference of large sums
// on a big global batch.
struct SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& input,
                               const torch::Tensor& weight, const torch::Tensor& bias,
                               torch::Tensor running_mean, torch::Tensor running_var,
                               double momentum, double eps, ProcessGroup* group) {
    const ChannelAxes axes(input);
    const int64_t channels = input.size(1);
    // Pass 1: the global mean (sums and the element count in one reduction).
    auto sums = torch::empty({channels + 1}, torch::kDouble);
    sums.slice(0, 0, channels).copy_(input.sum(axes.reduce, false, torch::kDouble));
    sums[channels] = static_cast<double>(input.numel() / channels);
    group->all_reduce_sum(sums);
    const double count = sums[channels].item<double>();
    TORCH_CHECK(count > 1, "sync_batch_norm: expected more than 1 value per channel in the global batch");
    auto mean = sums.slice(0, 0, channels) / count;
    // Pass 2: squared deviations from it (no cancellation between large sums).
    auto centered = input - mean.to(input.scalar_type()).view(axes.broadcast);
    auto squares = (centered * centered).sum(axes.reduce, false, torch::kDouble).contiguous();
    group->all_reduce_sum(squares);
    auto variance = squares / count;
    auto invstd = (variance + eps).rsqrt().to(input.scalar_type());
    auto normalised = centered * invstd.view(axes.broadcast);
    torch::Tensor output = normalised;
    if (weight.defined()) output = normalised * weight.view(axes.broadcast) + bias.view(axes.broadcast);

    if (running_mean.defined()) {
      running_mean.mul_(1 - momentum).add_(mean.to(running_mean.scalar_type()), momentum);
      running_var.mul_(1 - momentum).add_((variance * (count / (count - 1))).to(running_var.scalar_type()),
                                          momentum);
    }
    ctx->save_for_backward({normalised, invstd, weight});
    ctx->saved_data["count"] = count;
    // The group outlives the step (it lives until exit); autograd's saved data holds IValues only.
    ctx->saved_data["group"] = static_cast<int64_t>(reinterpret_cast<std::intptr_t>(group));
    return output;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    const torch::Tensor& normalised = saved[0];
    const torch::Tensor& invstd = saved[1];
    const torch::Tensor& weight = saved[2];
    const double count = ctx->saved_data["count"].toDouble();
    auto* group = reinterpret_cast<ProcessGroup*>(static_cast<std::intptr_t>(ctx->saved_data["group"].toInt()));
    const ChannelAxes axes(normalised);
    const int64_t channels = normalised.size(1);
    auto grad = grad_outputs[0].contiguous();

    auto local = torch::empty({2 * channels}, torch::kDouble);
    local.slice(0, 0, channels).copy_(grad.sum(axes.reduce, false, torch::kDouble));
    local.slice(0, channels).copy_((grad * normalised).sum(axes.reduce, false, torch::kDouble));
    auto global = local.clone();
    group->all_reduce_sum(global);
    auto mean_grad = (global.slice(0, 0, channels) / count).to(grad.scalar_type()).view(axes.broadcast);
    auto mean_grad_normalised =
        (global.slice(0, channels) / count).to(grad.scalar_type()).view(axes.broadcast);
    auto scale = weight.defined() ? invstd * weight : invstd;
    auto grad_input = (grad - mean_grad - normalised * mean_grad_normalised) * scale.view(axes.broadcast);

    // The affine parameters see only this rank's outputs: their gradients stay local (the
    // gradient all-reduce averages them like every other parameter).
    torch::Tensor grad_weight, grad_bias;
    if (weight.defined()) {
      grad_weight = local.slice(0, channels).to(weight.scalar_type());
      grad_bias = local.slice(0, 0, channels).to(weight.scalar_type());
    }
    return {grad_input, grad_weight, grad_bias, torch::Tensor(), torch::Tensor(),
            torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor sync_batch_norm(const torch::Tensor& input, const torch::Tensor& weight,
                              const torch::Tensor& bias, torch::Tensor running_mean,
                              torch::Tensor running_var, double momentum, double eps,
                              ProcessGroup& group) {
  TORCH_CHECK(input.dim() >= 2, "sync_batch_norm: expected [N, C, ...] input, got ", input.sizes());
  TORCH_CHECK(weight.defined() == bias.defined(), "sync_batch_norm: weight and bias go together");
  return SyncBatchNormFunction::apply(input, weight, bias, std::move(running_mean),
                                      std::move(running_var), momentum, eps, &group);
}

ProcessGroup* batch_norm_sync_group() { return the_sync_group; }

BatchNormSyncScope::BatchNormSyncScope(ProcessGroup* group) : previous_(the_sync_group) {
  the_sync_group = group;
}

BatchNormSyncScope::~BatchNormSyncScope() { the_sync_group = previous_; }

}  // namespace distillery
