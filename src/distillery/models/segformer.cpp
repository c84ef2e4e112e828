#include "distillery/models/segformer.h"

#include <torch/torch.h>

#include <fmt/format.h>

#include "distillery/core/error.h"
#include "distillery/models/init.h"

namespace distillery {

SegFormerHeadImpl::SegFormerHeadImpl(const std::vector<int64_t>& in_channels, int64_t embed_dim,
                                     int64_t num_classes, double dropout_rate) {
  if (in_channels.empty() || embed_dim <= 0 || num_classes <= 0)
    throw ConfigError("SegFormer head: needs stages, a positive width and classes");
  for (size_t i = 0; i < in_channels.size(); ++i)
    stage_linears.push_back(register_module("linear_c" + std::to_string(i + 1),
                                            torch::nn::Linear(in_channels[i], embed_dim)));
  const auto fused_in = static_cast<int64_t>(in_channels.size()) * embed_dim;
  fuse = register_module("linear_fuse", torch::nn::Conv2d(torch::nn::Conv2dOptions(
                                                              fused_in, embed_dim, 1)
                                                              .bias(false)));
  fuse_norm = register_module("linear_fuse_bn", BatchNorm2d(embed_dim));
  dropout = register_module("dropout", torch::nn::Dropout2d(dropout_rate));
  classifier = register_module("linear_pred",
                               torch::nn::Conv2d(torch::nn::Conv2dOptions(embed_dim, num_classes, 1)));
}

torch::Tensor SegFormerHeadImpl::forward(const std::vector<torch::Tensor>& features) {
  if (features.size() != stage_linears.size())
    throw Error(fmt::format("SegFormer head expects {} stages, got {}", stage_linears.size(),
                            features.size()));
  const auto h = features.front().size(2), w = features.front().size(3);
  std::vector<torch::Tensor> upsampled;
  // Deepest first, as in the reference implementation (the order only permutes fuse weights).
  for (size_t i = features.size(); i-- > 0;) {
    const auto& f = features[i];
    auto projected = stage_linears[i](f.flatten(2).transpose(1, 2));  // [B, hw, E]
    auto map = projected.transpose(1, 2).reshape({f.size(0), -1, f.size(2), f.size(3)});
    if (map.size(2) != h || map.size(3) != w)
      map = torch::nn::functional::interpolate(
          map, torch::nn::functional::InterpolateFuncOptions()
                   .size(std::vector<int64_t>{h, w})
                   .mode(torch::kBilinear)
                   .align_corners(false));
    upsampled.push_back(map);
  }
  auto x = torch::relu(fuse_norm(fuse(torch::cat(upsampled, 1))));
  return classifier(dropout(x));
}

SegFormerImpl::SegFormerImpl(const MiTOptions& encoder_options, int64_t decode_dim,
                             int64_t num_classes, double dropout)
    : num_classes_(num_classes) {
  encoder = register_module("encoder", MiTEncoder(encoder_options));
  std::vector<int64_t> channels;
  for (const auto& s : encoder->stages()) channels.push_back(s.channels);
  head = register_module("decode_head", SegFormerHead(channels, decode_dim, num_classes, dropout));
  // Children one by one: modules(include_self) needs a shared_ptr, which *this is not yet.
  for (auto& child : children()) init_transformer_weights(*child);
}

ModelOutput SegFormerImpl::forward(const torch::Tensor& images) {
  ModelOutput out;
  out.features = encoder(images);
  out.logits = head(out.features);
  return out;
}

}  // namespace distillery
