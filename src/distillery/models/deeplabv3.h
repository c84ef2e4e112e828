// DeepLabV3 (Chen et al. 2017, torchvision layout): ASPP + 3x3 conv + classifier on the deepest
// backbone stage, an optional FCN auxiliary head on the third stage, and the segmentation model
// that wraps a CNN backbone with them.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/types.h>

#include <vector>

#include "distillery/models/model.h"
#include "distillery/models/resnet.h"

namespace distillery {

// Atrous rates sized to the feature map instead of torchvision's 12/24/36 (made for ~65x65
// maps at 513 px, output stride 8). With f = ceil(input_size / output_stride) the rates are
// r * max(1, round(f / 8)) for r = 1, 2, 3: the widest branch spans 6 * f / 8 + 1 <= f pixels,
// so every branch still sees real pixels rather than padding (DeepLabV3 sec. 3.3), and the
// image-pooling branch supplies the global context. 64 px at output stride 8 -> 1, 2, 3;
// 513 px at output stride 8 -> 8, 16, 24.
std::vector<int64_t> aspp_rates_for(int64_t input_size, int64_t output_stride);

// Atrous spatial pyramid pooling: 1x1 branch, one 3x3 branch per rate, image pooling branch,
// concatenated and projected to out_channels (conv-BN-ReLU, dropout).
class ASPPImpl : public torch::nn::Module {
 public:
  ASPPImpl(int64_t in_channels, int64_t out_channels, const std::vector<int64_t>& rates,
           double dropout = 0.5);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  std::vector<torch::nn::Sequential> branches_;
  torch::nn::Sequential pooling_{nullptr};
  torch::nn::Sequential project_{nullptr};
};
TORCH_MODULE(ASPP);

// ASPP -> 3x3 conv-BN-ReLU -> 1x1 classifier (torchvision's DeepLabHead).
class DeepLabHeadImpl : public torch::nn::Module {
 public:
  DeepLabHeadImpl(int64_t in_channels, int64_t channels, int64_t num_classes,
                  const std::vector<int64_t>& rates, double dropout = 0.5);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  ASPP aspp_{nullptr};
  torch::nn::Sequential refine_{nullptr};
  torch::nn::Conv2d classifier_{nullptr};
};
TORCH_MODULE(DeepLabHead);

// 3x3 conv to in/4 channels -> BN-ReLU -> dropout 0.1 -> 1x1 classifier (torchvision's FCNHead).
class FCNHeadImpl : public torch::nn::Module {
 public:
  FCNHeadImpl(int64_t in_channels, int64_t num_classes);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Sequential body_{nullptr};
};
TORCH_MODULE(FCNHead);

struct DeepLabV3Options {
  int64_t num_classes = 11;
  int64_t aspp_channels = 256;
  std::vector<int64_t> atrous_rates = {1, 2, 3};
  double aspp_dropout = 0.5;
  bool aux_head = false;  // FCN head on the third backbone stage -> ModelOutput::aux_logits
};

// Backbone + DeepLabV3 head. Logits (and aux logits) come at the feature resolution; the trainer
// upsamples them to the labels. features = the backbone's four stages, shallow to deep.
class DeepLabV3Impl : public ModelImpl {
 public:
  DeepLabV3Impl(CnnBackbone backbone, const DeepLabV3Options& options);
  ModelOutput forward(const torch::Tensor& images) override;
  std::vector<StageSpec> stages() const override { return backbone_->stages(); }
  int64_t num_classes() const override { return options_.num_classes; }
  int64_t output_stride() const override { return backbone_->stages().back().stride; }
  bool has_aux_head() const { return !aux_head_.is_empty(); }

 private:
  DeepLabV3Options options_;
  CnnBackbone backbone_;
  DeepLabHead head_{nullptr};
  FCNHead aux_head_{nullptr};
};
TORCH_MODULE(DeepLabV3);

}  // namespace distillery
