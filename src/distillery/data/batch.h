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
};

constexpr int64_t kIgnoreLabel = 255;

}  // namespace distillery
