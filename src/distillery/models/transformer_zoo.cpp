// Transformer presets, sized for 64x64 single-channel segmentation (fashion-seg) and 28x28
// classification (Fashion-MNIST). Every preset reads ModelOptions: num_classes, in_channels,
// input_size (ViT position-embedding grid), width (> 0 scales every embedding dim, kept a
// multiple of the head count, and the SegFormer head width), drop_path (stochastic depth,
// reached by the last block).
//
// Sizing, measured on 2 CPU cores (batch 16, forward + backward; CPU training is GEMM-bound,
// so time follows forward FLOPs plus a fixed per-step overhead). SegFormer's decode head fuses
// 4 x width channels at stride 4, so its width dominates the cost of a small encoder: both
// presets use 64 (b0 then has the reference prototype's 0.70M parameters; a width of 128 would
// add 27 MFLOPs to the teacher). The teacher keeps b2's stage widths but not its depth: with
// depths 2/3/4/2 (and head width 128) it costs 134 MFLOPs and trains at ~60 img/s here, 2000
// steps in ~9 min; 2/2/3/2 costs 90 MFLOPs (~75 img/s). The ViT segmenter uses patch 8 (8x8
// tokens at 64 px, logits at stride 8): with patch 4 the 256-token attention and MLPs cost ~4x
// the FLOPs and train ~5x slower than MiT-b0.
#include <torch/torch.h>

#include <cmath>

#include "distillery/core/error.h"
#include "distillery/models/segformer.h"
#include "distillery/models/transformer_classifier.h"
#include "distillery/models/vit.h"
#include "distillery/models/zoo.h"

namespace distillery {

namespace {

double width_of(const ModelOptions& o) {
  if (o.width < 0) throw ConfigError("model.width must be >= 0 (0: the preset's own width)");
  return o.width > 0 ? o.width : 1.0;
}

// dim * width rounded to a multiple of `multiple` (the head count), at least one multiple.
int64_t scaled(int64_t dim, double width, int64_t multiple) {
  const auto units = static_cast<int64_t>(std::lround(dim * width / static_cast<double>(multiple)));
  return std::max<int64_t>(1, units) * multiple;
}

MiTOptions mit_options(const ModelOptions& o, std::array<int64_t, 4> dims,
                       std::array<int64_t, 4> depths, std::array<int64_t, 4> heads,
                       std::array<int64_t, 4> sr_ratios, int64_t first_stride) {
  MiTOptions m;
  const double width = width_of(o);
  for (size_t i = 0; i < 4; ++i) m.dims[i] = scaled(dims[i], width, heads[i]);
  m.depths = depths;
  m.heads = heads;
  m.sr_ratios = sr_ratios;
  m.in_channels = o.in_channels;
  m.drop_path = o.drop_path;
  m.patch_strides = {{first_stride, 2, 2, 2}};
  return m;
}

ViTOptions vit_options(const ModelOptions& o, int64_t dim, int64_t depth, int64_t heads,
                       int64_t patch) {
  ViTOptions v;
  v.in_channels = o.in_channels;
  v.image_size = o.input_size;
  v.patch_size = patch;
  v.dim = scaled(dim, width_of(o), heads);
  v.depth = depth;
  v.heads = heads;
  v.drop_path = o.drop_path;
  return v;
}

// MiT sr ratios: the reference 8/4/2/1 (at 512 px) reduce the keys of stages 1-3 to the
// stage-4 grid (input / 32). At 64 px that grid is 2x2, so 4 key positions for a 16x16 query
// map; 4/2/1/1 keeps the key grid at 4x4 (input / 16) in every stage instead.
constexpr std::array<int64_t, 4> kSegSr{{4, 2, 1, 1}};
// 28 px classification: stem stride 2 gives maps 14/7/4/2; only stage 1 (14x14) is reduced,
// to 7x7 keys.
constexpr std::array<int64_t, 4> kClsSr{{2, 1, 1, 1}};

// The reference sr ratios, for real photographs (512+ px) and pretrained MiT weights, whose
// spatial-reduction convs have kernels 8/4/2.
constexpr std::array<int64_t, 4> kReferenceSr{{8, 4, 2, 1}};

Model segformer(const ModelOptions& o, std::array<int64_t, 4> dims, std::array<int64_t, 4> depths,
                std::array<int64_t, 4> heads, int64_t decode_dim,
                std::array<int64_t, 4> sr_ratios = kSegSr) {
  auto encoder = mit_options(o, dims, depths, heads, sr_ratios, 4);
  return std::make_shared<SegFormerImpl>(encoder, scaled(decode_dim, width_of(o), 8), o.num_classes);
}

}  // namespace

void register_transformer_models(std::vector<ZooEntry>& zoo) {
  zoo.push_back({"segformer_b0",
                 "SegFormer student, MiT-b0-like encoder (dims 16/32/64/128, depths 2/2/2/2), "
                 "MLP head width 64, logits at stride 4",
                 Task::Segmentation, [](const ModelOptions& o) {
                   return segformer(o, {{16, 32, 64, 128}}, {{2, 2, 2, 2}}, {{1, 2, 4, 8}}, 64);
                 }});
  zoo.push_back({"segformer_b2",
                 "SegFormer teacher, MiT-b2-like encoder (dims 32/64/160/256, depths 2/2/3/2), "
                 "MLP head width 64, logits at stride 4",
                 Task::Segmentation, [](const ModelOptions& o) {
                   return segformer(o, {{32, 64, 160, 256}}, {{2, 2, 3, 2}}, {{1, 2, 5, 8}}, 64);
                 }});
  // The published MiT sizes, so that SegFormer / timm-style ImageNet weights load unchanged.
  zoo.push_back({"segformer_mit_b0",
                 "SegFormer-B0 as published (MiT-b0: dims 32/64/160/256, depths 2/2/2/2, sr "
                 "8/4/2/1, head 256): for real datasets and pretrained MiT weights",
                 Task::Segmentation, [](const ModelOptions& o) {
                   return segformer(o, {{32, 64, 160, 256}}, {{2, 2, 2, 2}}, {{1, 2, 5, 8}}, 256, kReferenceSr);
                 }});
  zoo.push_back({"segformer_mit_b1",
                 "SegFormer-B1 as published (MiT-b1: dims 64/128/320/512, depths 2/2/2/2, head 256)",
                 Task::Segmentation, [](const ModelOptions& o) {
                   return segformer(o, {{64, 128, 320, 512}}, {{2, 2, 2, 2}}, {{1, 2, 5, 8}}, 256, kReferenceSr);
                 }});
  zoo.push_back({"segformer_mit_b2",
                 "SegFormer-B2 as published (MiT-b2: dims 64/128/320/512, depths 3/4/6/3, head 768)",
                 Task::Segmentation, [](const ModelOptions& o) {
                   return segformer(o, {{64, 128, 320, 512}}, {{3, 4, 6, 3}}, {{1, 2, 5, 8}}, 768, kReferenceSr);
                 }});
  zoo.push_back({"vit_tiny_seg",
                 "ViT student, patch 8 (8x8 tokens at 64 px) + class token, dim 64, depth 8, "
                 "2 heads, SETR-naive head, logits at stride 8",
                 Task::Segmentation, [](const ModelOptions& o) -> Model {
                   auto v = vit_options(o, 64, 8, 2, 8);
                   return std::make_shared<ViTSegmenterImpl>(v, v.dim, o.num_classes);
                 }});
  zoo.push_back({"mit_b0_cls",
                 "MiT-b0-like classifier for 28x28 (stem stride 2: maps 14/7/4/2), dims "
                 "16/32/64/128",
                 Task::Classification, [](const ModelOptions& o) -> Model {
                   return std::make_shared<MiTClassifierImpl>(
                       mit_options(o, {{16, 32, 64, 128}}, {{2, 2, 2, 2}}, {{1, 2, 4, 8}}, kClsSr, 2),
                       o.num_classes);
                 }});
  zoo.push_back({"mit_b2_cls",
                 "MiT-b2-like classifier for 28x28 (stem stride 2), dims 32/64/160/256, depths "
                 "2/2/3/2",
                 Task::Classification, [](const ModelOptions& o) -> Model {
                   return std::make_shared<MiTClassifierImpl>(
                       mit_options(o, {{32, 64, 160, 256}}, {{2, 2, 3, 2}}, {{1, 2, 5, 8}}, kClsSr, 2),
                       o.num_classes);
                 }});
  zoo.push_back({"vit_tiny_cls",
                 "ViT classifier, patch 4 (7x7 tokens at 28 px) + class token, dim 64, depth 6, "
                 "2 heads",
                 Task::Classification, [](const ModelOptions& o) -> Model {
                   return std::make_shared<ViTClassifierImpl>(vit_options(o, 64, 6, 2, 4),
                                                              o.num_classes);
                 }});
  zoo.push_back({"vit_small_cls",
                 "ViT classifier, patch 4 (7x7 tokens at 28 px) + class token, dim 128, depth 6, "
                 "4 heads",
                 Task::Classification, [](const ModelOptions& o) -> Model {
                   return std::make_shared<ViTClassifierImpl>(vit_options(o, 128, 6, 4, 4),
                                                              o.num_classes);
                 }});
}

}  // namespace distillery
