#include "distillery/models/transformer_classifier.h"

#include <torch/torch.h>

#include "distillery/core/error.h"
#include "distillery/models/init.h"

namespace distillery {

MiTClassifierImpl::MiTClassifierImpl(const MiTOptions& encoder_options, int64_t num_classes)
    : num_classes_(num_classes) {
  if (num_classes <= 0) throw ConfigError("MiT classifier: num_classes must be positive");
  encoder = register_module("encoder", MiTEncoder(encoder_options));
  head = register_module("head", torch::nn::Linear(encoder_options.dims[3], num_classes));
  // Children one by one: modules(include_self) needs a shared_ptr, which *this is not yet.
  for (auto& child : children()) init_transformer_weights(*child);
}

ModelOutput MiTClassifierImpl::forward(const torch::Tensor& images) {
  ModelOutput out;
  out.features = encoder(images);
  out.embedding = out.features.back().mean({2, 3});
  out.logits = head(out.embedding);
  return out;
}

ViTClassifierImpl::ViTClassifierImpl(const ViTOptions& backbone_options, int64_t num_classes)
    : num_classes_(num_classes) {
  if (num_classes <= 0) throw ConfigError("ViT classifier: num_classes must be positive");
  backbone = register_module("backbone", ViTBackbone(backbone_options));
  head = register_module("head", torch::nn::Linear(backbone_options.dim, num_classes));
  // Children one by one: modules(include_self) needs a shared_ptr, which *this is not yet.
  for (auto& child : children()) init_transformer_weights(*child);
}

ModelOutput ViTClassifierImpl::forward(const torch::Tensor& images) {
  auto features = backbone(images);
  ModelOutput out;
  out.embedding = features.class_token.defined() ? features.class_token : features.tokens.mean(1);
  out.logits = head(out.embedding);
  out.features = std::move(features.maps);
  return out;
}

}  // namespace distillery
