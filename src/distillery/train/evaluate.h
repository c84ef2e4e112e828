// Evaluation of a model on a whole dataset split.
#pragma once
#include <string>
#include <vector>

#include "distillery/data/tensor_dataset.h"
#include "distillery/models/model.h"
#include "distillery/train/metrics.h"

namespace distillery {

struct EvalResult {
  double metric = 0;             // mIoU (segmentation) or top-1 accuracy (classification)
  double pixel_accuracy = 0;     // accuracy over pixels or images
  std::vector<double> per_class_iou;
  std::string metric_name;       // "mIoU" or "top1"
};

class DataParallel;

// Runs in eval mode without gradients and restores the model's previous mode. With `parallel`,
// every rank evaluates every world_size-th batch and the confusion counts are summed, so every
// rank returns the result of the whole split.
EvalResult evaluate(ModelImpl& model, const TensorDataset& data, int64_t batch_size,
                    bool show_progress = false, DataParallel* parallel = nullptr);

}  // namespace distillery
