// Image classification on a CNN backbone: global average pooling of the last stage, optional
// dropout, linear classifier. The stems of the small-input presets (28x28) are adapted in the
// zoo (3x3 stride-1 conv, no max-pool).
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/types.h>

#include <vector>

#include "distillery/models/model.h"
#include "distillery/models/resnet.h"

namespace distillery {

class CnnClassifierImpl : public ModelImpl {
 public:
  // dropout before the classifier (torchvision: 0 for ResNet, 0.2 for MobileNetV2).
  CnnClassifierImpl(CnnBackbone backbone, int64_t num_classes, double dropout = 0.0);
  // logits [B, C]; features = the four stage maps; embedding = pooled last stage [B, D].
  ModelOutput forward(const torch::Tensor& images) override;
  std::vector<StageSpec> stages() const override { return backbone_->stages(); }
  int64_t num_classes() const override { return num_classes_; }
  int64_t output_stride() const override { return 0; }
  Task task() const override { return Task::Classification; }

 private:
  int64_t num_classes_;
  CnnBackbone backbone_;
  torch::nn::Dropout dropout_{nullptr};
  torch::nn::Linear classifier_{nullptr};
};
TORCH_MODULE(CnnClassifier);

}  // namespace distillery
