#include "distillery/models/mit.h"

#include <torch/torch.h>

#include <fmt/format.h>

#include <cmath>

#include "distillery/core/error.h"

namespace distillery {

namespace {
// [B, N, C] tokens of an h x w grid -> [B, C, h, w].
torch::Tensor tokens_to_map(const torch::Tensor& tokens, int64_t h, int64_t w) {
  return tokens.transpose(1, 2).reshape({tokens.size(0), tokens.size(2), h, w});
}
// [B, C, h, w] -> [B, h*w, C].
torch::Tensor map_to_tokens(const torch::Tensor& map) { return map.flatten(2).transpose(1, 2); }
}  // namespace

OverlapPatchEmbedImpl::OverlapPatchEmbedImpl(int64_t in_channels, int64_t dim, int64_t kernel,
                                             int64_t stride) {
  proj = register_module(
      "proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(in_channels, dim, kernel)
                                    .stride(stride)
                                    .padding(kernel / 2)));
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
}

torch::Tensor OverlapPatchEmbedImpl::forward(const torch::Tensor& images, int64_t& h, int64_t& w) {
  auto map = proj(images);
  h = map.size(2);
  w = map.size(3);
  return norm(map_to_tokens(map));
}

EfficientSelfAttentionImpl::EfficientSelfAttentionImpl(int64_t dim_, int64_t heads_,
                                                       int64_t sr_ratio_)
    : dim(dim_), heads(heads_), sr_ratio(sr_ratio_) {
  if (dim % heads != 0)
    throw ConfigError(fmt::format("attention dim {} is not divisible by {} heads", dim, heads));
  q = register_module("q", torch::nn::Linear(dim, dim));
  kv = register_module("kv", torch::nn::Linear(dim, 2 * dim));
  proj = register_module("proj", torch::nn::Linear(dim, dim));
  if (sr_ratio > 1) {
    sr = register_module("sr", torch::nn::Conv2d(torch::nn::Conv2dOptions(dim, dim, sr_ratio)
                                                     .stride(sr_ratio)));
    sr_norm = register_module("sr_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim})));
  }
}

torch::Tensor EfficientSelfAttentionImpl::forward(const torch::Tensor& tokens, int64_t h,
                                                  int64_t w) {
  const int64_t batch = tokens.size(0), n = tokens.size(1), head_dim = dim / heads;
  auto query = q(tokens).reshape({batch, n, heads, head_dim}).permute({0, 2, 1, 3});
  torch::Tensor source = tokens;
  if (sr_ratio > 1) source = sr_norm(map_to_tokens(sr(tokens_to_map(tokens, h, w))));
  const int64_t m = source.size(1);
  // [2, B, heads, M, head_dim]
  auto key_value = kv(source).reshape({batch, m, 2, heads, head_dim}).permute({2, 0, 3, 1, 4});
  auto key = key_value[0], value = key_value[1];
  auto attention =
      torch::matmul(query, key.transpose(-2, -1)).mul(1.0 / std::sqrt(static_cast<double>(head_dim)));
  attention = attention.softmax(-1);
  auto out = torch::matmul(attention, value).transpose(1, 2).reshape({batch, n, dim});
  return proj(out);
}

MixFFNImpl::MixFFNImpl(int64_t dim, int64_t hidden) {
  fc1 = register_module("fc1", torch::nn::Linear(dim, hidden));
  dwconv = register_module(
      "dwconv",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(hidden, hidden, 3).padding(1).groups(hidden)));
  fc2 = register_module("fc2", torch::nn::Linear(hidden, dim));
}

torch::Tensor MixFFNImpl::forward(const torch::Tensor& tokens, int64_t h, int64_t w) {
  auto hidden = fc1(tokens);
  hidden = map_to_tokens(dwconv(tokens_to_map(hidden, h, w)));
  return fc2(torch::gelu(hidden));
}

MiTBlockImpl::MiTBlockImpl(int64_t dim, int64_t heads, int64_t sr_ratio, double mlp_ratio,
                           double drop_path) {
  // eps 1e-6 as in the reference implementation's blocks.
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-6)));
  attn = register_module("attn", EfficientSelfAttention(dim, heads, sr_ratio));
  norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-6)));
  mlp = register_module("mlp", MixFFN(dim, static_cast<int64_t>(std::lround(dim * mlp_ratio))));
  drop = register_module("drop_path", DropPath(drop_path));
}

torch::Tensor MiTBlockImpl::forward(const torch::Tensor& tokens, int64_t h, int64_t w) {
  auto x = tokens + drop(attn(norm1(tokens), h, w));
  return x + drop(mlp(norm2(x), h, w));
}

void validate_mit_options(const MiTOptions& o, const std::string& what) {
  if (o.in_channels <= 0) throw ConfigError(fmt::format("{}: in_channels must be positive", what));
  if (o.drop_path < 0.0 || o.drop_path >= 1.0)
    throw ConfigError(fmt::format("{}: drop_path must be in [0, 1), got {}", what, o.drop_path));
  if (o.mlp_ratio <= 0.0) throw ConfigError(fmt::format("{}: mlp_ratio must be positive", what));
  for (size_t i = 0; i < 4; ++i) {
    if (o.dims[i] <= 0 || o.heads[i] <= 0 || o.depths[i] <= 0 || o.sr_ratios[i] <= 0 ||
        o.patch_kernels[i] <= 0 || o.patch_strides[i] <= 0)
      throw ConfigError(fmt::format("{}: stage {} sizes must be positive", what, i + 1));
    if (o.dims[i] % o.heads[i] != 0)
      throw ConfigError(fmt::format("{}: stage {} dim {} is not divisible by {} heads", what, i + 1,
                                    o.dims[i], o.heads[i]));
  }
}

MiTEncoderImpl::MiTEncoderImpl(const MiTOptions& options) : options_(options) {
  validate_mit_options(options_, "MiT encoder");
  int64_t total_blocks = 0;
  for (auto d : options_.depths) total_blocks += d;
  int64_t block_index = 0;
  int64_t in_channels = options_.in_channels;
  for (size_t s = 0; s < 4; ++s) {
    const std::string suffix = std::to_string(s + 1);
    patch_embeds_.push_back(register_module(
        "patch_embed" + suffix,
        OverlapPatchEmbed(in_channels, options_.dims[s], options_.patch_kernels[s],
                          options_.patch_strides[s])));
    torch::nn::ModuleList list;
    std::vector<MiTBlock> stage_blocks;
    for (int64_t b = 0; b < options_.depths[s]; ++b, ++block_index) {
      // Stochastic depth grows linearly from 0 (first block) to drop_path (last block).
      const double rate = total_blocks > 1 ? options_.drop_path * static_cast<double>(block_index) /
                                                 static_cast<double>(total_blocks - 1)
                                           : 0.0;
      MiTBlock block(options_.dims[s], options_.heads[s], options_.sr_ratios[s],
                     options_.mlp_ratio, rate);
      list->push_back(block);
      stage_blocks.push_back(block);
    }
    register_module("block" + suffix, list);
    blocks_.push_back(std::move(stage_blocks));
    norms_.push_back(register_module(
        "norm" + suffix,
        torch::nn::LayerNorm(torch::nn::LayerNormOptions({options_.dims[s]}).eps(1e-6))));
    in_channels = options_.dims[s];
  }
}

std::vector<torch::Tensor> MiTEncoderImpl::forward(const torch::Tensor& images) {
  std::vector<torch::Tensor> maps;
  torch::Tensor x = images;
  for (size_t s = 0; s < 4; ++s) {
    int64_t h = 0, w = 0;
    auto tokens = patch_embeds_[s](x, h, w);
    for (auto& block : blocks_[s]) tokens = block(tokens, h, w);
    x = tokens_to_map(norms_[s](tokens), h, w);
    maps.push_back(x);
  }
  return maps;
}

std::vector<StageSpec> MiTEncoderImpl::stages() const {
  std::vector<StageSpec> specs;
  int64_t stride = 1;
  for (size_t s = 0; s < 4; ++s) {
    stride *= options_.patch_strides[s];
    specs.push_back({options_.dims[s], stride});
  }
  return specs;
}

}  // namespace distillery
