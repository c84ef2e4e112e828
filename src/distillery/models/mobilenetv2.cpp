#include "distillery/models/mobilenetv2.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "distillery/core/error.h"
#include "distillery/models/init.h"
#include "distillery/models/batch_norm.h"

namespace distillery {

int64_t make_divisible(double value, int64_t divisor) {
  int64_t rounded = std::max<int64_t>(
      divisor, static_cast<int64_t>(value + divisor / 2.0) / divisor * divisor);
  if (rounded < 0.9 * value) rounded += divisor;
  return rounded;
}

namespace {

// Appends conv-BN-ReLU6 to `layers` (flat: LibTorch cannot nest Sequentials).
void append_conv_bn_relu6(torch::nn::Sequential& layers, int64_t in, int64_t out, int64_t kernel,
                          int64_t stride, int64_t dilation = 1, int64_t groups = 1) {
  layers->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)
                                          .stride(stride)
                                          .padding((kernel - 1) / 2 * dilation)
                                          .dilation(dilation)
                                          .groups(groups)
                                          .bias(false)));
  layers->push_back(BatchNorm2d(out));
  layers->push_back(torch::nn::ReLU6(torch::nn::ReLU6Options(true)));
}

// torchvision's inverted residual setting: expansion t, channels c, repeats n, stride s.
struct GroupSetting {
  int64_t expand, channels, repeats, stride;
};
const GroupSetting kGroups[] = {{1, 16, 1, 1},  {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                                {6, 96, 3, 1},  {6, 160, 3, 2}, {6, 320, 1, 1}};
// Index of the last group of each exposed stage.
const int kStageEnds[] = {1, 2, 4, 6};

}  // namespace

InvertedResidualImpl::InvertedResidualImpl(int64_t in_channels, int64_t out_channels,
                                           int64_t stride, int64_t dilation,
                                           int64_t expand_ratio) {
  const int64_t hidden = static_cast<int64_t>(std::lround(in_channels * expand_ratio));
  use_residual_ = stride == 1 && in_channels == out_channels;
  body_ = torch::nn::Sequential();
  if (expand_ratio != 1) append_conv_bn_relu6(body_, in_channels, hidden, 1, 1);
  append_conv_bn_relu6(body_, hidden, hidden, 3, stride, dilation, hidden);
  body_->push_back(
      torch::nn::Conv2d(torch::nn::Conv2dOptions(hidden, out_channels, 1).bias(false)));
  body_->push_back(BatchNorm2d(out_channels));
  register_module("body", body_);
}

void InvertedResidualImpl::zero_init_last_norm() {
  torch::NoGradGuard no_grad;
  auto* norm = body_->ptr(body_->size() - 1)->as<BatchNorm2dImpl>();
  TORCH_CHECK(norm != nullptr, "InvertedResidual: the last layer is not a BatchNorm2d");
  torch::nn::init::zeros_(norm->weight);
}

torch::Tensor InvertedResidualImpl::forward(const torch::Tensor& x) {
  auto out = body_->forward(x);
  return use_residual_ ? out + x : out;
}

MobileNetV2Impl::MobileNetV2Impl(const MobileNetV2Options& options) {
  if (!(options.width_mult > 0))
    throw ConfigError("model width: MobileNetV2 width multiplier must be positive");
  if (options.in_channels < 1)
    throw ConfigError("model in_channels: must be positive");
  if (options.stem_stride < 1 || options.first_stage_stride < 1)
    throw ConfigError("model stem: strides must be positive");
  const int64_t undilated = options.stem_stride * options.first_stage_stride * 8;
  int64_t dilated_groups = -1;  // how many of the last stride-2 groups (160, then 64) dilate
  for (int64_t k = 0; k <= 2; ++k)
    if ((undilated >> k) == options.output_stride && ((undilated >> k) << k) == undilated)
      dilated_groups = k;
  if (dilated_groups < 0)
    throw ConfigError(fmt::format(
        "model output_stride: {} is not reachable for MobileNetV2 (choose from {}, {}, {})",
        options.output_stride, undilated, undilated / 2, undilated / 4));

  int64_t in_channels = make_divisible(32 * options.width_mult);
  int64_t stride_so_far = options.stem_stride;
  int64_t dilation = 1;
  torch::nn::Sequential stage;
  append_conv_bn_relu6(stage, options.in_channels, in_channels, 3, options.stem_stride);
  for (int g = 0; g < 7; ++g) {
    const auto& group = kGroups[g];
    int64_t stride = g == 1 ? options.first_stage_stride : group.stride;
    const int64_t previous_dilation = dilation;
    const bool dilate = (g == 5 && dilated_groups >= 1) || (g == 3 && dilated_groups >= 2);
    if (dilate) {
      dilation *= stride;
      stride = 1;
    }
    const int64_t out_channels = make_divisible(group.channels * options.width_mult);
    for (int64_t b = 0; b < group.repeats; ++b) {
      stage->push_back(InvertedResidual(in_channels, out_channels, b == 0 ? stride : 1,
                                        b == 0 ? previous_dilation : dilation, group.expand));
      in_channels = out_channels;
    }
    stride_so_far *= stride;
    if (std::find(std::begin(kStageEnds), std::end(kStageEnds), g) == std::end(kStageEnds))
      continue;
    if (g == 6 && options.last_channels > 0) {
      const int64_t last =
          make_divisible(options.last_channels * std::max(1.0, options.width_mult));
      append_conv_bn_relu6(stage, in_channels, last, 1, 1);
      in_channels = last;
    }
    stage_modules_.push_back(
        register_module(fmt::format("stage{}", stage_modules_.size() + 1), stage));
    stages_.push_back(StageSpec{in_channels, stride_so_far});
    stage = torch::nn::Sequential();
  }
  // Child by child: a module cannot reach itself as a shared_ptr inside its constructor.
  for (auto& child : children()) init_cnn_weights(*child);
  if (options.zero_init_residual)
    for (auto& m : modules(/*include_self=*/false))
      if (auto* block = m->as<InvertedResidualImpl>())
        if (block->has_residual()) block->zero_init_last_norm();
}

std::vector<torch::Tensor> MobileNetV2Impl::forward(const torch::Tensor& images) {
  std::vector<torch::Tensor> features;
  auto x = images;
  for (auto& stage : stage_modules_) {
    x = stage->forward(x);
    features.push_back(x);
  }
  return features;
}

}  // namespace distillery
