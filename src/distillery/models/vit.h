// ViT / DeiT-style backbone (Dosovitskiy et al. 2021; Touvron et al. 2021): non-overlapping
// patch embedding, optional class token, learned position embeddings (interpolated when the
// input's token grid differs from the one they were made for), pre-norm blocks with standard
// multi-head self-attention. Intermediate block outputs are exposed as four stages, all NCHW
// maps at the patch stride; and a segmentation model with a SETR-naive head on the last stage.
#pragma once
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/types.h>

#include <array>
#include <vector>

#include "distillery/models/drop_path.h"
#include "distillery/models/batch_norm.h"
#include "distillery/models/model.h"

namespace distillery {

struct ViTOptions {
  int64_t in_channels = 1;
  int64_t image_size = 64;  // the position embeddings are made for image_size / patch_size
  int64_t patch_size = 4;
  int64_t dim = 96;
  int64_t depth = 8;
  int64_t heads = 3;
  double mlp_ratio = 4.0;
  bool class_token = true;
  double drop_path = 0.0;  // maximum rate, reached by the last block (linear over the blocks)
};

// pos: [1, prefix + old_h * old_w, D], the first `prefix` rows (class token) kept as they are,
// the grid part resized bicubically (align_corners false) to new_h x new_w. Returns `pos`
// itself when the grids match.
torch::Tensor interpolate_position_embedding(const torch::Tensor& pos, int64_t prefix,
                                             int64_t old_h, int64_t old_w, int64_t new_h,
                                             int64_t new_w);

// Standard multi-head self-attention with one fused qkv projection.
class ViTAttentionImpl : public torch::nn::Module {
 public:
  ViTAttentionImpl(int64_t dim, int64_t heads);
  torch::Tensor forward(const torch::Tensor& tokens);  // [B, N, dim]

  int64_t dim, heads;
  torch::nn::Linear qkv{nullptr}, proj{nullptr};
};
TORCH_MODULE(ViTAttention);

class ViTBlockImpl : public torch::nn::Module {
 public:
  ViTBlockImpl(int64_t dim, int64_t heads, double mlp_ratio, double drop_path);
  torch::Tensor forward(const torch::Tensor& tokens);

  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  ViTAttention attn{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  DropPath drop{nullptr};
};
TORCH_MODULE(ViTBlock);

struct ViTFeatures {
  std::vector<torch::Tensor> maps;  // four [B, D, h, w] maps (the last one after the final norm)
  torch::Tensor class_token;        // [B, D] after the final norm; undefined without class token
  torch::Tensor tokens;             // final patch tokens after the final norm, [B, h*w, D]
};

class ViTBackboneImpl : public torch::nn::Module {
 public:
  explicit ViTBackboneImpl(const ViTOptions& options);
  ViTFeatures forward(const torch::Tensor& images);
  std::vector<StageSpec> stages() const;
  // 1-based block counts after which each stage is taken: round(k * depth / 4), k = 1..4.
  const std::array<int64_t, 4>& stage_blocks() const { return stage_blocks_; }
  const ViTOptions& options() const { return options_; }

  torch::nn::Conv2d patch_embed{nullptr};
  torch::Tensor cls_token;  // [1, 1, D] when options.class_token
  torch::Tensor pos_embed;  // [1, prefix + grid * grid, D]
  torch::nn::LayerNorm norm{nullptr};

 private:
  ViTOptions options_;
  int64_t grid_;
  std::array<int64_t, 4> stage_blocks_{};
  std::vector<ViTBlock> blocks_;
};
TORCH_MODULE(ViTBackbone);

// SETR-naive head: 1x1 conv + BN + ReLU + 1x1 classifier on the last stage's map.
class ViTSegHeadImpl : public torch::nn::Module {
 public:
  ViTSegHeadImpl(int64_t in_channels, int64_t hidden, int64_t num_classes);
  torch::Tensor forward(const torch::Tensor& map);

  torch::nn::Conv2d conv{nullptr}, classifier{nullptr};
  BatchNorm2d bn{nullptr};
};
TORCH_MODULE(ViTSegHead);

// Logits at the patch stride (8 for vit_tiny_seg; the trainer upsamples them to the labels).
class ViTSegmenterImpl : public ModelImpl {
 public:
  ViTSegmenterImpl(const ViTOptions& backbone, int64_t head_hidden, int64_t num_classes);
  ModelOutput forward(const torch::Tensor& images) override;
  std::vector<StageSpec> stages() const override { return backbone->stages(); }
  int64_t num_classes() const override { return num_classes_; }
  int64_t output_stride() const override { return backbone->options().patch_size; }

  ViTBackbone backbone{nullptr};
  ViTSegHead head{nullptr};

 private:
  int64_t num_classes_;
};
TORCH_MODULE(ViTSegmenter);

}  // namespace distillery
