// MiT, the Mix Transformer encoder of SegFormer (Xie et al., NeurIPS 2021): four stages of
// overlapping patch embedding + pre-norm blocks (efficient self-attention with a per-stage
// spatial-reduction ratio, Mix-FFN with a 3x3 depthwise conv) + LayerNorm, returning NCHW
// maps at strides 4/8/16/32 (with the default stem).
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/types.h>

#include <array>
#include <vector>

#include "distillery/models/drop_path.h"
#include "distillery/models/model.h"

namespace distillery {

struct MiTOptions {
  int64_t in_channels = 1;
  std::array<int64_t, 4> dims{{16, 32, 64, 128}};
  std::array<int64_t, 4> depths{{2, 2, 2, 2}};
  std::array<int64_t, 4> heads{{1, 2, 4, 8}};
  std::array<int64_t, 4> sr_ratios{{4, 2, 1, 1}};
  // Patch-embedding kernel and stride per stage; padding is kernel / 2 (overlapping patches).
  std::array<int64_t, 4> patch_kernels{{7, 3, 3, 3}};
  std::array<int64_t, 4> patch_strides{{4, 2, 2, 2}};
  double mlp_ratio = 4.0;
  double drop_path = 0.0;  // maximum rate, reached by the last block (linear over all blocks)
};

// Conv (kernel k, stride s, padding k/2) then LayerNorm over the channels of each token.
class OverlapPatchEmbedImpl : public torch::nn::Module {
 public:
  OverlapPatchEmbedImpl(int64_t in_channels, int64_t dim, int64_t kernel, int64_t stride);
  // images [B, Cin, H, W] -> tokens [B, h*w, dim]; h, w receive the token grid.
  torch::Tensor forward(const torch::Tensor& images, int64_t& h, int64_t& w);

  torch::nn::Conv2d proj{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(OverlapPatchEmbed);

// Multi-head self-attention whose keys/values come from a map reduced by a conv with
// kernel = stride = sr_ratio (+ LayerNorm) when sr_ratio > 1: cost N * N / R^2 instead of N^2.
class EfficientSelfAttentionImpl : public torch::nn::Module {
 public:
  EfficientSelfAttentionImpl(int64_t dim, int64_t heads, int64_t sr_ratio);
  // tokens [B, h*w, dim] laid out row-major over the h x w grid.
  torch::Tensor forward(const torch::Tensor& tokens, int64_t h, int64_t w);

  int64_t dim, heads, sr_ratio;
  torch::nn::Linear q{nullptr}, kv{nullptr}, proj{nullptr};
  torch::nn::Conv2d sr{nullptr};         // only when sr_ratio > 1
  torch::nn::LayerNorm sr_norm{nullptr};  // only when sr_ratio > 1
};
TORCH_MODULE(EfficientSelfAttention);

// Linear -> 3x3 depthwise conv on the token map -> GELU -> Linear. The conv gives the
// positional information that MiT has instead of position embeddings.
class MixFFNImpl : public torch::nn::Module {
 public:
  MixFFNImpl(int64_t dim, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& tokens, int64_t h, int64_t w);

  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  torch::nn::Conv2d dwconv{nullptr};
};
TORCH_MODULE(MixFFN);

class MiTBlockImpl : public torch::nn::Module {
 public:
  MiTBlockImpl(int64_t dim, int64_t heads, int64_t sr_ratio, double mlp_ratio, double drop_path);
  torch::Tensor forward(const torch::Tensor& tokens, int64_t h, int64_t w);

  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  EfficientSelfAttention attn{nullptr};
  MixFFN mlp{nullptr};
  DropPath drop{nullptr};
};
TORCH_MODULE(MiTBlock);

class MiTEncoderImpl : public torch::nn::Module {
 public:
  explicit MiTEncoderImpl(const MiTOptions& options);
  // Four NCHW maps, shallow to deep.
  std::vector<torch::Tensor> forward(const torch::Tensor& images);
  // Channels and nominal strides (product of the patch strides).
  std::vector<StageSpec> stages() const;
  const MiTOptions& options() const { return options_; }

 private:
  MiTOptions options_;
  std::vector<OverlapPatchEmbed> patch_embeds_;
  std::vector<std::vector<MiTBlock>> blocks_;
  std::vector<torch::nn::LayerNorm> norms_;
};
TORCH_MODULE(MiTEncoder);

// Checks dims divisible by heads, positive depths/ratios; throws ConfigError naming `what`.
void validate_mit_options(const MiTOptions& options, const std::string& what);

}  // namespace distillery
