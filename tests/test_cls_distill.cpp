// Classification distillers (dkd, rkd, crd, and ofa / heteroakd on image-level logits), each
// against an explicit-loop computation; then every method built on real zoo classifiers
// (CNN -> Transformer) runs forward and backward with finite terms.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "distillery/core/config.h"
#include "distillery/core/error.h"
#include "distillery/distill/distiller_set.h"
#include "distillery/distill/methods/crd.h"
#include "distillery/distill/methods/heteroakd.h"
#include "distillery/distill/registry.h"
#include "distillery/models/zoo.h"

using namespace distillery;

namespace {

const auto kDouble = torch::TensorOptions().dtype(torch::kDouble);
constexpr int64_t B = 4, C = 5;

DistillerContext cls_context(std::vector<StageSpec> student = {{4, 1}},
                             std::vector<StageSpec> teacher = {{6, 1}}, int64_t dataset_size = 0) {
  DistillerContext ctx;
  ctx.student_stages = std::move(student);
  ctx.teacher_stages = std::move(teacher);
  ctx.num_classes = C;
  ctx.task = Task::Classification;
  ctx.dataset_size = dataset_size;
  return ctx;
}

Distiller build(const std::string& name, const std::string& yaml, const DistillerContext& ctx,
                bool to_double = true) {
  static std::vector<Config> configs;  // keep the consumed-key records alive
  configs.push_back(Config::from_string(yaml.empty() ? "{}" : yaml));
  auto d = create_distiller(name, ctx, configs.back().root());
  EXPECT_NO_THROW(configs.back().check_all_consumed()) << name << ": " << yaml;
  if (to_double) d->to(torch::kDouble);
  return d;
}

std::vector<double> row(const torch::Tensor& m, int64_t i) {
  std::vector<double> out(m.size(1));
  for (int64_t j = 0; j < m.size(1); ++j) out[j] = m[i][j].item<double>();
  return out;
}

std::vector<double> softmax(std::vector<double> z, double T = 1.0) {
  double m = -1e300, s = 0;
  for (auto& v : z) m = std::max(m, v / T);
  for (auto& v : z) s += (v = std::exp(v / T - m));
  for (auto& v : z) v /= s;
  return z;
}

double kl(const std::vector<double>& p, const std::vector<double>& q) {
  double s = 0;
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] > 0) s += p[i] * std::log(p[i] / q[i]);
  return s;
}

double smooth_l1(double x) { return std::abs(x) < 1 ? 0.5 * x * x : std::abs(x) - 0.5; }

struct ClsPair {
  ModelOutput student, teacher;
  Batch batch;
};

ClsPair random_cls_pair() {
  ClsPair p;
  p.student.logits = torch::randn({B, C}, kDouble) * 2;
  p.teacher.logits = torch::randn({B, C}, kDouble) * 2;
  p.student.features = {torch::randn({B, 4, 3, 3}, kDouble)};
  p.teacher.features = {torch::randn({B, 6, 2, 2}, kDouble)};
  p.student.embedding = torch::randn({B, 3}, kDouble);
  p.teacher.embedding = torch::randn({B, 4}, kDouble);
  p.batch.targets = torch::tensor({0, 3, 3, 1}, torch::kLong);
  p.batch.index = torch::tensor({2, 0, 5, 6}, torch::kLong);
  return p;
}

// TCKD and NCKD of one image from probabilities, by hand.
std::pair<double, double> dkd_parts(const std::vector<double>& zs, const std::vector<double>& zt,
                                    int64_t y, double T) {
  auto ps = softmax(zs, T), pt = softmax(zt, T);
  const double bs = ps[y], bt = pt[y];
  const double tckd = bt * std::log(bt / bs) + (1 - bt) * std::log((1 - bt) / (1 - bs));
  std::vector<double> qs, qt;
  for (size_t c = 0; c < ps.size(); ++c)
    if (static_cast<int64_t>(c) != y) qs.push_back(ps[c] / (1 - bs)), qt.push_back(pt[c] / (1 - bt));
  return {tckd, kl(qt, qs)};
}

}  // namespace

TEST(ClsDistill, DkdSplitsKdIntoTargetAndNonTargetParts) {
  torch::manual_seed(1);
  auto p = random_cls_pair();
  const double T = 4, alpha = 1.5, beta = 8;
  auto d = build("dkd", "{alpha: 1.5, warmup_epochs: 0}", cls_context());
  auto terms = d->forward(p.student, p.teacher, p.batch, StepInfo{}).terms;
  double tckd = 0, nckd = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t y = p.batch.targets[b].item<int64_t>();
    auto [t, n] = dkd_parts(row(p.student.logits, b), row(p.teacher.logits, b), y, T);
    tckd += t / B, nckd += n / B;
    // DKD's identity: KD = TCKD + (1 - p_t[y]) NCKD.
    auto pt = softmax(row(p.teacher.logits, b), T);
    EXPECT_NEAR(kl(pt, softmax(row(p.student.logits, b), T)), t + (1 - pt[y]) * n, 1e-12);
  }
  EXPECT_NEAR(terms.at("dkd.tckd").item<double>(), alpha * T * T * tckd, 1e-10);
  EXPECT_NEAR(terms.at("dkd.nckd").item<double>(), beta * T * T * nckd, 1e-10);

  // The paper's linear warm-up, in epochs: step 5 of 2 epochs of 10 steps gives a quarter.
  auto warm = build("dkd", "{warmup_epochs: 2}", cls_context());
  auto early = warm->forward(p.student, p.teacher, p.batch, StepInfo{5, 100, 10}).terms;
  EXPECT_NEAR(early.at("dkd.nckd").item<double>(), 0.25 * beta * T * T * nckd, 1e-10);
  auto late = warm->forward(p.student, p.teacher, p.batch, StepInfo{40, 100, 10}).terms;
  EXPECT_NEAR(late.at("dkd.tckd").item<double>(), T * T * tckd, 1e-10);
}

TEST(ClsDistill, DkdPerPixelLeavesOutIgnoredPixels) {
  torch::manual_seed(2);
  auto s = torch::randn({2, C, 2, 2}, kDouble), t = torch::randn({2, C, 2, 2}, kDouble);
  auto labels = torch::randint(0, C, {2, 2, 2}, torch::kLong);
  labels[0][1][0] = 255;
  ModelOutput so, to;
  so.logits = s;
  to.logits = t;
  Batch batch;
  batch.targets = labels;
  auto ctx = cls_context();
  ctx.task = Task::Segmentation;
  auto terms = build("dkd", "{warmup_epochs: 0, temperature: 2}", ctx)->forward(so, to, batch, StepInfo{}).terms;
  double tckd = 0, nckd = 0, count = 0;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t w = 0; w < 2; ++w) {
        const int64_t y = labels[b][h][w].item<int64_t>();
        if (y == 255) continue;
        std::vector<double> zs(C), zt(C);
        for (int64_t c = 0; c < C; ++c) zs[c] = s[b][c][h][w].item<double>(), zt[c] = t[b][c][h][w].item<double>();
        auto [tc, nc] = dkd_parts(zs, zt, y, 2.0);
        tckd += tc, nckd += nc, count += 1;
      }
  EXPECT_NEAR(terms.at("dkd.tckd").item<double>(), 4 * tckd / count, 1e-10);
  EXPECT_NEAR(terms.at("dkd.nckd").item<double>(), 4 * 8 * nckd / count, 1e-10);
}

TEST(ClsDistill, RkdDistanceAndAngleMatchLoops) {
  torch::manual_seed(3);
  auto p = random_cls_pair();
  auto terms = build("rkd", "", cls_context())->forward(p.student, p.teacher, p.batch, StepInfo{}).terms;
  auto distances = [](const torch::Tensor& e) {
    std::vector<std::vector<double>> d(B, std::vector<double>(B, 0.0));
    double sum = 0;
    for (int64_t i = 0; i < B; ++i)
      for (int64_t j = 0; j < B; ++j) {
        double s = 0;
        for (int64_t k = 0; k < e.size(1); ++k) s += std::pow(e[i][k].item<double>() - e[j][k].item<double>(), 2);
        d[i][j] = std::sqrt(s);
        if (i != j) sum += d[i][j];
      }
    for (auto& r : d)
      for (auto& v : r) v /= sum / (B * (B - 1));
    return d;
  };
  auto angles = [](const torch::Tensor& e) {
    std::vector<double> a;
    const int64_t D = e.size(1);
    for (int64_t i = 0; i < B; ++i)
      for (int64_t j = 0; j < B; ++j)
        for (int64_t k = 0; k < B; ++k) {
          double uv = 0, uu = 0, vv = 0;
          for (int64_t x = 0; x < D; ++x) {
            const double u = e[j][x].item<double>() - e[i][x].item<double>();
            const double v = e[k][x].item<double>() - e[i][x].item<double>();
            uv += u * v, uu += u * u, vv += v * v;
          }
          a.push_back(j == i || k == i ? 0.0 : uv / std::sqrt(uu * vv));
        }
    return a;
  };
  auto ds = distances(p.student.embedding), dt = distances(p.teacher.embedding);
  double distance = 0;
  for (int64_t i = 0; i < B; ++i)
    for (int64_t j = 0; j < B; ++j) distance += smooth_l1(ds[i][j] - dt[i][j]) / (B * B);
  auto as = angles(p.student.embedding), at = angles(p.teacher.embedding);
  double angle = 0;
  for (size_t i = 0; i < as.size(); ++i) angle += smooth_l1(as[i] - at[i]) / as.size();
  EXPECT_NEAR(terms.at("rkd.distance").item<double>(), 25 * distance, 1e-9);
  EXPECT_NEAR(terms.at("rkd.angle").item<double>(), 50 * angle, 1e-9);
  ASSERT_GT(angle, 1e-3);
  // The relations are scale-free: a scaled copy of the teacher's embedding costs nothing.
  p.student.embedding = 3 * p.teacher.embedding;
  for (const auto& [name, value] : build("rkd", "", cls_context())->forward(p.student, p.teacher, p.batch, StepInfo{}).terms)
    EXPECT_NEAR(value.item<double>(), 0.0, 1e-9) << name;
}

TEST(ClsDistill, CrdNceLossMatchesLoops) {
  auto scores = torch::rand({3, 5}, kDouble) * 1e-3;
  const int64_t N = 40;
  const double noise = 4.0 / N, eps = 1e-7;
  double expected = 0;
  for (int64_t b = 0; b < 3; ++b) {
    const double pos = scores[b][0].item<double>();
    expected -= std::log(pos / (pos + noise + eps));
    for (int64_t k = 1; k < 5; ++k) expected -= std::log(noise / (scores[b][k].item<double>() + noise + eps));
  }
  EXPECT_NEAR(crd_nce_loss(scores, N).item<double>(), expected / 3, 1e-10);
}

TEST(ClsDistill, CrdScoresAgainstTheOtherSidesBankAndUpdatesBothBanks) {
  torch::manual_seed(4);
  const int64_t N = 7, K = 3;
  auto ctx = cls_context({{3, 1}}, {{4, 1}}, N);
  CrdOptions o;
  o.feat_dim = 4;
  o.negatives = K;
  CrdImpl crd(ctx, o);
  crd.to(torch::kDouble);
  auto s_emb = torch::randn({2, 3}, kDouble), t_emb = torch::randn({2, 4}, kDouble);
  auto index = torch::tensor({5, 1}, torch::kLong);
  auto rows = torch::tensor({{5, 0, 6, 5}, {1, 2, 2, 4}}, torch::kLong);
  auto student_memory = crd.student_memory.clone(), teacher_memory = crd.teacher_memory.clone();
  auto v_s = torch::nn::functional::normalize(crd.student_head->forward(s_emb), torch::nn::functional::NormalizeFuncOptions().dim(1)).detach();
  auto v_t = torch::nn::functional::normalize(crd.teacher_head->forward(t_emb), torch::nn::functional::NormalizeFuncOptions().dim(1)).detach();
  auto loss = crd.compute(s_emb, t_emb, index, rows).item<double>();

  // Scores by loops: the student's embedding against the teacher bank and vice versa.
  auto scores = [&](const torch::Tensor& memory, const torch::Tensor& v) {
    auto out = torch::zeros({2, K + 1}, kDouble);
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t k = 0; k <= K; ++k) {
        double dot = 0;
        for (int64_t x = 0; x < 4; ++x) dot += memory[rows[b][k].item<int64_t>()][x].item<double>() * v[b][x].item<double>();
        out[b][k] = std::exp(dot / 0.07);
      }
    return out;
  };
  auto s_scores = scores(teacher_memory, v_s), t_scores = scores(student_memory, v_t);
  const double z_s = s_scores.mean().item<double>() * N, z_t = t_scores.mean().item<double>() * N;
  EXPECT_NEAR(crd.normaliser[0].item<double>(), z_s, 1e-9 * z_s);
  EXPECT_NEAR(crd.normaliser[1].item<double>(), z_t, 1e-9 * z_t);
  const double expected = crd_nce_loss(s_scores / z_s, N).item<double>() + crd_nce_loss(t_scores / z_t, N).item<double>();
  EXPECT_NEAR(loss, expected, 1e-9);

  // Memory rows of the batch move halfway (momentum 0.5) to the new embedding, renormalised;
  // the others stay.
  for (int64_t b = 0; b < 2; ++b) {
    const int64_t i = index[b].item<int64_t>();
    auto mixed = 0.5 * student_memory[i] + 0.5 * v_s[b];
    EXPECT_TRUE(torch::allclose(crd.student_memory[i], mixed / mixed.norm(), 1e-12, 1e-12));
    auto mixed_t = 0.5 * teacher_memory[i] + 0.5 * v_t[b];
    EXPECT_TRUE(torch::allclose(crd.teacher_memory[i], mixed_t / mixed_t.norm(), 1e-12, 1e-12));
  }
  EXPECT_TRUE(torch::equal(crd.student_memory[3], student_memory[3]));
  // Z is fixed by the first batch.
  crd.compute(s_emb * 2, t_emb, index, rows);
  EXPECT_NEAR(crd.normaliser[0].item<double>(), z_s, 1e-9 * z_s);
}

TEST(ClsDistill, CrdRejectsIndicesOutsideTheBankAndSegmentation) {
  auto ctx = cls_context({{3, 1}}, {{4, 1}}, 5);
  auto d = build("crd", "{negatives: 2, feat_dim: 4}", ctx);
  auto p = random_cls_pair();
  EXPECT_THROW(d->forward(p.student, p.teacher, p.batch, StepInfo{}), Error);  // index 6 >= 5
  p.batch.index = torch::tensor({0, 1, 2, 4}, torch::kLong);
  auto terms = d->forward(p.student, p.teacher, p.batch, StepInfo{}).terms;
  EXPECT_TRUE(std::isfinite(terms.at("crd").item<double>()));
  auto seg = ctx;
  seg.task = Task::Segmentation;
  EXPECT_THROW(build("crd", "", seg), ConfigError);
}

TEST(ClsDistill, OfaBranchesPoolStageMapsToImageLogits) {
  torch::manual_seed(5);
  auto p = random_cls_pair();
  auto d = build("ofa", "{stages: [0], projector: linear, eps: 1.5}", cls_context());
  auto terms = d->forward(p.student, p.teacher, p.batch, StepInfo{}).terms;
  torch::Tensor weight, bias;
  for (const auto& item : d->named_parameters()) {
    if (item.key().find("weight") != std::string::npos) weight = item.value().detach().reshape({C, 4});
    if (item.key().find("bias") != std::string::npos) bias = item.value().detach();
  }
  ASSERT_TRUE(weight.defined() && bias.defined());
  auto ofa_term = [&](const torch::Tensor& logits) {
    double sum = 0;
    for (int64_t b = 0; b < B; ++b) {
      auto ps = softmax(row(logits, b)), pt = softmax(row(p.teacher.logits, b));
      const int64_t y = p.batch.targets[b].item<int64_t>();
      for (int64_t c = 0; c < C; ++c) {
        const double onehot = c == y ? 1.0 : 0.0;
        sum -= (std::pow(pt[c] + onehot, 1.5) - onehot) * std::log(ps[c]);
      }
    }
    return sum / B;
  };
  // Branch: the 1x1 conv of the mean feature vector.
  auto branch = torch::zeros({B, C}, kDouble);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c) {
      double z = bias[c].item<double>();
      for (int64_t k = 0; k < 4; ++k) z += weight[c][k].item<double>() * p.student.features[0][b][k].mean().item<double>();
      branch[b][c] = z;
    }
  EXPECT_NEAR(terms.at("ofa").item<double>(), ofa_term(p.student.logits) + ofa_term(branch), 1e-10);
}

TEST(ClsDistill, HeteroAkdOnImageLogitsMixesPerImageAndWeighsTheBatch) {
  torch::manual_seed(6);
  auto p = random_cls_pair();
  auto ctx = cls_context({{4, 1}}, {{6, 1}});
  HeteroAKDOptions options;
  options.student_stages = {0};
  options.teacher_stages = {0};
  HeteroAKDImpl distiller(ctx, options);
  distiller.to(torch::kDouble);
  auto terms = distiller.forward(p.student, p.teacher, p.batch, StepInfo{}).terms;

  // Projections by hand: linear map of the pooled stage features.
  auto project = [&](const torch::nn::Sequential& proj, const torch::Tensor& f) {
    auto params = proj->parameters();
    auto w = params[0].detach().reshape({C, -1}), bias = params[1].detach();
    std::vector<std::vector<double>> z(B, std::vector<double>(C));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c) {
        z[b][c] = bias[c].item<double>();
        for (int64_t k = 0; k < f.size(1); ++k) z[b][c] += w[c][k].item<double>() * f[b][k].mean().item<double>();
      }
    return z;
  };
  auto zs = project(distiller.student_projectors()[0], p.student.features[0]);
  auto zt = project(distiller.teacher_projectors()[0], p.teacher.features[0]);
  const double T = 4;
  double proj = 0;
  std::vector<double> discrepancy(B);
  std::vector<std::vector<double>> mix(B, std::vector<double>(C));
  for (int64_t b = 0; b < B; ++b) {
    const int64_t y = p.batch.targets[b].item<int64_t>();
    const double ce_s = -std::log(softmax(zs[b])[y]), ce_t = -std::log(softmax(zt[b])[y]);
    proj += (ce_s + ce_t) / B;
    const double w_t = std::exp(-ce_t) / (std::exp(-ce_t) + std::exp(-ce_s));
    for (int64_t c = 0; c < C; ++c) mix[b][c] = w_t * zt[b][c] + (1 - w_t) * zs[b][c];
    discrepancy[b] = kl(softmax(mix[b], T), softmax(zs[b], T));
  }
  // KEM: B * softmax of the discrepancies over the batch's images.
  double norm = 0;
  for (double v : discrepancy) norm += std::exp(v);
  double mix_loss = 0, kd = 0;
  for (int64_t b = 0; b < B; ++b) {
    mix_loss += B * std::exp(discrepancy[b]) / norm * T * T * discrepancy[b] / B;
    kd += kl(softmax(row(p.teacher.logits, b)), softmax(row(p.student.logits, b))) / B;
  }
  EXPECT_NEAR(terms.at("heteroakd.proj").item<double>(), proj, 1e-10);
  EXPECT_NEAR(terms.at("heteroakd.mix").item<double>(), mix_loss, 1e-10);
  EXPECT_NEAR(terms.at("heteroakd.kd").item<double>(), 0.1 * kd, 1e-10);
}

// Every classification method, as the results script configures it, on real zoo models
// (ResNet-18 teacher, ViT-tiny student): finite terms and a gradient in the student.
TEST(ClsDistill, EveryMethodRunsOnZooClassifiers) {
  torch::manual_seed(7);
  ModelOptions mo;
  mo.num_classes = 10;
  mo.input_size = 28;
  auto teacher = create_model("resnet18_cls", mo);
  auto student = create_model("vit_tiny_cls", mo);
  teacher->eval();
  DistillerContext ctx;
  ctx.student_stages = student->stages();
  ctx.teacher_stages = teacher->stages();
  ctx.num_classes = 10;
  ctx.task = Task::Classification;
  ctx.dataset_size = 100;
  Batch batch;
  batch.images = torch::randn({4, 1, 28, 28});
  batch.targets = torch::tensor({1, 7, 7, 0}, torch::kLong);
  batch.index = torch::tensor({3, 99, 0, 42}, torch::kLong);
  ModelOutput t_out;
  {
    torch::NoGradGuard no_grad;
    t_out = teacher->forward(batch.images);
  }
  for (const std::string yaml :
       {"{name: kd}", "{name: dkd}", "{name: dist}", "{name: ofa}", "{name: fitnet}",
        "{name: at}", "{name: rkd}", "{name: crd, negatives: 16}", "{name: heteroakd}",
        "{name: skd, grid: 2}"}) {
    Config config = Config::from_string("distillers:\n  - " + yaml);
    DistillerSet set(config.root().section_list("distillers"), ctx);
    student->zero_grad();
    auto s_out = student->forward(batch.images);
    // Past DKD's warm-up (20 epochs of 10 steps).
    auto terms = set->forward(s_out, t_out, batch, StepInfo{1000, 2000, 10});
    ASSERT_FALSE(terms.terms.empty()) << yaml;
    for (const auto& [name, value] : terms.terms) EXPECT_TRUE(std::isfinite(value.item<double>())) << yaml << " " << name;
    terms.total().backward();
    double grad = 0;
    for (const auto& p : student->parameters())
      if (p.grad().defined()) grad += p.grad().abs().sum().item<double>();
    EXPECT_GT(grad, 0.0) << yaml;
  }
}
