// Reusable distiller components against explicit loops and hand-worked values.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "distillery/core/config.h"
#include "distillery/distill/components/losses.h"
#include "distillery/distill/components/projector.h"
#include "distillery/distill/components/schedule.h"
#include "distillery/distill/components/tap.h"

using namespace distillery;

namespace {

const auto kDouble = torch::TensorOptions().dtype(torch::kDouble);

// Random labels in [0, classes) with about a quarter of the pixels set to 255.
torch::Tensor random_targets(int64_t B, int64_t H, int64_t W, int64_t classes) {
  auto labels = torch::randint(0, classes, {B, H, W}, torch::kLong);
  auto ignore = torch::rand({B, H, W}) < 0.25;
  labels.masked_fill_(ignore, 255);
  labels[0][0][0] = 255;  // at least one ignored and one kept pixel
  labels[0][0][1] = 1;
  return labels;
}

std::vector<double> softmax_at(const torch::Tensor& z, int64_t b, int64_t h, int64_t w, double T) {
  auto a = z.accessor<double, 4>();
  const int64_t C = z.size(1);
  double m = -1e300;
  for (int64_t c = 0; c < C; ++c) m = std::max(m, a[b][c][h][w] / T);
  std::vector<double> p(C);
  double sum = 0;
  for (int64_t c = 0; c < C; ++c) sum += (p[c] = std::exp(a[b][c][h][w] / T - m));
  for (auto& v : p) v /= sum;
  return p;
}

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = static_cast<double>(x.size());
  double mx = 0, my = 0;
  for (size_t i = 0; i < x.size(); ++i) mx += x[i] / n, my += y[i] / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  return sxy / std::sqrt(sxx * syy);
}

}  // namespace

TEST(DistillComponents, PixelKlMatchesLoopsWithIgnoredPixels) {
  torch::manual_seed(0);
  const int64_t B = 2, C = 3, H = 4, W = 4;
  const double T = 2.0;
  auto s = torch::randn({B, C, H, W}, kDouble) * 2;
  auto t = torch::randn({B, C, H, W}, kDouble) * 2;
  auto targets = random_targets(B, H, W, C);
  auto lab = targets.accessor<int64_t, 3>();
  double sum = 0;
  int count = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t w = 0; w < W; ++w) {
        if (lab[b][h][w] == 255) continue;
        auto ps = softmax_at(s, b, h, w, T), pt = softmax_at(t, b, h, w, T);
        for (int64_t c = 0; c < C; ++c) sum += pt[c] * (std::log(pt[c]) - std::log(ps[c]));
        ++count;
      }
  ASSERT_GT(count, 0);
  ASSERT_LT(count, B * H * W);
  const double expected = T * T * sum / count;
  auto mask = valid_pixel_mask(targets, {H, W});
  EXPECT_NEAR(pixel_kl(s, t, T, mask).item<double>(), expected, 1e-12);
  EXPECT_NEAR(pixel_kl(s, s, T, mask).item<double>(), 0.0, 1e-14);
  // Undefined mask: every pixel counts.
  EXPECT_NEAR(pixel_kl(s, t, T, {}).item<double>(), T * T * pixel_kl_map(s, t, T).mean().item<double>(), 1e-14);
}

TEST(DistillComponents, LabelsResizeNearestAndMaskIgnores) {
  auto targets = torch::arange(16, torch::kLong).reshape({1, 4, 4});
  targets[0][2][2] = 255;
  auto small = resize_labels(targets, {2, 2});
  // Nearest with scale 2 picks source rows/cols 0 and 2.
  EXPECT_EQ(small[0][0][0].item<int64_t>(), 0);
  EXPECT_EQ(small[0][0][1].item<int64_t>(), 2);
  EXPECT_EQ(small[0][1][0].item<int64_t>(), 8);
  EXPECT_EQ(small[0][1][1].item<int64_t>(), 255);
  auto mask = valid_pixel_mask(targets, {2, 2});
  EXPECT_EQ(mask.scalar_type(), torch::kBool);
  EXPECT_EQ(mask.sum().item<int64_t>(), 3);
  EXPECT_FALSE(mask[0][1][1].item<bool>());
  // Classification targets give no mask.
  EXPECT_FALSE(batch_valid_mask(torch::zeros({3}, torch::kLong), {1, 1}).defined());
}

TEST(DistillComponents, ResizeToIsBilinearWithoutAlignedCorners) {
  auto map = torch::tensor({0.0, 1.0}, kDouble).reshape({1, 1, 1, 2});
  auto up = resize_to(map, {1, 4});
  // Source x = (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 -> clamped 0, 0.25, 0.75, 1.
  std::vector<double> expected{0.0, 0.25, 0.75, 1.0};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(up[0][0][0][i].item<double>(), expected[i], 1e-12);
  auto same = resize_to(map, {1, 2});
  EXPECT_TRUE(same.is_same(map));
  // Halving averages 2x2 blocks.
  auto big = torch::randn({1, 2, 4, 4}, kDouble);
  auto down = resize_to(big, {2, 2});
  EXPECT_NEAR(down[0][1][1][0].item<double>(),
              (big[0][1][2][0] + big[0][1][2][1] + big[0][1][3][0] + big[0][1][3][1]).item<double>() / 4, 1e-12);
}

TEST(DistillComponents, MaskedMeanWithNoValidPixelIsZeroWithFiniteGradient) {
  auto values = torch::randn({1, 2, 2}, kDouble).requires_grad_(true);
  auto none = torch::zeros({1, 2, 2}, torch::kBool);
  auto loss = masked_mean(values, none);
  EXPECT_EQ(loss.item<double>(), 0.0);
  loss.backward();
  EXPECT_EQ(values.grad().abs().sum().item<double>(), 0.0);
  auto some = torch::tensor({true, false, false, true}).reshape({1, 2, 2});
  EXPECT_NEAR(masked_mean(values, some).item<double>(),
              (values[0][0][0] + values[0][1][1]).item<double>() / 2, 1e-14);
}

TEST(DistillComponents, PixelCrossEntropyMatchesLoopsAndIsZeroAtIgnore) {
  torch::manual_seed(1);
  const int64_t B = 2, C = 3, H = 4, W = 4;
  auto z = torch::randn({B, C, H, W}, kDouble);
  auto targets = random_targets(B, H, W, C);
  auto ce = pixel_cross_entropy_map(z, targets);
  ASSERT_EQ(ce.sizes(), (std::vector<int64_t>{B, H, W}));
  auto lab = targets.accessor<int64_t, 3>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t w = 0; w < W; ++w) {
        const double expected = lab[b][h][w] == 255 ? 0.0 : -std::log(softmax_at(z, b, h, w, 1.0)[lab[b][h][w]]);
        EXPECT_NEAR(ce[b][h][w].item<double>(), expected, 1e-12);
      }
}

TEST(DistillComponents, ChannelKlMatchesLoopsWithAndWithoutMask) {
  torch::manual_seed(2);
  const int64_t B = 2, C = 3, H = 4, W = 4;
  const double T = 4.0;
  auto s = torch::randn({B, C, H, W}, kDouble) * 3;
  auto t = torch::randn({B, C, H, W}, kDouble) * 3;
  auto targets = random_targets(B, H, W, C);
  auto lab = targets.accessor<int64_t, 3>();
  auto as = s.accessor<double, 4>(), at = t.accessor<double, 4>();
  for (bool use_mask : {false, true}) {
    double sum = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c) {
        // Spatial softmax over the kept positions.
        double zs = 0, zt = 0;
        for (int64_t h = 0; h < H; ++h)
          for (int64_t w = 0; w < W; ++w)
            if (!use_mask || lab[b][h][w] != 255) zs += std::exp(as[b][c][h][w] / T), zt += std::exp(at[b][c][h][w] / T);
        for (int64_t h = 0; h < H; ++h)
          for (int64_t w = 0; w < W; ++w) {
            if (use_mask && lab[b][h][w] == 255) continue;
            const double ps = std::exp(as[b][c][h][w] / T) / zs, pt = std::exp(at[b][c][h][w] / T) / zt;
            sum += pt * (std::log(pt) - std::log(ps));
          }
      }
    const double expected = T * T * sum / (C * B);
    auto mask = use_mask ? valid_pixel_mask(targets, {H, W}) : torch::Tensor();
    EXPECT_NEAR(channel_kl(s, t, T, mask).item<double>(), expected, 1e-12) << "mask " << use_mask;
    EXPECT_NEAR(channel_kl(t, t, T, mask).item<double>(), 0.0, 1e-14);
  }
}

TEST(DistillComponents, DistRelationsMatchLoops) {
  torch::manual_seed(3);
  const int64_t B = 2, C = 3, H = 4, W = 4;
  const double T = 2.0;
  auto s = torch::randn({B, C, H, W}, kDouble) * 2;
  auto t = torch::randn({B, C, H, W}, kDouble) * 2;
  auto targets = random_targets(B, H, W, C);
  auto lab = targets.accessor<int64_t, 3>();
  std::vector<std::vector<double>> ps_rows, pt_rows;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t w = 0; w < W; ++w)
        if (lab[b][h][w] != 255) ps_rows.push_back(softmax_at(s, b, h, w, T)), pt_rows.push_back(softmax_at(t, b, h, w, T));
  double inter = 0;
  for (size_t i = 0; i < ps_rows.size(); ++i) inter += (1 - pearson(ps_rows[i], pt_rows[i])) / ps_rows.size();
  double intra = 0;
  for (int64_t c = 0; c < C; ++c) {
    std::vector<double> xs, xt;
    for (size_t i = 0; i < ps_rows.size(); ++i) xs.push_back(ps_rows[i][c]), xt.push_back(pt_rows[i][c]);
    intra += (1 - pearson(xs, xt)) / C;
  }
  auto terms = dist_relations(s, t, T, valid_pixel_mask(targets, {H, W}));
  EXPECT_NEAR(terms.inter.item<double>(), T * T * inter, 1e-12);
  EXPECT_NEAR(terms.intra.item<double>(), T * T * intra, 1e-12);
  auto same = dist_relations(s, s, T, valid_pixel_mask(targets, {H, W}));
  EXPECT_NEAR(same.inter.item<double>(), 0.0, 1e-12);
  EXPECT_NEAR(same.intra.item<double>(), 0.0, 1e-12);
}

TEST(DistillComponents, AttentionPoolingAndSimilarityMatchLoops) {
  torch::manual_seed(4);
  auto f = torch::randn({2, 3, 4, 4}, kDouble);
  auto a = f.accessor<double, 4>();
  auto att = attention_map(f);
  auto flat = normalised_flat(att);
  ASSERT_EQ(flat.sizes(), (std::vector<int64_t>{2, 16}));
  for (int64_t b = 0; b < 2; ++b) {
    std::vector<double> m(16);
    double norm = 0;
    for (int64_t h = 0; h < 4; ++h)
      for (int64_t w = 0; w < 4; ++w) {
        for (int64_t c = 0; c < 3; ++c) m[h * 4 + w] += a[b][c][h][w] * a[b][c][h][w] / 3;
        norm += m[h * 4 + w] * m[h * 4 + w];
      }
    for (int64_t i = 0; i < 16; ++i) {
      EXPECT_NEAR(att[b][0][i / 4][i % 4].item<double>(), m[i], 1e-12);
      EXPECT_NEAR(flat[b][i].item<double>(), m[i] / std::sqrt(norm), 1e-12);
    }
  }
  auto pooled_max = pool_to_grid(f, 2, true), pooled_avg = pool_to_grid(f, 2, false);
  double mx = -1e300, avg = 0;
  for (int64_t h = 2; h < 4; ++h)
    for (int64_t w = 0; w < 2; ++w) mx = std::max(mx, a[1][2][h][w]), avg += a[1][2][h][w] / 4;
  EXPECT_NEAR(pooled_max[1][2][1][0].item<double>(), mx, 1e-12);
  EXPECT_NEAR(pooled_avg[1][2][1][0].item<double>(), avg, 1e-12);

  auto sim = cosine_similarity_matrix(f);
  ASSERT_EQ(sim.sizes(), (std::vector<int64_t>{2, 16, 16}));
  for (int64_t i : {0, 5, 15})
    for (int64_t j : {0, 3, 10}) {
      double dot = 0, ni = 0, nj = 0;
      for (int64_t c = 0; c < 3; ++c) {
        const double x = a[1][c][i / 4][i % 4], y = a[1][c][j / 4][j % 4];
        dot += x * y, ni += x * x, nj += y * y;
      }
      EXPECT_NEAR(sim[1][i][j].item<double>(), dot / std::sqrt(ni * nj), 1e-12);
    }
}

TEST(DistillComponents, PearsonOfConstantRowHasFiniteGradient) {
  auto a = torch::full({1, 4}, 0.25, kDouble).requires_grad_(true);
  auto b = torch::tensor({0.1, 0.2, 0.3, 0.4}, kDouble).reshape({1, 4});
  auto r = pearson_rows(a, b);
  EXPECT_EQ(r.item<double>(), 0.0);
  r.sum().backward();
  EXPECT_TRUE(torch::isfinite(a.grad()).all().item<bool>());
}

TEST(DistillComponents, LinearWarmupSchedule) {
  EXPECT_DOUBLE_EQ(linear_warmup_factor(0, 0), 1.0);
  EXPECT_DOUBLE_EQ(linear_warmup_factor(7, 0), 1.0);
  EXPECT_DOUBLE_EQ(linear_warmup_factor(0, 10), 0.0);
  EXPECT_DOUBLE_EQ(linear_warmup_factor(5, 10), 0.5);
  EXPECT_DOUBLE_EQ(linear_warmup_factor(10, 10), 1.0);
  EXPECT_DOUBLE_EQ(linear_warmup_factor(25, 10), 1.0);
  StepInfo step;
  step.step = 3;
  EXPECT_DOUBLE_EQ((WeightSchedule{2.0, 4}.at(step)), 1.5);
}

TEST(DistillComponents, ProjectorParameterCounts) {
  auto count = [](const torch::nn::Sequential& m) {
    int64_t n = 0;
    for (const auto& p : m->parameters()) n += p.numel();
    return n;
  };
  const int64_t in = 6, out = 5;
  EXPECT_EQ(count(make_projector(in, out, ProjectorKind::Linear)), in * out + out);
  EXPECT_EQ(count(make_aligner(in, out)), in * out + out);
  EXPECT_EQ(count(make_projector(in, out, ProjectorKind::ConvBnRelu)), 9 * in * in + 2 * in + in * out + out);
  auto y = make_projector(in, out, ProjectorKind::ConvBnRelu)->forward(torch::randn({2, in, 4, 4}));
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, out, 4, 4}));
}

TEST(DistillComponents, TapsResolveStagesAndRejectBadOnes) {
  std::vector<StageSpec> stages{{8, 4}, {16, 8}, {32, 16}};
  auto config = Config::from_string("a: {on: features, stage: -2}\nb: {on: features, stage: 3}\n"
                                    "c: {}\nd: {on: aux_logits}\ne: {on: feature}\n");
  auto root = config.root();
  auto tap = FeatureTap::parse(root.section("a"), stages, "logits", -1);
  EXPECT_EQ(tap.kind, FeatureTap::Kind::Features);
  EXPECT_EQ(tap.stage, 1);
  EXPECT_EQ(tap.channels(stages, 11), 16);
  EXPECT_EQ(tap.describe(), "features[1]");
  EXPECT_THROW(FeatureTap::parse(root.section("b"), stages, "logits", -1), ConfigError);
  EXPECT_THROW(FeatureTap::parse(root.section("e"), stages, "logits", -1), ConfigError);
  auto logits_tap = FeatureTap::parse(root.section("c"), stages, "logits", -1);
  EXPECT_EQ(logits_tap.channels(stages, 11), 11);

  ModelOutput output;
  output.logits = torch::zeros({1, 11, 2, 2});
  output.features = {torch::zeros({1, 8, 8, 8}), torch::ones({1, 16, 4, 4}), torch::zeros({1, 32, 2, 2})};
  EXPECT_TRUE(tap.read(output).is_same(output.features[1]));
  EXPECT_TRUE(logits_tap.read(output).is_same(output.logits));
  EXPECT_THROW(FeatureTap::parse(root.section("d"), stages, "logits", -1).read(output), Error);

  EXPECT_EQ(resolve_stage_index(root, "x", -3, 3), 0);
  EXPECT_EQ(resolve_stage_index(root, "x", 2, 3), 2);
  EXPECT_THROW(resolve_stage_index(root, "x", -4, 3), ConfigError);
}
