#include "distillery/models/resnet.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include "distillery/core/error.h"
#include "distillery/models/init.h"

namespace distillery {

namespace {

torch::nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride, int64_t dilation) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3)
                               .stride(stride)
                               .padding(dilation)
                               .dilation(dilation)
                               .bias(false));
}

torch::nn::Conv2d conv1x1(int64_t in, int64_t out, int64_t stride = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).stride(stride).bias(false));
}

// The shortcut projection where the block changes resolution or width, else none.
torch::nn::Sequential make_downsample(int64_t in, int64_t out, int64_t stride) {
  if (stride == 1 && in == out) return nullptr;
  return torch::nn::Sequential(conv1x1(in, out, stride), BatchNorm2d(out));
}

}  // namespace

ResNetOptions ResNetOptions::for_depth(int64_t depth) {
  ResNetOptions options;
  switch (depth) {
    case 18: options.layers = {2, 2, 2, 2}; break;
    case 34: options.layers = {3, 4, 6, 3}; break;
    case 50: options.layers = {3, 4, 6, 3}; break;
    case 101: options.layers = {3, 4, 23, 3}; break;
    default:
      throw ConfigError(fmt::format("model depth: ResNet depth {} is not one of 18, 34, 50, 101",
                                    depth));
  }
  options.block = depth >= 50 ? ResNetBlockType::Bottleneck : ResNetBlockType::Basic;
  return options;
}

BasicBlockImpl::BasicBlockImpl(int64_t in_channels, int64_t planes, int64_t stride,
                               int64_t first_dilation, int64_t dilation) {
  conv1_ = register_module("conv1", conv3x3(in_channels, planes, stride, first_dilation));
  bn1_ = register_module("bn1", BatchNorm2d(planes));
  conv2_ = register_module("conv2", conv3x3(planes, planes, 1, dilation));
  bn2_ = register_module("bn2", BatchNorm2d(planes));
  downsample_ = make_downsample(in_channels, planes, stride);
  if (downsample_) register_module("downsample", downsample_);
}

torch::Tensor BasicBlockImpl::forward(const torch::Tensor& x) {
  auto out = torch::relu(bn1_(conv1_(x)));
  out = bn2_(conv2_(out));
  out += downsample_ ? downsample_->forward(x) : x;
  return torch::relu(out);
}

BottleneckImpl::BottleneckImpl(int64_t in_channels, int64_t planes, int64_t stride,
                               int64_t dilation) {
  const int64_t out_channels = planes * 4;
  conv1_ = register_module("conv1", conv1x1(in_channels, planes));
  bn1_ = register_module("bn1", BatchNorm2d(planes));
  conv2_ = register_module("conv2", conv3x3(planes, planes, stride, dilation));
  bn2_ = register_module("bn2", BatchNorm2d(planes));
  conv3_ = register_module("conv3", conv1x1(planes, out_channels));
  bn3_ = register_module("bn3", BatchNorm2d(out_channels));
  downsample_ = make_downsample(in_channels, out_channels, stride);
  if (downsample_) register_module("downsample", downsample_);
}

torch::Tensor BottleneckImpl::forward(const torch::Tensor& x) {
  auto out = torch::relu(bn1_(conv1_(x)));
  out = torch::relu(bn2_(conv2_(out)));
  out = bn3_(conv3_(out));
  out += downsample_ ? downsample_->forward(x) : x;
  return torch::relu(out);
}

ResNetImpl::ResNetImpl(const ResNetOptions& options) : options_(options) {
  if (options.layers.size() != 4)
    throw ConfigError("model layers: a ResNet needs exactly 4 stage block counts");
  for (int64_t n : options.layers)
    if (n < 1) throw ConfigError("model layers: every ResNet stage needs at least one block");
  if (options.base_width < 1 || options.in_channels < 1)
    throw ConfigError("model width: ResNet base width and input channels must be positive");
  const auto& stem = options.stem;
  if (stem.kernel_size < 1 || stem.kernel_size % 2 == 0 || stem.stride < 1)
    throw ConfigError("model stem: kernel size must be odd and stride positive");

  // How many of the stride-2 stages (layer2..layer4, deepest first) become dilated.
  const int64_t undilated = stem.total_stride() * 8;
  int64_t dilated_stages = -1;
  for (int64_t k = 0; k <= 3; ++k)
    if (undilated >> k == options.output_stride && (undilated >> k) << k == undilated)
      dilated_stages = k;
  if (dilated_stages < 0)
    throw ConfigError(fmt::format(
        "model output_stride: {} is not reachable with this stem (choose from {}, {}, {}, {})",
        options.output_stride, undilated, undilated / 2, undilated / 4, undilated / 8));

  const int64_t w = options.base_width;
  stem_ = torch::nn::Sequential(
      torch::nn::Conv2d(torch::nn::Conv2dOptions(options.in_channels, w, stem.kernel_size)
                            .stride(stem.stride)
                            .padding(stem.kernel_size / 2)
                            .bias(false)),
      BatchNorm2d(w), torch::nn::ReLU(torch::nn::ReLUOptions(true)));
  if (stem.max_pool)
    stem_->push_back(torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(3).stride(2).padding(1)));
  register_module("stem", stem_);

  int64_t in_channels = w;
  int64_t stride_so_far = stem.total_stride();
  int64_t dilation = 1;
  for (int64_t stage = 0; stage < 4; ++stage) {
    const int64_t planes = w << stage;
    int64_t stride = stage == 0 ? 1 : 2;
    const int64_t previous_dilation = dilation;
    if (stage > 0 && stage >= 4 - dilated_stages) {
      dilation *= stride;
      stride = 1;
    }
    torch::nn::Sequential layer;
    for (int64_t b = 0; b < options.layers[stage]; ++b) {
      const int64_t block_stride = b == 0 ? stride : 1;
      const int64_t first_dilation = b == 0 ? previous_dilation : dilation;
      if (options.block == ResNetBlockType::Basic) {
        layer->push_back(BasicBlock(in_channels, planes, block_stride, first_dilation, dilation));
        in_channels = planes;
      } else {
        layer->push_back(Bottleneck(in_channels, planes, block_stride, first_dilation));
        in_channels = planes * 4;
      }
    }
    stride_so_far *= stride;
    layers_.push_back(register_module(fmt::format("layer{}", stage + 1), layer));
    stages_.push_back(StageSpec{in_channels, stride_so_far});
  }
  // Child by child: a module cannot reach itself as a shared_ptr inside its constructor.
  for (auto& child : children()) init_cnn_weights(*child);
}

std::vector<torch::Tensor> ResNetImpl::forward(const torch::Tensor& images) {
  std::vector<torch::Tensor> features;
  auto x = stem_->forward(images);
  for (auto& layer : layers_) {
    x = layer->forward(x);
    features.push_back(x);
  }
  return features;
}

}  // namespace distillery
