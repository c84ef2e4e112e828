// MiT encoder, SegFormer and the MiT classifier: shapes and strides of the presets, exact
// parameter counts, efficient attention against a per-head loop, stochastic depth, init, and
// a small run that must learn.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "distillery/core/error.h"
#include "distillery/models/drop_path.h"
#include "distillery/models/mit.h"
#include "distillery/models/segformer.h"
#include "distillery/models/transformer_classifier.h"
#include "distillery/models/zoo.h"

using namespace distillery;

namespace {

int64_t count_parameters(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

// Closed-form parameter counts of the layers.
int64_t layer_norm(int64_t d) { return 2 * d; }
int64_t linear(int64_t in, int64_t out) { return in * out + out; }
int64_t conv(int64_t k, int64_t in, int64_t out, int64_t groups = 1, bool bias = true) {
  return k * k * in * out / groups + (bias ? out : 0);
}

int64_t mit_count(const MiTOptions& o) {
  int64_t total = 0, in = o.in_channels;
  for (size_t s = 0; s < 4; ++s) {
    const int64_t d = o.dims[s], hidden = static_cast<int64_t>(std::lround(d * o.mlp_ratio));
    total += conv(o.patch_kernels[s], in, d) + layer_norm(d);  // overlapping patch embedding
    int64_t attention = linear(d, d) + linear(d, 2 * d) + linear(d, d);  // q, kv, proj
    if (o.sr_ratios[s] > 1) attention += conv(o.sr_ratios[s], d, d) + layer_norm(d);
    const int64_t ffn = linear(d, hidden) + conv(3, hidden, hidden, hidden) + linear(hidden, d);
    total += o.depths[s] * (layer_norm(d) + attention + layer_norm(d) + ffn);
    total += layer_norm(d);  // end-of-stage norm
    in = d;
  }
  return total;
}

// Independent reference: spatial reduction as an explicit patch sum, LayerNorm from its
// definition, and q/k/v/softmax computed head by head.
torch::Tensor naive_efficient_attention(EfficientSelfAttentionImpl& m, const torch::Tensor& x,
                                        int64_t h, int64_t w) {
  const int64_t batch = x.size(0), c = x.size(2), hd = c / m.heads, r = m.sr_ratio;
  torch::Tensor source = x;
  if (r > 1) {
    const int64_t hr = h / r, wr = w / r;
    auto reduced = torch::zeros({batch, hr * wr, c}, x.options());
    auto xa = x.accessor<double, 3>();
    auto wa = m.sr->weight.accessor<double, 4>();
    auto ba = m.sr->bias.accessor<double, 1>();
    auto ra = reduced.accessor<double, 3>();
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t i = 0; i < hr; ++i)
        for (int64_t j = 0; j < wr; ++j)
          for (int64_t co = 0; co < c; ++co) {
            double sum = ba[co];
            for (int64_t ci = 0; ci < c; ++ci)
              for (int64_t di = 0; di < r; ++di)
                for (int64_t dj = 0; dj < r; ++dj)
                  sum += xa[b][(i * r + di) * w + (j * r + dj)][ci] * wa[co][ci][di][dj];
            ra[b][i * wr + j][co] = sum;
          }
    auto mean = reduced.mean(-1, true);
    auto var = (reduced - mean).pow(2).mean(-1, true);
    source = (reduced - mean) / torch::sqrt(var + m.sr_norm->options.eps()) * m.sr_norm->weight +
             m.sr_norm->bias;
  }
  std::vector<torch::Tensor> heads;
  for (int64_t head = 0; head < m.heads; ++head) {
    auto wq = m.q->weight.narrow(0, head * hd, hd), bq = m.q->bias.narrow(0, head * hd, hd);
    auto wk = m.kv->weight.narrow(0, head * hd, hd), bk = m.kv->bias.narrow(0, head * hd, hd);
    auto wv = m.kv->weight.narrow(0, c + head * hd, hd), bv = m.kv->bias.narrow(0, c + head * hd, hd);
    auto q = torch::matmul(x, wq.t()) + bq;
    auto k = torch::matmul(source, wk.t()) + bk;
    auto v = torch::matmul(source, wv.t()) + bv;
    auto scores = torch::matmul(q, k.transpose(1, 2)) / std::sqrt(static_cast<double>(hd));
    auto e = torch::exp(scores - std::get<0>(scores.max(-1, true)));
    heads.push_back(torch::matmul(e / e.sum(-1, true), v));
  }
  return torch::matmul(torch::cat(heads, -1), m.proj->weight.t()) + m.proj->bias;
}

}  // namespace

TEST(MiT, SegmentationPresetShapesAndStrides) {
  torch::manual_seed(0);
  for (const std::string name : {"segformer_b0", "segformer_b2"}) {
    SCOPED_TRACE(name);
    ModelOptions options;  // 11 classes, 1 channel, 64x64
    auto model = create_model(name, options);
    model->eval();
    EXPECT_EQ(find_model(name).task, Task::Segmentation);
    EXPECT_EQ(model->task(), Task::Segmentation);
    EXPECT_EQ(model->output_stride(), 4);
    EXPECT_EQ(model->num_classes(), 11);
    auto out = model->forward(torch::randn({2, 1, 64, 64}));
    EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{2, 11, 16, 16}));
    EXPECT_FALSE(out.aux_logits.defined());
    auto specs = model->stages();
    ASSERT_EQ(specs.size(), 4u);
    ASSERT_EQ(out.features.size(), 4u);
    const int64_t expected_strides[] = {4, 8, 16, 32};
    for (size_t s = 0; s < 4; ++s) {
      EXPECT_EQ(specs[s].stride, expected_strides[s]);
      EXPECT_EQ(out.features[s].sizes(),
                (std::vector<int64_t>{2, specs[s].channels, 64 / specs[s].stride, 64 / specs[s].stride}));
    }
    EXPECT_TRUE(torch::isfinite(out.logits).all().item<bool>());
  }
}

TEST(MiT, PresetChannelsAndWidthOption) {
  auto b0 = create_model("segformer_b0", {});
  std::vector<int64_t> channels;
  for (auto s : b0->stages()) channels.push_back(s.channels);
  EXPECT_EQ(channels, (std::vector<int64_t>{16, 32, 64, 128}));
  auto b2 = create_model("segformer_b2", {});
  channels.clear();
  for (auto s : b2->stages()) channels.push_back(s.channels);
  EXPECT_EQ(channels, (std::vector<int64_t>{32, 64, 160, 256}));
  // width 2 doubles every dim (stage 3 of b2: 160 * 2 = 320, a multiple of its 5 heads).
  ModelOptions wide;
  wide.width = 2.0;
  channels.clear();
  for (auto s : create_model("segformer_b2", wide)->stages()) channels.push_back(s.channels);
  EXPECT_EQ(channels, (std::vector<int64_t>{64, 128, 320, 512}));
  // width 0.5 on b0 (heads 1/2/4/8): 8/16/32/64.
  ModelOptions narrow;
  narrow.width = 0.5;
  channels.clear();
  for (auto s : create_model("segformer_b0", narrow)->stages()) channels.push_back(s.channels);
  EXPECT_EQ(channels, (std::vector<int64_t>{8, 16, 32, 64}));
}

TEST(MiT, PresetParameterCounts) {
  MiTOptions b0;  // the defaults are the b0 layout: dims 16/32/64/128, depths 2, sr 4/2/1/1
  auto head = [](const std::vector<int64_t>& dims, int64_t e, int64_t classes) {
    int64_t n = 0;
    for (auto d : dims) n += linear(d, e);
    return n + conv(1, 4 * e, e, 1, false) + 2 * e + conv(1, e, classes);
  };
  const int64_t b0_count = mit_count(b0) + head({16, 32, 64, 128}, 64, 11);
  EXPECT_EQ(count_parameters(*create_model("segformer_b0", {})), b0_count);
  EXPECT_NEAR(b0_count / 1e6, 0.70, 0.01);  // the reference prototype's size
  MiTOptions b2;
  b2.dims = {{32, 64, 160, 256}};
  b2.depths = {{2, 2, 3, 2}};
  b2.heads = {{1, 2, 5, 8}};
  EXPECT_EQ(count_parameters(*create_model("segformer_b2", {})),
            mit_count(b2) + head({32, 64, 160, 256}, 64, 11));
  b2.patch_strides = {{2, 2, 2, 2}};
  b2.sr_ratios = {{2, 1, 1, 1}};
  ModelOptions cls;
  cls.num_classes = 10;
  cls.input_size = 28;
  EXPECT_EQ(count_parameters(*create_model("mit_b2_cls", cls)), mit_count(b2) + linear(256, 10));
}

TEST(MiT, NonSquareInputAndChannels) {
  torch::manual_seed(1);
  ModelOptions options;
  options.in_channels = 3;
  options.num_classes = 5;
  auto model = create_model("segformer_b0", options);
  model->eval();
  auto out = model->forward(torch::randn({1, 3, 96, 64}));
  EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{1, 5, 24, 16}));
  EXPECT_EQ(out.features[3].sizes(), (std::vector<int64_t>{1, 128, 3, 2}));
}

TEST(MiT, ClassificationPresetShapes) {
  torch::manual_seed(2);
  ModelOptions options;
  options.num_classes = 10;
  options.input_size = 28;
  for (const std::string name : {"mit_b0_cls", "mit_b2_cls"}) {
    SCOPED_TRACE(name);
    EXPECT_EQ(find_model(name).task, Task::Classification);
    auto model = create_model(name, options);
    model->eval();
    EXPECT_EQ(model->task(), Task::Classification);
    EXPECT_EQ(model->output_stride(), 0);
    auto out = model->forward(torch::randn({3, 1, 28, 28}));
    EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{3, 10}));
    auto specs = model->stages();
    const int64_t expected_strides[] = {2, 4, 8, 16}, expected_sizes[] = {14, 7, 4, 2};
    ASSERT_EQ(out.features.size(), 4u);
    for (size_t s = 0; s < 4; ++s) {
      EXPECT_EQ(specs[s].stride, expected_strides[s]);
      EXPECT_EQ(out.features[s].sizes(),
                (std::vector<int64_t>{3, specs[s].channels, expected_sizes[s], expected_sizes[s]}));
    }
    // The embedding is the pooled last stage, and the logits are a linear map of it.
    EXPECT_EQ(out.embedding.sizes(), (std::vector<int64_t>{3, specs[3].channels}));
    EXPECT_TRUE(torch::allclose(out.embedding, out.features[3].mean({2, 3}), 1e-6, 1e-6));
    auto& classifier = dynamic_cast<MiTClassifierImpl&>(*model);
    EXPECT_TRUE(torch::allclose(out.logits, classifier.head(out.embedding), 1e-6, 1e-6));
  }
}

TEST(MiT, ParameterCountMatchesClosedForm) {
  MiTOptions o;
  o.in_channels = 3;
  o.dims = {{8, 16, 24, 32}};
  o.depths = {{1, 2, 1, 3}};
  o.heads = {{1, 2, 3, 4}};
  o.sr_ratios = {{4, 2, 1, 1}};
  o.mlp_ratio = 2.0;
  const int64_t decode = 12, classes = 7;
  SegFormer model(o, decode, classes);
  const int64_t head = linear(8, decode) + linear(16, decode) + linear(24, decode) +
                       linear(32, decode) + conv(1, 4 * decode, decode, 1, /*bias=*/false) +
                       /*BatchNorm*/ 2 * decode + conv(1, decode, classes);
  EXPECT_EQ(count_parameters(*model->encoder), mit_count(o));
  EXPECT_EQ(count_parameters(*model), mit_count(o) + head);
  // Worked by hand for stage 1 alone: patch conv 7*7*3*8+8 = 1184, LN 16; one block:
  // 2 LN 32, q 72, kv 144, proj 72, sr 4*4*8*8+8 = 1032 + LN 16, fc1 144, dw 9*16+16 = 160,
  // fc2 136 -> 1808; stage norm 16. Total 3024.
  MiTOptions one = o;
  const int64_t stage1 = 3024;
  one.dims = {{8, 8, 8, 8}};
  one.depths = {{1, 1, 1, 1}};
  one.heads = {{1, 1, 1, 1}};
  one.sr_ratios = {{4, 4, 4, 4}};
  one.patch_kernels = {{7, 7, 7, 7}};
  one.in_channels = 3;
  // Later stages see 8 input channels instead of 3: +7*7*5*8 = 1960 each.
  EXPECT_EQ(count_parameters(*MiTEncoder(one)), 4 * stage1 + 3 * 1960);

  // The classifier adds a Linear on the last stage.
  MiTClassifier classifier(o, classes);
  EXPECT_EQ(count_parameters(*classifier), mit_count(o) + linear(32, classes));
}

TEST(MiT, EfficientAttentionMatchesPerHeadLoop) {
  torch::manual_seed(3);
  for (int64_t sr : {1, 2}) {
    SCOPED_TRACE(sr);
    EfficientSelfAttention attention(12, 3, sr);
    attention->to(torch::kDouble);
    // Random biases and norm affine too, so that every term is exercised.
    {
      torch::NoGradGuard no_grad;
      for (auto& p : attention->parameters()) p.normal_(0.0, 0.5);
    }
    const int64_t h = 4, w = 6;  // non-square to catch transposed layouts
    auto x = torch::randn({2, h * w, 12}, torch::kDouble);
    auto fast = attention(x, h, w);
    auto naive = naive_efficient_attention(*attention, x, h, w);
    ASSERT_EQ(fast.sizes(), naive.sizes());
    EXPECT_LT((fast - naive).abs().max().item<double>(), 1e-5);
    EXPECT_EQ(attention->sr.is_empty(), sr == 1);
  }
}

TEST(DropPath, IdentityInEvalAndScaledInTraining) {
  torch::manual_seed(4);
  DropPath drop(0.25);
  auto x = torch::randn({4000, 3, 2}) + 3.0;
  drop->eval();
  EXPECT_TRUE(torch::equal(drop(x), x));
  drop->train();
  auto y = drop(x);
  // Each sample is either dropped entirely or kept and scaled by 1 / (1 - p).
  int64_t kept = 0;
  for (int64_t i = 0; i < x.size(0); ++i) {
    auto yi = y[i], xi = x[i];
    if (yi.abs().max().item<float>() == 0.0f) continue;
    ++kept;
    ASSERT_TRUE(torch::allclose(yi, xi / 0.75, 1e-6, 1e-6)) << "sample " << i;
  }
  // Binomial(4000, 0.75): mean 3000, std 27.4; 5 std either side.
  EXPECT_GT(kept, 3000 - 137);
  EXPECT_LT(kept, 3000 + 137);
  // p = 0 is the identity even in training.
  DropPath none(0.0);
  none->train();
  EXPECT_TRUE(torch::equal(none(x), x));
  EXPECT_THROW(DropPath(1.0), ConfigError);
}

TEST(MiT, StochasticDepthGrowsLinearly) {
  ModelOptions options;
  options.drop_path = 0.1;
  auto model = create_model("segformer_b2", options);  // depths 2/2/3/2: 9 blocks
  std::vector<double> rates;
  for (const auto& item : model->named_modules()) {
    if (auto* d = item.value()->as<DropPathImpl>()) rates.push_back(d->p());
  }
  ASSERT_EQ(rates.size(), 9u);
  for (size_t i = 0; i < rates.size(); ++i) EXPECT_NEAR(rates[i], 0.1 * i / 8.0, 1e-12);
  // Eval mode is deterministic (no path dropped).
  torch::manual_seed(5);
  auto x = torch::randn({2, 1, 32, 32});
  model->eval();
  auto a = model->forward(x).logits, b = model->forward(x).logits;
  EXPECT_TRUE(torch::equal(a, b));
}

TEST(MiT, TransformerInitialisation) {
  torch::manual_seed(6);
  auto model = create_model("segformer_b2", {});
  int64_t linears = 0;
  for (const auto& m : model->modules()) {
    if (auto* l = m->as<torch::nn::LinearImpl>()) {
      ++linears;
      EXPECT_EQ(l->bias.abs().max().item<float>(), 0.0f);
      EXPECT_LE(l->weight.abs().max().item<float>(), 0.04f + 1e-6f);  // truncated at 2 std
    } else if (auto* ln = m->as<torch::nn::LayerNormImpl>()) {
      EXPECT_TRUE(torch::equal(ln->weight, torch::ones_like(ln->weight)));
      EXPECT_TRUE(torch::equal(ln->bias, torch::zeros_like(ln->bias)));
    }
  }
  EXPECT_GT(linears, 30);
  auto& segformer = dynamic_cast<SegFormerImpl&>(*model);
  // A large linear layer: std of a normal truncated at 2 std is 0.02 * 0.8796.
  auto w = segformer.encoder->named_parameters()["block3.0.mlp.fc1.weight"];
  EXPECT_NEAR(w.std().item<double>(), 0.02 * 0.8796, 0.02 * 0.05);
  // Convolutions: std sqrt(2 / fan_out); the stage-4 patch conv has fan_out 9 * 256.
  auto conv_w = segformer.encoder->named_parameters()["patch_embed4.proj.weight"];
  EXPECT_NEAR(conv_w.std().item<double>(), std::sqrt(2.0 / (9 * 256)), 0.05 * std::sqrt(2.0 / (9 * 256)));
}

TEST(MiT, SegmentationLearnsOnASmallRun) {
  torch::manual_seed(7);
  // Bright squares are class 1, dark squares class 2, the rest background.
  const int64_t n = 8, size = 32;
  auto images = torch::zeros({n, 1, size, size});
  auto labels = torch::zeros({n, size, size}, torch::kLong);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t y = (i * 5) % 16, x = (i * 7) % 16;
    const bool bright = i % 2 == 0;
    images[i].narrow(1, y, 12).narrow(2, x, 12).fill_(bright ? 1.0 : -1.0);
    labels[i].narrow(0, y, 12).narrow(1, x, 12).fill_(bright ? 1 : 2);
  }
  MiTOptions o;
  o.dims = {{8, 16, 16, 16}};
  o.heads = {{1, 1, 2, 2}};
  o.depths = {{1, 1, 1, 1}};
  SegFormer model(o, 16, 3);
  torch::optim::AdamW optimizer(model->parameters(), torch::optim::AdamWOptions(3e-3));
  auto loss_of = [&] {
    auto logits = model->forward(images).logits;
    logits = torch::nn::functional::interpolate(
        logits, torch::nn::functional::InterpolateFuncOptions()
                    .size(std::vector<int64_t>{size, size})
                    .mode(torch::kBilinear)
                    .align_corners(false));
    return torch::nn::functional::cross_entropy(logits, labels);
  };
  model->train();
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    auto loss = loss_of();
    if (step == 0) first = loss.item<double>();
    last = loss.item<double>();
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
  }
  EXPECT_LT(last, 0.35 * first) << "first " << first << " last " << last;
}
