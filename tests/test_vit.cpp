// ViT backbone, segmenter and classifier: shapes of the presets, exact parameter counts,
// attention against a per-head loop, position-embedding interpolation against an explicit
// bicubic resize, stage taps, a forward at a size the model was not built for, and a small
// classification run that must learn.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "distillery/core/error.h"
#include "distillery/models/transformer_classifier.h"
#include "distillery/models/vit.h"
#include "distillery/models/zoo.h"

using namespace distillery;

namespace {

int64_t count_parameters(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}
int64_t layer_norm(int64_t d) { return 2 * d; }
int64_t linear(int64_t in, int64_t out) { return in * out + out; }
int64_t conv(int64_t k, int64_t in, int64_t out, bool bias = true) {
  return k * k * in * out + (bias ? out : 0);
}

int64_t vit_count(const ViTOptions& o) {
  const int64_t d = o.dim, hidden = static_cast<int64_t>(std::lround(d * o.mlp_ratio));
  const int64_t grid = o.image_size / o.patch_size, prefix = o.class_token ? 1 : 0;
  int64_t total = conv(o.patch_size, o.in_channels, d) + prefix * d + (prefix + grid * grid) * d;
  total += o.depth * (layer_norm(d) + linear(d, 3 * d) + linear(d, d) + layer_norm(d) +
                      linear(d, hidden) + linear(hidden, d));
  return total + layer_norm(d);  // final norm
}

// PyTorch's bicubic (A = -0.75, align_corners false, indices clamped at the border) as an
// explicit [new, old] weight matrix.
torch::Tensor bicubic_matrix(int64_t old_size, int64_t new_size) {
  const double a = -0.75, scale = static_cast<double>(old_size) / new_size;
  auto near = [&](double x) { return ((a + 2) * x - (a + 3)) * x * x + 1; };          // |x| <= 1
  auto far = [&](double x) { return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a; };   // 1 < |x| < 2
  auto m = torch::zeros({new_size, old_size}, torch::kDouble);
  for (int64_t i = 0; i < new_size; ++i) {
    const double src = (i + 0.5) * scale - 0.5;
    const auto base = static_cast<int64_t>(std::floor(src));
    const double t = src - base;
    const double weights[4] = {far(t + 1), near(t), near(1 - t), far(2 - t)};
    for (int64_t k = 0; k < 4; ++k) {
      const int64_t j = std::min(std::max<int64_t>(base - 1 + k, 0), old_size - 1);
      m[i][j] += weights[k];
    }
  }
  return m;
}

torch::Tensor naive_vit_attention(ViTAttentionImpl& m, const torch::Tensor& x) {
  const int64_t d = m.dim, hd = d / m.heads;
  std::vector<torch::Tensor> heads;
  for (int64_t head = 0; head < m.heads; ++head) {
    auto part = [&](int64_t which) {
      auto w = m.qkv->weight.narrow(0, which * d + head * hd, hd);
      auto b = m.qkv->bias.narrow(0, which * d + head * hd, hd);
      return torch::matmul(x, w.t()) + b;
    };
    auto q = part(0), k = part(1), v = part(2);
    auto scores = torch::matmul(q, k.transpose(1, 2)) / std::sqrt(static_cast<double>(hd));
    auto e = torch::exp(scores - std::get<0>(scores.max(-1, true)));
    heads.push_back(torch::matmul(e / e.sum(-1, true), v));
  }
  return torch::matmul(torch::cat(heads, -1), m.proj->weight.t()) + m.proj->bias;
}

}  // namespace

TEST(ViT, SegmentationPresetShapesAndStrides) {
  torch::manual_seed(0);
  auto model = create_model("vit_tiny_seg", {});
  model->eval();
  EXPECT_EQ(find_model("vit_tiny_seg").task, Task::Segmentation);
  EXPECT_EQ(model->output_stride(), 8);  // patch 8
  EXPECT_EQ(model->num_classes(), 11);
  auto out = model->forward(torch::randn({2, 1, 64, 64}));
  EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{2, 11, 8, 8}));
  auto specs = model->stages();
  ASSERT_EQ(specs.size(), 4u);
  ASSERT_EQ(out.features.size(), 4u);
  for (size_t s = 0; s < 4; ++s) {
    EXPECT_EQ(specs[s].stride, 8);
    EXPECT_EQ(specs[s].channels, 64);
    EXPECT_EQ(out.features[s].sizes(), (std::vector<int64_t>{2, 64, 8, 8}));
  }
  // width scales the dim, kept a multiple of the 2 heads.
  ModelOptions wide;
  wide.width = 1.5;
  EXPECT_EQ(create_model("vit_tiny_seg", wide)->stages()[0].channels, 96);
}

TEST(ViT, ClassificationPresetShapes) {
  torch::manual_seed(1);
  ModelOptions options;
  options.num_classes = 10;
  options.input_size = 28;
  for (const auto& [name, dim] : std::vector<std::pair<std::string, int64_t>>{
           {"vit_tiny_cls", 64}, {"vit_small_cls", 128}}) {
    SCOPED_TRACE(name);
    EXPECT_EQ(find_model(name).task, Task::Classification);
    auto model = create_model(name, options);
    model->eval();
    EXPECT_EQ(model->task(), Task::Classification);
    EXPECT_EQ(model->output_stride(), 0);
    auto out = model->forward(torch::randn({3, 1, 28, 28}));
    EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{3, 10}));
    EXPECT_EQ(out.embedding.sizes(), (std::vector<int64_t>{3, dim}));
    ASSERT_EQ(out.features.size(), 4u);
    for (size_t s = 0; s < 4; ++s) {
      EXPECT_EQ(model->stages()[s].stride, 4);
      EXPECT_EQ(out.features[s].sizes(), (std::vector<int64_t>{3, dim, 7, 7}));
    }
    auto& classifier = dynamic_cast<ViTClassifierImpl&>(*model);
    EXPECT_TRUE(torch::allclose(out.logits, classifier.head(out.embedding), 1e-6, 1e-6));
    // 7x7 grid + class token.
    EXPECT_EQ(classifier.backbone->pos_embed.sizes(), (std::vector<int64_t>{1, 50, dim}));
  }
}

TEST(ViT, ParameterCountMatchesClosedForm) {
  ViTOptions o;
  o.in_channels = 2;
  o.image_size = 24;
  o.patch_size = 4;
  o.dim = 12;
  o.depth = 5;
  o.heads = 3;
  o.mlp_ratio = 2.5;
  ViTBackbone backbone(o);
  EXPECT_EQ(count_parameters(*backbone), vit_count(o));
  // Worked by hand: patch 4*4*2*12+12 = 396, class token 12, position (1+36)*12 = 444;
  // block: 2 LN 48, qkv 12*36+36 = 468, proj 156, fc1 12*30+30 = 390, fc2 30*12+12 = 372
  // -> 1434, five blocks 7170; final norm 24. Total 8046.
  EXPECT_EQ(count_parameters(*backbone), 8046);
  o.class_token = false;
  EXPECT_EQ(count_parameters(*ViTBackbone(o)), 8046 - 12 - 12);

  o.class_token = true;
  const int64_t hidden = 10, classes = 4;
  ViTSegmenter segmenter(o, hidden, classes);
  EXPECT_EQ(count_parameters(*segmenter),
            vit_count(o) + conv(1, 12, hidden, false) + 2 * hidden + conv(1, hidden, classes));
  ViTClassifier classifier(o, classes);
  EXPECT_EQ(count_parameters(*classifier), vit_count(o) + linear(12, classes));
}

TEST(ViT, AttentionMatchesPerHeadLoop) {
  torch::manual_seed(2);
  ViTAttention attention(12, 4);
  attention->to(torch::kDouble);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : attention->parameters()) p.normal_(0.0, 0.5);
  }
  auto x = torch::randn({3, 7, 12}, torch::kDouble);
  EXPECT_LT((attention(x) - naive_vit_attention(*attention, x)).abs().max().item<double>(), 1e-5);
}

TEST(ViT, PositionEmbeddingInterpolation) {
  torch::manual_seed(3);
  const int64_t d = 5;
  auto pos = torch::randn({1, 1 + 4 * 6, d}, torch::kDouble);
  // Same grid: exactly the same embedding.
  EXPECT_TRUE(torch::equal(interpolate_position_embedding(pos, 1, 4, 6, 4, 6), pos));
  // Other grids (up in one axis, down in the other): the class token is kept as is and the
  // grid matches an explicit separable bicubic resize.
  for (auto [nh, nw] : std::vector<std::pair<int64_t, int64_t>>{{7, 3}, {2, 9}, {8, 12}}) {
    SCOPED_TRACE(std::to_string(nh) + "x" + std::to_string(nw));
    auto resized = interpolate_position_embedding(pos, 1, 4, 6, nh, nw);
    ASSERT_EQ(resized.sizes(), (std::vector<int64_t>{1, 1 + nh * nw, d}));
    EXPECT_TRUE(torch::equal(resized[0][0], pos[0][0]));
    auto grid = pos[0].narrow(0, 1, 24).reshape({4, 6, d});
    auto mh = bicubic_matrix(4, nh), mw = bicubic_matrix(6, nw);
    auto expected = torch::einsum("ai,bj,ijc->abc", {mh, mw, grid}).reshape({nh * nw, d});
    EXPECT_LT((resized[0].narrow(0, 1, nh * nw) - expected).abs().max().item<double>(), 1e-9);
  }
  // No prefix token.
  auto plain = torch::randn({1, 16, d});
  EXPECT_EQ(interpolate_position_embedding(plain, 0, 4, 4, 2, 2).sizes(),
            (std::vector<int64_t>{1, 4, d}));
  EXPECT_THROW(interpolate_position_embedding(plain, 1, 4, 4, 2, 2), Error);
}

TEST(ViT, ForwardAtAnotherSizeUsesInterpolatedEmbedding) {
  torch::manual_seed(4);
  ModelOptions built_for_64;
  auto model = create_model("vit_tiny_seg", built_for_64);
  model->eval();
  auto images = torch::randn({2, 1, 32, 32});
  auto out = model->forward(images);
  EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{2, 11, 4, 4}));
  EXPECT_EQ(out.features[0].sizes(), (std::vector<int64_t>{2, 64, 4, 4}));

  // A model made for 32x32 with the same weights and the resized embedding gives the same logits.
  ModelOptions built_for_32;
  built_for_32.input_size = 32;
  auto small = create_model("vit_tiny_seg", built_for_32);
  small->eval();
  {
    torch::NoGradGuard no_grad;
    auto params = small->named_parameters();
    for (const auto& item : model->named_parameters()) {
      if (item.key() == "backbone.pos_embed")
        params[item.key()].copy_(interpolate_position_embedding(item.value(), 1, 8, 8, 4, 4));
      else
        params[item.key()].copy_(item.value());
    }
  }
  EXPECT_TRUE(torch::allclose(small->forward(images).logits, out.logits, 1e-5, 1e-5));
}

TEST(ViT, StagesAreIntermediateBlockOutputs) {
  torch::manual_seed(5);
  ViTOptions o;
  o.image_size = 16;
  o.dim = 8;
  o.heads = 2;
  o.depth = 6;
  ViTBackbone backbone(o);
  backbone->eval();
  EXPECT_EQ(backbone->stage_blocks(), (std::array<int64_t, 4>{{2, 3, 5, 6}}));
  EXPECT_EQ(ViTBackbone([&] { auto p = o; p.depth = 8; return p; }())->stage_blocks(),
            (std::array<int64_t, 4>{{2, 4, 6, 8}}));
  auto images = torch::randn({2, 1, 16, 16});
  auto features = backbone(images);

  // Manual forward through the registered blocks.
  auto tokens = backbone->patch_embed(images).flatten(2).transpose(1, 2);
  tokens = torch::cat({backbone->cls_token.expand({2, 1, 8}), tokens}, 1) + backbone->pos_embed;
  auto blocks = backbone->named_children()["blocks"]->children();
  ASSERT_EQ(blocks.size(), 6u);
  std::vector<torch::Tensor> expected;
  auto to_map = [](const torch::Tensor& t) {
    return t.narrow(1, 1, 16).transpose(1, 2).reshape({2, 8, 4, 4});
  };
  for (size_t b = 0; b < 6; ++b) {
    tokens = blocks[b]->as<ViTBlockImpl>()->forward(tokens);
    if (b + 1 == 2 || b + 1 == 3 || b + 1 == 5) expected.push_back(to_map(tokens));
  }
  tokens = backbone->norm(tokens);
  expected.push_back(to_map(tokens));
  ASSERT_EQ(features.maps.size(), 4u);
  for (size_t s = 0; s < 4; ++s) EXPECT_TRUE(torch::allclose(features.maps[s], expected[s], 1e-6, 1e-6)) << s;
  EXPECT_TRUE(torch::allclose(features.class_token, tokens.select(1, 0), 1e-6, 1e-6));
  // Map layout: token (row i, column j) is map[:, :, i, j].
  EXPECT_TRUE(torch::equal(features.maps[3][1].select(1, 2).select(1, 3), tokens[1][1 + 2 * 4 + 3]));
}

TEST(ViT, InitialisationOfEmbeddings) {
  torch::manual_seed(6);
  ViTOptions o;
  o.image_size = 64;
  o.dim = 192;
  ViTClassifier model(o, 10);
  auto pos = model->backbone->pos_embed;
  EXPECT_NEAR(pos.std().item<double>(), 0.02 * 0.8796, 0.02 * 0.05);
  EXPECT_LE(pos.abs().max().item<float>(), 0.04f + 1e-6f);
  EXPECT_LE(model->backbone->cls_token.abs().max().item<float>(), 0.04f + 1e-6f);
  EXPECT_GT(model->backbone->cls_token.abs().max().item<float>(), 0.0f);
  EXPECT_EQ(model->head->bias.abs().max().item<float>(), 0.0f);
}

TEST(ViT, ClassificationLearnsOnASmallRun) {
  torch::manual_seed(7);
  // Horizontal stripes (class 0) vs vertical stripes (class 1), random phase, plus noise.
  const int64_t n = 32, size = 16;
  auto images = torch::randn({n, 1, size, size}) * 0.3;
  auto labels = torch::zeros({n}, torch::kLong);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t phase = i % 4;
    const bool vertical = i % 2 == 1;
    labels[i] = vertical ? 1 : 0;
    for (int64_t k = phase; k < size; k += 4)
      (vertical ? images[i][0].select(1, k) : images[i][0].select(0, k)) += 1.0;
  }
  ViTOptions o;
  o.image_size = size;
  o.dim = 16;
  o.heads = 2;
  o.depth = 4;
  ViTClassifier model(o, 2);
  torch::optim::AdamW optimizer(model->parameters(), torch::optim::AdamWOptions(3e-3));
  model->train();
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    auto loss = torch::nn::functional::cross_entropy(model->forward(images).logits, labels);
    if (step == 0) first = loss.item<double>();
    last = loss.item<double>();
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
  }
  model->eval();
  auto accuracy = (model->forward(images).logits.argmax(1) == labels).to(torch::kDouble).mean();
  EXPECT_LT(last, 0.3 * first) << "first " << first << " last " << last;
  EXPECT_EQ(accuracy.item<double>(), 1.0);
}
