#include "distillery/models/cnn_classifier.h"

#include <torch/torch.h>

#include "distillery/core/error.h"
#include "distillery/models/init.h"

namespace distillery {

CnnClassifierImpl::CnnClassifierImpl(CnnBackbone backbone, int64_t num_classes, double dropout)
    : num_classes_(num_classes), backbone_(std::move(backbone)) {
  if (num_classes < 1) throw ConfigError("model num_classes: must be positive");
  register_module("backbone", backbone_);
  dropout_ = register_module("dropout", torch::nn::Dropout(dropout));
  classifier_ = register_module(
      "classifier", torch::nn::Linear(backbone_->stages().back().channels, num_classes));
  init_cnn_weights(*classifier_);
}

ModelOutput CnnClassifierImpl::forward(const torch::Tensor& images) {
  ModelOutput out;
  out.features = backbone_->forward(images);
  out.embedding = out.features.back().mean({2, 3});
  out.logits = classifier_(dropout_(out.embedding));
  return out;
}

}  // namespace distillery
