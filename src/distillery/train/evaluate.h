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

// Runs in eval mode without gradients and restores the model's previous mode.
EvalResult evaluate(ModelImpl& model, const TensorDataset& data, int64_t batch_size,
                    bool show_progress = false);

}  // namespace distillery
