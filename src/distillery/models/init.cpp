#include "distillery/models/init.h"

#include <torch/torch.h>

#include <cmath>

#include "distillery/models/batch_norm.h"

namespace distillery {

void trunc_normal_(torch::Tensor tensor, double std) {
  torch::NoGradGuard no_grad;
  // Re-draw out-of-range values by folding through the normal's inverse CDF on a uniform
  // restricted to [cdf(-2), cdf(2)]: exact truncation, no rejection loop.
  const double lower = 0.5 * (1.0 + std::erf(-2.0 / std::sqrt(2.0)));
  const double upper = 0.5 * (1.0 + std::erf(2.0 / std::sqrt(2.0)));
  tensor.uniform_(2 * lower - 1, 2 * upper - 1);
  tensor.erfinv_().mul_(std * std::sqrt(2.0)).clamp_(-2 * std, 2 * std);
}

namespace {
void init_norm(torch::nn::Module& m) {
  if (auto* bn = m.as<torch::nn::BatchNorm2dImpl>()) {
    if (bn->options.affine()) {
      torch::nn::init::ones_(bn->weight);
      torch::nn::init::zeros_(bn->bias);
    }
  } else if (auto* own_bn = m.as<BatchNorm2dImpl>()) {
    if (own_bn->options.affine()) {
      torch::nn::init::ones_(own_bn->weight);
      torch::nn::init::zeros_(own_bn->bias);
    }
  } else if (auto* ln = m.as<torch::nn::LayerNormImpl>()) {
    if (ln->options.elementwise_affine()) {
      torch::nn::init::ones_(ln->weight);
      torch::nn::init::zeros_(ln->bias);
    }
  }
}
}  // namespace

void init_cnn_weights(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& m : module.modules(/*include_self=*/true)) {
    if (auto* conv = m->as<torch::nn::Conv2dImpl>()) {
      torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
      if (conv->bias.defined()) torch::nn::init::zeros_(conv->bias);
    } else if (auto* linear = m->as<torch::nn::LinearImpl>()) {
      torch::nn::init::normal_(linear->weight, 0.0, 0.01);
      if (linear->bias.defined()) torch::nn::init::zeros_(linear->bias);
    } else {
      init_norm(*m);
    }
  }
}

void init_transformer_weights(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& m : module.modules(/*include_self=*/true)) {
    if (auto* linear = m->as<torch::nn::LinearImpl>()) {
      trunc_normal_(linear->weight, 0.02);
      if (linear->bias.defined()) torch::nn::init::zeros_(linear->bias);
    } else if (auto* conv = m->as<torch::nn::Conv2dImpl>()) {
      const auto& k = conv->options.kernel_size();
      double fan_out = static_cast<double>((*k)[0] * (*k)[1] * conv->options.out_channels()) /
                       static_cast<double>(conv->options.groups());
      torch::nn::init::normal_(conv->weight, 0.0, std::sqrt(2.0 / fan_out));
      if (conv->bias.defined()) torch::nn::init::zeros_(conv->bias);
    } else {
      init_norm(*m);
    }
  }
}

}  // namespace distillery
