// Classification variants of the Transformer backbones (e.g. 28x28 Fashion-MNIST): logits
// [B, C], the backbone's four stage maps, and the embedding the classifier reads.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/types.h>

#include "distillery/models/mit.h"
#include "distillery/models/model.h"
#include "distillery/models/vit.h"

namespace distillery {

// MiT encoder (give it a smaller stem for small inputs, e.g. patch_strides {2,2,2,2}) ->
// global average pool of the last (LayerNorm-ed) stage -> Linear. embedding = the pooled vector.
class MiTClassifierImpl : public ModelImpl {
 public:
  MiTClassifierImpl(const MiTOptions& encoder, int64_t num_classes);
  ModelOutput forward(const torch::Tensor& images) override;
  std::vector<StageSpec> stages() const override { return encoder->stages(); }
  int64_t num_classes() const override { return num_classes_; }
  int64_t output_stride() const override { return 0; }
  Task task() const override { return Task::Classification; }

  MiTEncoder encoder{nullptr};
  torch::nn::Linear head{nullptr};

 private:
  int64_t num_classes_;
};
TORCH_MODULE(MiTClassifier);

// ViT backbone -> Linear on the final class token (DeiT without the distillation token), or on
// the mean of the patch tokens when there is no class token. embedding = that vector.
class ViTClassifierImpl : public ModelImpl {
 public:
  ViTClassifierImpl(const ViTOptions& backbone, int64_t num_classes);
  ModelOutput forward(const torch::Tensor& images) override;
  std::vector<StageSpec> stages() const override { return backbone->stages(); }
  int64_t num_classes() const override { return num_classes_; }
  int64_t output_stride() const override { return 0; }
  Task task() const override { return Task::Classification; }

  ViTBackbone backbone{nullptr};
  torch::nn::Linear head{nullptr};

 private:
  int64_t num_classes_;
};
TORCH_MODULE(ViTClassifier);

}  // namespace distillery
