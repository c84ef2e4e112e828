// The supervised loss and the prediction rule shared by training, evaluation and prediction.
#pragma once
#include <torch/types.h>

#include "distillery/models/model.h"

namespace distillery {

// Segmentation logits come at the model's output stride: bring them to the label size.
torch::Tensor upsample_logits(const torch::Tensor& logits, at::IntArrayRef size);

// Cross-entropy against the targets (segmentation: upsampled logits, ignore label 255).
torch::Tensor task_loss(const torch::Tensor& logits, const torch::Tensor& targets, Task task);

// Class per pixel [B,H,W] (targets' size) or per image [B].
torch::Tensor predict_classes(const torch::Tensor& logits, at::IntArrayRef target_size, Task task);

}  // namespace distillery
