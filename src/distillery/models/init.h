// Weight initialisation as in the original designs.
#pragma once
#include <torch/nn/module.h>

namespace distillery {

// ResNet / MobileNetV2: Kaiming normal (fan-out, ReLU) for convolutions, BatchNorm 1/0,
// linear layers N(0, 0.01) with zero bias.
void init_cnn_weights(torch::nn::Module& module);

// ViT / SegFormer: truncated normal (std 0.02) for linear layers with zero bias, LayerNorm 1/0,
// convolutions normal with std sqrt(2 / fan_out) (fan_out = k*k*out/groups), zero bias.
void init_transformer_weights(torch::nn::Module& module);

// Truncated normal in [-2 std, 2 std], in place (no gradient).
void trunc_normal_(torch::Tensor tensor, double std);

}  // namespace distillery
