#include "distillery/models/vit.h"

#include <torch/torch.h>

#include <fmt/format.h>

#include <cmath>

#include "distillery/core/error.h"
#include "distillery/models/init.h"

namespace distillery {

torch::Tensor interpolate_position_embedding(const torch::Tensor& pos, int64_t prefix,
                                             int64_t old_h, int64_t old_w, int64_t new_h,
                                             int64_t new_w) {
  if (pos.dim() != 3 || pos.size(1) != prefix + old_h * old_w)
    throw Error(fmt::format("position embedding with {} dims and {} tokens does not hold {} + {}x{}",
                            pos.dim(), pos.dim() > 1 ? pos.size(1) : 0, prefix, old_h, old_w));
  if (old_h == new_h && old_w == new_w) return pos;
  const int64_t dim = pos.size(2);
  auto prefix_part = pos.narrow(1, 0, prefix);
  auto grid = pos.narrow(1, prefix, old_h * old_w).reshape({1, old_h, old_w, dim}).permute({0, 3, 1, 2});
  grid = torch::nn::functional::interpolate(grid, torch::nn::functional::InterpolateFuncOptions()
                                                      .size(std::vector<int64_t>{new_h, new_w})
                                                      .mode(torch::kBicubic)
                                                      .align_corners(false));
  grid = grid.permute({0, 2, 3, 1}).reshape({1, new_h * new_w, dim});
  return torch::cat({prefix_part, grid}, 1);
}

ViTAttentionImpl::ViTAttentionImpl(int64_t dim_, int64_t heads_) : dim(dim_), heads(heads_) {
  if (dim % heads != 0)
    throw ConfigError(fmt::format("attention dim {} is not divisible by {} heads", dim, heads));
  qkv = register_module("qkv", torch::nn::Linear(dim, 3 * dim));
  proj = register_module("proj", torch::nn::Linear(dim, dim));
}

torch::Tensor ViTAttentionImpl::forward(const torch::Tensor& tokens) {
  const int64_t batch = tokens.size(0), n = tokens.size(1), head_dim = dim / heads;
  // [3, B, heads, N, head_dim]
  auto qkv_ = qkv(tokens).reshape({batch, n, 3, heads, head_dim}).permute({2, 0, 3, 1, 4});
  auto attention = torch::matmul(qkv_[0], qkv_[1].transpose(-2, -1))
                       .mul(1.0 / std::sqrt(static_cast<double>(head_dim)))
                       .softmax(-1);
  return proj(torch::matmul(attention, qkv_[2]).transpose(1, 2).reshape({batch, n, dim}));
}

ViTBlockImpl::ViTBlockImpl(int64_t dim, int64_t heads, double mlp_ratio, double drop_path) {
  const auto hidden = static_cast<int64_t>(std::lround(dim * mlp_ratio));
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-6)));
  attn = register_module("attn", ViTAttention(dim, heads));
  norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-6)));
  fc1 = register_module("fc1", torch::nn::Linear(dim, hidden));
  fc2 = register_module("fc2", torch::nn::Linear(hidden, dim));
  drop = register_module("drop_path", DropPath(drop_path));
}

torch::Tensor ViTBlockImpl::forward(const torch::Tensor& tokens) {
  auto x = tokens + drop(attn(norm1(tokens)));
  return x + drop(fc2(torch::gelu(fc1(norm2(x)))));
}

ViTBackboneImpl::ViTBackboneImpl(const ViTOptions& options) : options_(options) {
  const auto& o = options_;
  if (o.in_channels <= 0 || o.patch_size <= 0 || o.dim <= 0 || o.heads <= 0 || o.mlp_ratio <= 0)
    throw ConfigError("ViT: in_channels, patch_size, dim, heads and mlp_ratio must be positive");
  if (o.depth < 4) throw ConfigError(fmt::format("ViT: depth {} < 4 cannot give four stages", o.depth));
  if (o.image_size < o.patch_size)
    throw ConfigError(fmt::format("ViT: input_size {} is smaller than the patch size {}",
                                  o.image_size, o.patch_size));
  if (o.drop_path < 0.0 || o.drop_path >= 1.0)
    throw ConfigError(fmt::format("ViT: drop_path must be in [0, 1), got {}", o.drop_path));
  grid_ = o.image_size / o.patch_size;
  patch_embed = register_module(
      "patch_embed", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.in_channels, o.dim, o.patch_size)
                                           .stride(o.patch_size)));
  const int64_t prefix = o.class_token ? 1 : 0;
  if (o.class_token) {
    cls_token = register_parameter("cls_token", torch::zeros({1, 1, o.dim}));
    trunc_normal_(cls_token, 0.02);
  }
  pos_embed = register_parameter("pos_embed", torch::zeros({1, prefix + grid_ * grid_, o.dim}));
  trunc_normal_(pos_embed, 0.02);

  torch::nn::ModuleList list;
  for (int64_t b = 0; b < o.depth; ++b) {
    const double rate =
        o.depth > 1 ? o.drop_path * static_cast<double>(b) / static_cast<double>(o.depth - 1) : 0.0;
    ViTBlock block(o.dim, o.heads, o.mlp_ratio, rate);
    list->push_back(block);
    blocks_.push_back(block);
  }
  register_module("blocks", list);
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.dim}).eps(1e-6)));
  for (int64_t k = 1; k <= 4; ++k) stage_blocks_[k - 1] = (k * o.depth + 2) / 4;
}

ViTFeatures ViTBackboneImpl::forward(const torch::Tensor& images) {
  const int64_t prefix = options_.class_token ? 1 : 0;
  auto map = patch_embed(images);
  const int64_t batch = map.size(0), h = map.size(2), w = map.size(3);
  auto tokens = map.flatten(2).transpose(1, 2);
  if (options_.class_token) tokens = torch::cat({cls_token.expand({batch, 1, options_.dim}), tokens}, 1);
  tokens = tokens + interpolate_position_embedding(pos_embed, prefix, grid_, grid_, h, w);

  auto to_map = [&](const torch::Tensor& t) {
    return t.narrow(1, prefix, h * w).transpose(1, 2).reshape({batch, options_.dim, h, w});
  };
  ViTFeatures out;
  size_t next_stage = 0;
  for (int64_t b = 0; b < options_.depth; ++b) {
    tokens = blocks_[static_cast<size_t>(b)](tokens);
    if (b + 1 == options_.depth) break;  // the last stage is taken after the final norm
    if (b + 1 == stage_blocks_[next_stage]) {
      out.maps.push_back(to_map(tokens));
      ++next_stage;
    }
  }
  tokens = norm(tokens);
  out.maps.push_back(to_map(tokens));
  if (options_.class_token) out.class_token = tokens.select(1, 0);
  out.tokens = tokens.narrow(1, prefix, h * w);
  return out;
}

std::vector<StageSpec> ViTBackboneImpl::stages() const {
  return std::vector<StageSpec>(4, StageSpec{options_.dim, options_.patch_size});
}

ViTSegHeadImpl::ViTSegHeadImpl(int64_t in_channels, int64_t hidden, int64_t num_classes) {
  conv = register_module(
      "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(in_channels, hidden, 1).bias(false)));
  bn = register_module("bn", BatchNorm2d(hidden));
  classifier = register_module("classifier",
                               torch::nn::Conv2d(torch::nn::Conv2dOptions(hidden, num_classes, 1)));
}

torch::Tensor ViTSegHeadImpl::forward(const torch::Tensor& map) {
  return classifier(torch::relu(bn(conv(map))));
}

ViTSegmenterImpl::ViTSegmenterImpl(const ViTOptions& backbone_options, int64_t head_hidden,
                                   int64_t num_classes)
    : num_classes_(num_classes) {
  if (num_classes <= 0) throw ConfigError("ViT segmenter: num_classes must be positive");
  backbone = register_module("backbone", ViTBackbone(backbone_options));
  head = register_module("head", ViTSegHead(backbone_options.dim, head_hidden, num_classes));
  // Position embeddings and class token keep their trunc-normal init (they are parameters,
  // not modules, so the module-wise init leaves them alone).
  // Children one by one: modules(include_self) needs a shared_ptr, which *this is not yet.
  for (auto& child : children()) init_transformer_weights(*child);
}

ModelOutput ViTSegmenterImpl::forward(const torch::Tensor& images) {
  auto features = backbone(images);
  ModelOutput out;
  out.logits = head(features.maps.back());
  out.features = std::move(features.maps);
  return out;
}

}  // namespace distillery
