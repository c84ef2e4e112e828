#include "distillery/distill/components/projector.h"
#include "distillery/models/batch_norm.h"

#include <torch/torch.h>

namespace distillery {

ProjectorKind read_projector_kind(const ConfigSection& cfg, const std::string& key,
                                  const std::string& fallback) {
  return cfg.get_choice(key, fallback, {"linear", "conv_bn_relu"}) == "linear"
             ? ProjectorKind::Linear
             : ProjectorKind::ConvBnRelu;
}

torch::nn::Sequential make_projector(int64_t in_channels, int64_t out_channels, ProjectorKind kind) {
  namespace nn = torch::nn;
  nn::Sequential projector;
  if (kind == ProjectorKind::ConvBnRelu) {
    projector->push_back(nn::Conv2d(nn::Conv2dOptions(in_channels, in_channels, 3).padding(1).bias(false)));
    projector->push_back(BatchNorm2d(in_channels));
    projector->push_back(nn::ReLU());
  }
  projector->push_back(nn::Conv2d(nn::Conv2dOptions(in_channels, out_channels, 1)));
  return projector;
}

torch::nn::Sequential make_aligner(int64_t in_channels, int64_t out_channels) {
  return make_projector(in_channels, out_channels, ProjectorKind::Linear);
}

}  // namespace distillery
