#include "distillery/models/deeplabv3.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "distillery/core/error.h"
#include "distillery/models/init.h"
#include "distillery/models/batch_norm.h"

namespace distillery {

namespace {

torch::nn::Sequential conv_bn_relu(int64_t in, int64_t out, int64_t kernel,
                                   int64_t dilation = 1) {
  return torch::nn::Sequential(
      torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel)
                            .padding((kernel - 1) / 2 * dilation)
                            .dilation(dilation)
                            .bias(false)),
      BatchNorm2d(out), torch::nn::ReLU(torch::nn::ReLUOptions(true)));
}

}  // namespace

std::vector<int64_t> aspp_rates_for(int64_t input_size, int64_t output_stride) {
  if (input_size < 1 || output_stride < 1)
    throw ConfigError(fmt::format("model input_size: {} at output stride {} gives no feature map",
                                  input_size, output_stride));
  const int64_t feature_size = (input_size + output_stride - 1) / output_stride;
  const int64_t base = std::max<int64_t>(1, std::lround(feature_size / 8.0));
  return {base, 2 * base, 3 * base};
}

ASPPImpl::ASPPImpl(int64_t in_channels, int64_t out_channels, const std::vector<int64_t>& rates,
                   double dropout) {
  branches_.push_back(register_module("branch0", conv_bn_relu(in_channels, out_channels, 1)));
  for (size_t i = 0; i < rates.size(); ++i)
    branches_.push_back(register_module(fmt::format("branch{}", i + 1),
                                        conv_bn_relu(in_channels, out_channels, 3, rates[i])));
  pooling_ = register_module("pooling", conv_bn_relu(in_channels, out_channels, 1));
  const auto concat_channels = static_cast<int64_t>(branches_.size() + 1) * out_channels;
  project_ = conv_bn_relu(concat_channels, out_channels, 1);
  project_->push_back(torch::nn::Dropout(dropout));
  register_module("project", project_);
}

torch::Tensor ASPPImpl::forward(const torch::Tensor& x) {
  std::vector<torch::Tensor> outputs;
  for (auto& branch : branches_) outputs.push_back(branch->forward(x));
  // Image pooling: global context, broadcast back over the map (a 1x1 map upsamples to a
  // constant, so expand is exactly torchvision's bilinear interpolation).
  auto pooled = pooling_->forward(x.mean({2, 3}, /*keepdim=*/true));
  outputs.push_back(pooled.expand({-1, -1, x.size(2), x.size(3)}));
  return project_->forward(torch::cat(outputs, 1));
}

DeepLabHeadImpl::DeepLabHeadImpl(int64_t in_channels, int64_t channels, int64_t num_classes,
                                 const std::vector<int64_t>& rates, double dropout) {
  aspp_ = register_module("aspp", ASPP(in_channels, channels, rates, dropout));
  refine_ = register_module("refine", conv_bn_relu(channels, channels, 3));
  classifier_ = register_module(
      "classifier", torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, num_classes, 1)));
}

torch::Tensor DeepLabHeadImpl::forward(const torch::Tensor& x) {
  return classifier_(refine_->forward(aspp_(x)));
}

FCNHeadImpl::FCNHeadImpl(int64_t in_channels, int64_t num_classes) {
  const int64_t hidden = std::max<int64_t>(1, in_channels / 4);
  body_ = conv_bn_relu(in_channels, hidden, 3);
  body_->push_back(torch::nn::Dropout(0.1));
  body_->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(hidden, num_classes, 1)));
  register_module("body", body_);
}

torch::Tensor FCNHeadImpl::forward(const torch::Tensor& x) { return body_->forward(x); }

DeepLabV3Impl::DeepLabV3Impl(CnnBackbone backbone, const DeepLabV3Options& options)
    : options_(options), backbone_(std::move(backbone)) {
  if (options.num_classes < 1) throw ConfigError("model num_classes: must be positive");
  if (options.aspp_channels < 1) throw ConfigError("model width: ASPP channels must be positive");
  register_module("backbone", backbone_);
  const auto stages = backbone_->stages();
  head_ = register_module("head", DeepLabHead(stages.back().channels, options.aspp_channels,
                                              options.num_classes, options.atrous_rates,
                                              options.aspp_dropout));
  if (options.aux_head)
    aux_head_ = register_module("aux_head", FCNHead(stages[2].channels, options.num_classes));
  // The backbone initialised itself; the heads get the same scheme.
  init_cnn_weights(*head_);
  if (options.aux_head) init_cnn_weights(*aux_head_);
}

ModelOutput DeepLabV3Impl::forward(const torch::Tensor& images) {
  ModelOutput out;
  out.features = backbone_->forward(images);
  out.logits = head_(out.features.back());
  if (!aux_head_.is_empty()) out.aux_logits = aux_head_(out.features[2]);
  return out;
}

}  // namespace distillery
