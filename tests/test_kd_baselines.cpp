// Segmentation KD baselines (kd, cwd, dist, at, fitnet, skd, ofa) built through the registry,
// each against an explicit loop computation, at zero when student equals teacher, and (cwd,
// dist) with gradients against finite differences.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <vector>

#include "distillery/core/config.h"
#include "distillery/distill/registry.h"

using namespace distillery;

namespace {

const auto kDouble = torch::TensorOptions().dtype(torch::kDouble);

// Student: logits 4x4, stages 4ch@4x4 and 6ch@2x2. Teacher: everything at twice the
// resolution (logits 8x8, stages 5ch@8x8 and 7ch@4x4), so resizing is always exercised.
// Targets are 8x8 (the "image").
constexpr int64_t B = 2, C = 3;

DistillerContext context_for(std::vector<StageSpec> student, std::vector<StageSpec> teacher) {
  DistillerContext ctx;
  ctx.student_stages = std::move(student);
  ctx.teacher_stages = std::move(teacher);
  ctx.num_classes = C;
  return ctx;
}
DistillerContext default_context() { return context_for({{4, 2}, {6, 4}}, {{5, 1}, {7, 2}}); }

struct Pair {
  ModelOutput student, teacher;
  Batch batch;
};

Pair random_pair() {
  Pair p;
  p.student.logits = torch::randn({B, C, 4, 4}, kDouble) * 2;
  p.student.features = {torch::randn({B, 4, 4, 4}, kDouble), torch::randn({B, 6, 2, 2}, kDouble)};
  p.teacher.logits = torch::randn({B, C, 8, 8}, kDouble) * 2;
  p.teacher.features = {torch::randn({B, 5, 8, 8}, kDouble), torch::randn({B, 7, 4, 4}, kDouble)};
  p.batch.targets = torch::randint(0, C, {B, 8, 8}, torch::kLong);
  p.batch.targets.masked_fill_(torch::rand({B, 8, 8}) < 0.3, 255);
  p.batch.targets[0][0][0] = 255;  // student pixel (0, 0, 0) is ignored for sure
  p.batch.targets[0][0][2] = 1;
  return p;
}

// Student == teacher at the student's resolution.
Pair identical_pair() {
  Pair p = random_pair();
  p.teacher = p.student;
  return p;
}

Distiller build(const std::string& name, const std::string& yaml, const DistillerContext& ctx,
                Config* keep = nullptr) {
  static std::vector<Config> configs;  // keep the consumed-key records alive
  configs.push_back(Config::from_string(yaml.empty() ? "{}" : yaml));
  auto d = create_distiller(name, ctx, configs.back().root());
  EXPECT_NO_THROW(configs.back().check_all_consumed()) << name << ": " << yaml;
  d->to(torch::kDouble);
  return d;
}

double run(const Distiller& d, const Pair& p, const std::string& key) {
  auto terms = d->forward(p.student, p.teacher, p.batch, StepInfo{}).terms;
  EXPECT_EQ(terms.size(), 1u);
  EXPECT_TRUE(terms.count(key)) << key;
  return terms.at(key).item<double>();
}

// 2x bilinear downsampling without aligned corners averages 2x2 blocks (factor f: f x f).
double block_mean(const torch::Tensor& map, int64_t b, int64_t c, int64_t h, int64_t w, int64_t f) {
  auto a = map.accessor<double, 4>();
  double s = 0;
  for (int64_t i = 0; i < f; ++i)
    for (int64_t j = 0; j < f; ++j) s += a[b][c][h * f + i][w * f + j];
  return s / (f * f);
}

// Label of student pixel (h, w) at a map of size `size` from 8x8 targets (nearest).
int64_t label_at(const torch::Tensor& targets, int64_t b, int64_t h, int64_t w, int64_t size) {
  const int64_t f = 8 / size;
  return targets[b][h * f][w * f].item<int64_t>();
}

std::vector<double> softmax(std::vector<double> z, double T) {
  double m = -1e300, s = 0;
  for (auto& v : z) m = std::max(m, v / T);
  for (auto& v : z) s += (v = std::exp(v / T - m));
  for (auto& v : z) v /= s;
  return z;
}

// Teacher logits downsampled to 4x4 and student logits, per pixel, as class vectors.
std::vector<double> class_vector(const torch::Tensor& logits, int64_t b, int64_t h, int64_t w, int64_t f) {
  std::vector<double> z(C);
  for (int64_t c = 0; c < C; ++c) z[c] = block_mean(logits, b, c, h, w, f);
  return z;
}

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = static_cast<double>(x.size());
  double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < x.size(); ++i) mx += x[i] / n, my += y[i] / n;
  for (size_t i = 0; i < x.size(); ++i)
    sxy += (x[i] - mx) * (y[i] - my), sxx += (x[i] - mx) * (x[i] - mx), syy += (y[i] - my) * (y[i] - my);
  return sxy / std::sqrt(sxx * syy);
}

// Autograd gradient of loss(student.logits) against central differences.
void expect_gradient_matches_fd(const Distiller& d, Pair p, const std::string& key) {
  auto x = p.student.logits.clone().requires_grad_(true);
  p.student.logits = x;
  d->forward(p.student, p.teacher, p.batch, StepInfo{}).terms.at(key).backward();
  auto grad = x.grad().clone();
  ASSERT_GT(grad.abs().sum().item<double>(), 0.0);
  const double h = 1e-6;
  auto flat = p.student.logits.detach().clone().reshape({-1});
  for (int64_t i = 0; i < flat.numel(); ++i) {
    auto eval = [&](double delta) {
      auto probe = flat.clone();
      probe[i] += delta;
      Pair q = p;
      q.student.logits = probe.reshape(x.sizes());
      return d->forward(q.student, q.teacher, q.batch, StepInfo{}).terms.at(key).item<double>();
    };
    const double fd = (eval(h) - eval(-h)) / (2 * h);
    EXPECT_NEAR(grad.reshape({-1})[i].item<double>(), fd, 1e-7) << key << " element " << i;
  }
}

int64_t parameter_count(const Distiller& d) {
  int64_t n = 0;
  for (const auto& p : d->parameters()) n += p.numel();
  return n;
}

}  // namespace

TEST(KdBaselines, PixelKdMatchesLoops) {
  torch::manual_seed(0);
  auto p = random_pair();
  for (double T : {1.0, 2.0}) {
    auto d = build("kd", T == 1.0 ? "" : "{temperature: 2}", default_context());
    double sum = 0;
    int count = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < 4; ++h)
        for (int64_t w = 0; w < 4; ++w) {
          if (label_at(p.batch.targets, b, h, w, 4) == 255) continue;
          auto ps = softmax(class_vector(p.student.logits, b, h, w, 1), T);
          auto pt = softmax(class_vector(p.teacher.logits, b, h, w, 2), T);
          for (int64_t c = 0; c < C; ++c) sum += pt[c] * std::log(pt[c] / ps[c]);
          ++count;
        }
    ASSERT_LT(count, B * 16);
    EXPECT_NEAR(run(d, p, "kd"), T * T * sum / count, 1e-12) << "T " << T;
  }
  EXPECT_NEAR(run(build("kd", "", default_context()), identical_pair(), "kd"), 0.0, 1e-14);
}

TEST(KdBaselines, PixelKdOnClassificationLogitsUsesT4) {
  torch::manual_seed(1);
  auto ctx = default_context();
  ctx.task = Task::Classification;
  auto d = build("kd", "", ctx);
  Pair p;
  p.student.logits = torch::randn({3, 5}, kDouble) * 3;
  p.teacher.logits = torch::randn({3, 5}, kDouble) * 3;
  p.batch.targets = torch::zeros({3}, torch::kLong);
  double sum = 0;
  for (int64_t b = 0; b < 3; ++b) {
    std::vector<double> zs(5), zt(5);
    for (int64_t c = 0; c < 5; ++c) zs[c] = p.student.logits[b][c].item<double>(), zt[c] = p.teacher.logits[b][c].item<double>();
    auto ps = softmax(zs, 4), pt = softmax(zt, 4);
    for (int64_t c = 0; c < 5; ++c) sum += pt[c] * std::log(pt[c] / ps[c]) / 3;
  }
  EXPECT_NEAR(run(d, p, "kd"), 16 * sum, 1e-12);
}

TEST(KdBaselines, CwdOnLogitsMatchesLoops) {
  torch::manual_seed(2);
  auto p = random_pair();
  auto d = build("cwd", "", default_context());  // T = 4, loss_weight 3, ignore masked
  const double T = 4;
  double sum = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c) {
      double zs = 0, zt = 0;
      for (int64_t h = 0; h < 4; ++h)
        for (int64_t w = 0; w < 4; ++w)
          if (label_at(p.batch.targets, b, h, w, 4) != 255)
            zs += std::exp(p.student.logits[b][c][h][w].item<double>() / T),
                zt += std::exp(block_mean(p.teacher.logits, b, c, h, w, 2) / T);
      for (int64_t h = 0; h < 4; ++h)
        for (int64_t w = 0; w < 4; ++w) {
          if (label_at(p.batch.targets, b, h, w, 4) == 255) continue;
          const double ps = std::exp(p.student.logits[b][c][h][w].item<double>() / T) / zs;
          const double pt = std::exp(block_mean(p.teacher.logits, b, c, h, w, 2) / T) / zt;
          sum += pt * std::log(pt / ps);
        }
    }
  EXPECT_NEAR(run(d, p, "cwd"), 3.0 * T * T * sum / (C * B), 1e-12);
  EXPECT_NEAR(run(d, identical_pair(), "cwd"), 0.0, 1e-13);
  EXPECT_EQ(parameter_count(d), 0);
}

TEST(KdBaselines, CwdGradientMatchesFiniteDifferences) {
  torch::manual_seed(3);
  expect_gradient_matches_fd(build("cwd", "{temperature: 2}", default_context()), random_pair(), "cwd");
}

TEST(KdBaselines, CwdOnFeaturesAlignsChannelsWithWeight50) {
  torch::manual_seed(4);
  auto d = build("cwd", "{on: features, stage: 0, teacher_stage: -1, mask_ignore: false}", default_context());
  EXPECT_EQ(parameter_count(d), 4 * 7 + 7);  // 1x1 aligner 4 -> 7 channels
  // Equal channels: with an identity aligner the loss is 50 x CWD of the raw maps.
  auto same = build("cwd", "{on: features, mask_ignore: false}", context_for({{4, 2}, {6, 4}}, {{5, 1}, {6, 2}}));
  {
    torch::NoGradGuard no_grad;
    auto params = same->named_parameters();
    params["aligner.0.weight"].copy_(torch::eye(6, kDouble).reshape({6, 6, 1, 1}));
    params["aligner.0.bias"].zero_();
  }
  auto p = random_pair();
  p.teacher.features[1] = torch::randn({B, 6, 4, 4}, kDouble);
  const double T = 4;
  double sum = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < 6; ++c) {
      double zs = 0, zt = 0;
      for (int64_t h = 0; h < 2; ++h)
        for (int64_t w = 0; w < 2; ++w)
          zs += std::exp(p.student.features[1][b][c][h][w].item<double>() / T),
              zt += std::exp(block_mean(p.teacher.features[1], b, c, h, w, 2) / T);
      for (int64_t h = 0; h < 2; ++h)
        for (int64_t w = 0; w < 2; ++w) {
          const double ps = std::exp(p.student.features[1][b][c][h][w].item<double>() / T) / zs;
          const double pt = std::exp(block_mean(p.teacher.features[1], b, c, h, w, 2) / T) / zt;
          sum += pt * std::log(pt / ps);
        }
    }
  EXPECT_NEAR(run(same, p, "cwd"), 50.0 * T * T * sum / (6 * B), 1e-12);
  p.teacher.features[1] = p.student.features[1];
  EXPECT_NEAR(run(same, p, "cwd"), 0.0, 1e-13);
}

TEST(KdBaselines, DistMatchesLoops) {
  torch::manual_seed(5);
  auto p = random_pair();
  auto d = build("dist", "{beta: 2.0, gamma: 0.5}", default_context());
  std::vector<std::vector<double>> ps, pt;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < 4; ++h)
      for (int64_t w = 0; w < 4; ++w)
        if (label_at(p.batch.targets, b, h, w, 4) != 255)
          ps.push_back(softmax(class_vector(p.student.logits, b, h, w, 1), 1)),
              pt.push_back(softmax(class_vector(p.teacher.logits, b, h, w, 2), 1));
  double inter = 0, intra = 0;
  for (size_t i = 0; i < ps.size(); ++i) inter += (1 - pearson(ps[i], pt[i])) / ps.size();
  for (int64_t c = 0; c < C; ++c) {
    std::vector<double> xs, xt;
    for (size_t i = 0; i < ps.size(); ++i) xs.push_back(ps[i][c]), xt.push_back(pt[i][c]);
    intra += (1 - pearson(xs, xt)) / C;
  }
  EXPECT_NEAR(run(d, p, "dist"), 2.0 * inter + 0.5 * intra, 1e-12);
  EXPECT_NEAR(run(build("dist", "", default_context()), identical_pair(), "dist"), 0.0, 1e-12);
}

TEST(KdBaselines, DistGradientMatchesFiniteDifferences) {
  torch::manual_seed(6);
  expect_gradient_matches_fd(build("dist", "{temperature: 2}", default_context()), random_pair(), "dist");
}

TEST(KdBaselines, AttentionTransferMatchesLoopsWithBeta1000) {
  torch::manual_seed(7);
  auto p = random_pair();
  auto d = build("at", "", default_context());  // stages -2, -1 of each
  double expected = 0;
  for (int64_t k = 0; k < 2; ++k) {
    const auto& fs = p.student.features[k];
    const auto& ft = p.teacher.features[k];
    const int64_t n = fs.size(2);
    // Teacher channel energy at its resolution, then averaged over 2x2 blocks.
    auto energy_t = ft.pow(2).mean(1, true);
    double sq = 0;
    for (int64_t b = 0; b < B; ++b) {
      std::vector<double> as, at;
      double ns = 0, nt = 0;
      for (int64_t h = 0; h < n; ++h)
        for (int64_t w = 0; w < n; ++w) {
          double e = 0;
          for (int64_t c = 0; c < fs.size(1); ++c) e += std::pow(fs[b][c][h][w].item<double>(), 2) / fs.size(1);
          as.push_back(e), ns += e * e;
          at.push_back(block_mean(energy_t, b, 0, h, w, 2)), nt += at.back() * at.back();
        }
      for (size_t i = 0; i < as.size(); ++i) sq += std::pow(as[i] / std::sqrt(ns) - at[i] / std::sqrt(nt), 2);
    }
    expected += sq / (B * n * n);
  }
  EXPECT_NEAR(run(d, p, "at"), 1000.0 * expected, 1e-9);
  auto same = identical_pair();
  EXPECT_NEAR(run(build("at", "{student_stages: [0, 1], teacher_stages: [0, 1]}", context_for({{4, 2}, {6, 4}}, {{4, 2}, {6, 4}})),
                  same, "at"),
              0.0, 1e-12);
  Config bad = Config::from_string("{student_stages: [-1], teacher_stages: [0, 1]}");
  EXPECT_THROW(create_distiller("at", default_context(), bad.root()), ConfigError);
}

TEST(KdBaselines, FitNetMatchesLoopsAndIsZeroWithIdentityRegressor) {
  torch::manual_seed(8);
  auto p = random_pair();
  auto d = build("fitnet", "", default_context());  // last stage: 6 -> 7 channels
  EXPECT_EQ(parameter_count(d), 6 * 7 + 7);
  auto params = d->named_parameters();
  auto weight = params["regressor.0.weight"], bias = params["regressor.0.bias"];
  double sum = 0;
  int count = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t w = 0; w < 2; ++w) {
        if (label_at(p.batch.targets, b, h, w, 2) == 255) continue;
        double pixel = 0;
        for (int64_t o = 0; o < 7; ++o) {
          double r = bias[o].item<double>();
          for (int64_t i = 0; i < 6; ++i) r += weight[o][i][0][0].item<double>() * p.student.features[1][b][i][h][w].item<double>();
          pixel += std::pow(r - block_mean(p.teacher.features[1], b, o, h, w, 2), 2) / 7;
        }
        sum += pixel, ++count;
      }
  ASSERT_GT(count, 0);
  EXPECT_NEAR(run(d, p, "fitnet"), sum / count, 1e-12);

  auto same = build("fitnet", "{stage: 0, teacher_stage: 0}", context_for({{4, 2}, {6, 4}}, {{4, 2}, {7, 4}}));
  {
    torch::NoGradGuard no_grad;
    same->named_parameters()["regressor.0.weight"].copy_(torch::eye(4, kDouble).reshape({4, 4, 1, 1}));
    same->named_parameters()["regressor.0.bias"].zero_();
  }
  auto q = identical_pair();
  EXPECT_NEAR(run(same, q, "fitnet"), 0.0, 1e-14);
  // The regressor learns: its weight gets a gradient.
  q.student.features[0] = q.student.features[0] + 0.1;
  same->forward(q.student, q.teacher, q.batch, StepInfo{}).terms.at("fitnet").backward();
  EXPECT_GT(same->named_parameters()["regressor.0.weight"].grad().abs().sum().item<double>(), 0.0);
}

TEST(KdBaselines, PairwiseSkdMatchesLoops) {
  torch::manual_seed(9);
  auto p = random_pair();
  auto d = build("skd", "{grid: 2, stage: 0, teacher_stage: 0}", default_context());
  // Student 4x4 -> 2x2 via max over 2x2 blocks; teacher 8x8 -> 2x2 via max over 4x4 blocks.
  auto pooled = [](const torch::Tensor& f, int64_t b, int64_t pos, int64_t block) {
    std::vector<double> v(f.size(1), -1e300);
    for (int64_t c = 0; c < f.size(1); ++c)
      for (int64_t i = 0; i < block; ++i)
        for (int64_t j = 0; j < block; ++j)
          v[c] = std::max(v[c], f[b][c][(pos / 2) * block + i][(pos % 2) * block + j].item<double>());
    return v;
  };
  auto cosine = [](const std::vector<double>& x, const std::vector<double>& y) {
    double d = 0, nx = 0, ny = 0;
    for (size_t i = 0; i < x.size(); ++i) d += x[i] * y[i], nx += x[i] * x[i], ny += y[i] * y[i];
    return d / std::sqrt(nx * ny);
  };
  double sum = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 4; ++j) {
        const double s = cosine(pooled(p.student.features[0], b, i, 2), pooled(p.student.features[0], b, j, 2));
        const double t = cosine(pooled(p.teacher.features[0], b, i, 4), pooled(p.teacher.features[0], b, j, 4));
        sum += (s - t) * (s - t);
      }
  EXPECT_NEAR(run(d, p, "skd"), sum / (B * 16), 1e-12);
  EXPECT_NEAR(run(build("skd", "", default_context()), identical_pair(), "skd"), 0.0, 1e-14);
  Config bad = Config::from_string("{pool: median}");
  EXPECT_THROW(create_distiller("skd", default_context(), bad.root()), ConfigError);
}

TEST(KdBaselines, OfaMatchesLoopsOnBranchAndFinalLogits) {
  torch::manual_seed(10);
  auto p = random_pair();
  // Branch on stage 0 (4 channels at 4x4, the student logits' resolution), linear projector.
  auto ctx = context_for({{4, 2}, {6, 4}}, {{5, 1}, {7, 2}});
  const double eps = 1.3, T = 2.0;
  auto d = build("ofa", "{stages: [0], projector: linear, eps: 1.3, temperature: 2}", ctx);
  EXPECT_EQ(parameter_count(d), 4 * C + C);
  auto params = d->named_parameters();
  auto weight = params["branch0.0.weight"], bias = params["branch0.0.bias"];
  auto term = [&](const std::function<std::vector<double>(int64_t, int64_t, int64_t)>& student_z) {
    double sum = 0;
    int count = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < 4; ++h)
        for (int64_t w = 0; w < 4; ++w) {
          const int64_t y = label_at(p.batch.targets, b, h, w, 4);
          if (y == 255) continue;
          auto ps = softmax(student_z(b, h, w), T);
          auto pt = softmax(class_vector(p.teacher.logits, b, h, w, 2), T);
          for (int64_t c = 0; c < C; ++c) {
            const double onehot = c == y ? 1.0 : 0.0;
            sum -= (std::pow(pt[c] + onehot, eps) - onehot) * std::log(ps[c]);
          }
          ++count;
        }
    return sum / count;
  };
  const double final_term = term([&](int64_t b, int64_t h, int64_t w) { return class_vector(p.student.logits, b, h, w, 1); });
  const double branch_term = term([&](int64_t b, int64_t h, int64_t w) {
    std::vector<double> z(C);
    for (int64_t c = 0; c < C; ++c) {
      z[c] = bias[c].item<double>();
      for (int64_t i = 0; i < 4; ++i) z[c] += weight[c][i][0][0].item<double>() * p.student.features[0][b][i][h][w].item<double>();
    }
    return z;
  });
  EXPECT_NEAR(run(d, p, "ofa"), final_term + branch_term, 1e-12);

  // Default: branches on stages -3 and -2 (conv-BN-ReLU), here of a 3-stage student.
  auto three = context_for({{4, 2}, {6, 4}, {8, 8}}, {{5, 1}});
  auto defaults = build("ofa", "", three);
  EXPECT_EQ(parameter_count(defaults), (9 * 4 * 4 + 2 * 4 + 4 * C + C) + (9 * 6 * 6 + 2 * 6 + 6 * C + C));
}

TEST(KdBaselines, BadHyperParametersAreConfigErrors) {
  for (const auto& [name, yaml] : std::vector<std::pair<std::string, std::string>>{
           {"kd", "{temperature: 0}"}, {"cwd", "{temperature: -1}"}, {"cwd", "{on: features, stage: 5}"},
           {"dist", "{beta: -1}"}, {"fitnet", "{stage: -3}"}, {"skd", "{grid: 0}"}, {"ofa", "{eps: 0}"},
           {"ofa", "{projector: mlp}"}}) {
    Config config = Config::from_string(yaml);
    EXPECT_THROW(create_distiller(name, default_context(), config.root()), ConfigError) << name << " " << yaml;
  }
}
