#pragma once
#include <torch/types.h>

namespace distillery {

// One mini-batch. images: float [B, C, H, W] normalised; targets: int64 [B, H, W] with 255 =
// ignore (segmentation) or [B] (classification); index: int64 [B], the dataset indices (for
// cached teacher outputs and memory banks).
struct Batch {
  torch::Tensor images;
  torch::Tensor targets;
  torch::Tensor index;
  int64_t step = -1;  // the training step it was made for (-1: evaluation); keys teacher caches
};

constexpr int64_t kIgnoreLabel = 255;

}  // namespace distillery
