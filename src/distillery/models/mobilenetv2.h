// MobileNetV2 backbone (torchvision layout) with a width multiplier and dilation, exposing four
// stages: after the 24-channel group (stride 4), the 32-channel group (8), the 96-channel group
// (16 or dilated) and the end (the 320-channel group, or the final 1x1 conv when present).
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/types.h>

#include <vector>

#include "distillery/models/resnet.h"

namespace distillery {

// torchvision's _make_divisible: round to the nearest multiple of `divisor`, never below it and
// never more than 10% below the unrounded value.
int64_t make_divisible(double value, int64_t divisor = 8);

struct MobileNetV2Options {
  double width_mult = 1.0;
  int64_t in_channels = 3;
  int64_t stem_stride = 2;          // 1 for 28x28 inputs
  int64_t first_stage_stride = 2;   // stride of the 24-channel group; 1 for 28x28 inputs
  // Stride of the last stage; smaller values dilate the 64- then the 32-... groups instead of
  // striding: must be (stem * first stage * 8) / 2^k, k in 0..2.
  int64_t output_stride = 32;
  // Final 1x1 conv to 1280 * max(1, width_mult) channels (torchvision's last_channel); 0 drops it.
  int64_t last_channels = 1280;
  // Initialise the last BatchNorm's scale of every residual block to 0, so that each block starts
  // as the identity (Goyal et al. 2017; timm's zero_init_last). Without it the 17-block, ~50
  // BatchNorm-deep stack starts in a chaotic regime (stage-4 features of an image and of the same
  // image plus 5% noise are uncorrelated) and trains very slowly from scratch.
  bool zero_init_residual = false;
};

// Expand (1x1), depthwise 3x3 (strided / dilated), project (1x1, linear); residual when the
// shape is kept.
class InvertedResidualImpl : public torch::nn::Module {
 public:
  InvertedResidualImpl(int64_t in_channels, int64_t out_channels, int64_t stride,
                       int64_t dilation, int64_t expand_ratio);
  torch::Tensor forward(const torch::Tensor& x);
  bool has_residual() const { return use_residual_; }
  // Sets the scale of the projection's BatchNorm (the branch's last layer) to 0.
  void zero_init_last_norm();

 private:
  torch::nn::Sequential body_{nullptr};
  bool use_residual_ = false;
};
TORCH_MODULE(InvertedResidual);

class MobileNetV2Impl : public CnnBackboneImpl {
 public:
  explicit MobileNetV2Impl(const MobileNetV2Options& options);
  std::vector<torch::Tensor> forward(const torch::Tensor& images) override;
  std::vector<StageSpec> stages() const override { return stages_; }

 private:
  std::vector<torch::nn::Sequential> stage_modules_;
  std::vector<StageSpec> stages_;
};
TORCH_MODULE(MobileNetV2);

}  // namespace distillery
