// Model cost: parameters and forward FLOPs (2 * multiply-accumulates of convolutions and
// matrix products; element-wise ops, norms and activations are not counted, as in fvcore /
// ptflops conventions).
#pragma once
#include <torch/nn/module.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "distillery/models/model.h"

namespace distillery {

// Runs one forward pass on zeros of input_shape (eval mode, no grad; the training flag is
// restored afterwards) and counts 2*MACs of every convolution and of linear / matmul / addmm /
// mm / bmm / baddbmm / addmv / mv / dot, seen through RecordFunction callbacks. Only the
// outermost counted op is counted, so linear -> addmm or conv2d -> convolution ->
// mkldnn_convolution count once.
int64_t count_forward_flops(ModelImpl& model, std::vector<int64_t> input_shape);

// The same for any callable forward (e.g. a single layer): counts the ops run inside `run`.
int64_t count_flops_of(const std::function<void()>& run);

// Number of scalar parameters (buffers such as BatchNorm running statistics excluded).
int64_t count_parameters(const torch::nn::Module& module);

}  // namespace distillery
