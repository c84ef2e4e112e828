// A dataset split. The embedded benchmarks are small enough (tens of MB) to live in memory:
// every sample is one row of two tensors, which keeps loading and batching trivial. Real
// datasets (Cityscapes, VOC, ADE20K, folders) stay on disk: `files` lists them and the loader
// and evaluation read them per batch (images and targets stay undefined).
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "distillery/data/file_dataset.h"
#include "distillery/models/model.h"

namespace distillery {

struct TensorDataset {
  torch::Tensor images;   // uint8 [N, C, H, W]
  torch::Tensor targets;  // segmentation: uint8 [N, H, W], 255 = ignore; classification: int64 [N]
  int64_t num_classes = 0;
  std::vector<std::string> class_names;  // num_classes entries
  Task task = Task::Segmentation;
  std::shared_ptr<const FileDataset> files;  // set for on-disk datasets

  int64_t size() const { return files ? files->size() : images.defined() ? images.size(0) : 0; }

  // A segmentation dataset read from disk per batch (the real-dataset readers end here).
  static TensorDataset on_disk(std::shared_ptr<const FileDataset> files, int64_t num_classes,
                               std::vector<std::string> class_names) {
    TensorDataset dataset;
    dataset.num_classes = num_classes;
    dataset.class_names = std::move(class_names);
    dataset.task = Task::Segmentation;
    dataset.files = std::move(files);
    return dataset;
  }
};

}  // namespace distillery
