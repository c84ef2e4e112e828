// An in-memory dataset: every sample as one row of two tensors. All embedded benchmarks are
// small enough (tens of MB) to live in memory, which keeps loading and batching trivial.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "distillery/models/model.h"

namespace distillery {

struct TensorDataset {
  torch::Tensor images;   // uint8 [N, C, H, W]
  torch::Tensor targets;  // segmentation: uint8 [N, H, W], 255 = ignore; classification: int64 [N]
  int64_t num_classes = 0;
  std::vector<std::string> class_names;  // num_classes entries
  Task task = Task::Segmentation;

  int64_t size() const { return images.defined() ? images.size(0) : 0; }
};

}  // namespace distillery
