// HeteroAKD: mixing weights, detached targets, KEM weights, the mix loss against explicit
// loops, finite-difference gradients, and a frozen teacher whose projectors still learn.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "distillery/core/config.h"
#include "distillery/distill/methods/heteroakd.h"
#include "distillery/distill/registry.h"

using namespace distillery;

namespace {

const auto kDouble = torch::TensorOptions().dtype(torch::kDouble);

DistillerContext tiny_context(int64_t num_classes = 3) {
  DistillerContext context;
  context.student_stages = {{4, 2}, {6, 4}};
  context.teacher_stages = {{5, 4}, {3, 8}};
  context.num_classes = num_classes;
  return context;
}

HeteroAKDOptions options_from(const std::string& yaml, const DistillerContext& context = tiny_context()) {
  Config config = Config::from_string(yaml.empty() ? "{}" : yaml);
  return HeteroAKDOptions::from_config(config.root(), context);
}

std::shared_ptr<HeteroAKDImpl> make_heteroakd(const std::string& yaml,
                                              const DistillerContext& context = tiny_context()) {
  Config config = Config::from_string(yaml.empty() ? "{}" : yaml);
  auto distiller = std::dynamic_pointer_cast<HeteroAKDImpl>(make_heteroakd_distiller(context, config.root()));
  config.check_all_consumed();
  return distiller;
}

// Labels [B, h, w] in [0, C) with about a quarter of the pixels ignored.
torch::Tensor random_labels(int64_t B, int64_t h, int64_t w, int64_t C) {
  auto labels = torch::randint(0, C, {B, h, w}, torch::kLong);
  return labels.masked_fill(torch::rand({B, h, w}) < 0.25, kIgnoreLabel);
}

// --- explicit per-pixel reference ---------------------------------------------------------

double log_sum_exp(const std::vector<double>& z) {
  double m = z[0];
  for (double v : z) m = std::max(m, v);
  double s = 0;
  for (double v : z) s += std::exp(v - m);
  return m + std::log(s);
}

std::vector<double> log_softmax(const std::vector<double>& z, double T) {
  std::vector<double> scaled(z.size());
  for (size_t c = 0; c < z.size(); ++c) scaled[c] = z[c] / T;
  double lse = log_sum_exp(scaled);
  for (auto& v : scaled) v -= lse;
  return scaled;
}

double reliability_of(const std::vector<double>& z, int64_t y, const std::string& kind) {
  if (kind == "ce") return log_sum_exp(z) - z[y];
  double sum = 0;
  for (size_t c = 0; c < z.size(); ++c)
    sum += std::log1p(std::exp(z[c])) - (static_cast<int64_t>(c) == y ? z[c] : 0.0);
  return sum;
}

std::vector<double> pixel(const torch::Tensor& z, int64_t b, int64_t i, int64_t j) {
  std::vector<double> v(z.size(1));
  for (int64_t c = 0; c < z.size(1); ++c) v[c] = z[b][c][i][j].item<double>();
  return v;
}

struct PixelRef {
  double w_t = 0;
  std::vector<double> z_mix, d;  // d: per-class KL contributions
  double D = 0;
};

PixelRef pixel_reference(const std::vector<double>& zs, const std::vector<double>& zt, int64_t y,
                         const HeteroAKDOptions& o) {
  PixelRef r;
  r.w_t = 1.0;
  if (o.kmm) {
    double a = std::exp(-reliability_of(zt, y, o.reliability) / o.tau);
    double b = std::exp(-reliability_of(zs, y, o.reliability) / o.tau);
    r.w_t = a / (a + b);
  }
  for (size_t c = 0; c < zs.size(); ++c) r.z_mix.push_back(r.w_t * zt[c] + (1 - r.w_t) * zs[c]);
  auto lm = log_softmax(r.z_mix, o.temperature);
  auto ls = log_softmax(zs, o.temperature);
  for (size_t c = 0; c < zs.size(); ++c) {
    r.d.push_back(std::exp(lm[c]) * (lm[c] - ls[c]));
    r.D += r.d.back();
  }
  return r;
}

// The mix loss with loops over images, pixels and classes.
double mix_loss_reference(const torch::Tensor& zs, const torch::Tensor& zt, const torch::Tensor& labels,
                          const HeteroAKDOptions& o) {
  const int64_t B = zs.size(0), C = zs.size(1), H = zs.size(2), W = zs.size(3);
  const double T = o.temperature;
  double total = 0;
  int64_t count = 0;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<PixelRef> refs;
    double exp_sum = 0;
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j) {
        int64_t y = labels[b][i][j].item<int64_t>();
        if (y == kIgnoreLabel) continue;
        refs.push_back(pixel_reference(pixel(zs, b, i, j), pixel(zt, b, i, j), y, o));
        exp_sum += std::exp(refs.back().D);
      }
    for (const auto& r : refs) {
      double per_pixel = 0;
      if (!o.kem) {
        per_pixel = r.D;
      } else if (o.kem_axis == "pixels") {
        per_pixel = static_cast<double>(refs.size()) * std::exp(r.D) / exp_sum * r.D;
      } else {
        double class_sum = 0;
        for (double v : r.d) class_sum += std::exp(v);
        for (int64_t c = 0; c < C; ++c) per_pixel += C * std::exp(r.d[c]) / class_sum * r.d[c];
      }
      total += T * T * per_pixel;
      ++count;
    }
  }
  return count == 0 ? 0.0 : total / static_cast<double>(count);
}

// Central finite differences of f at x (double).
torch::Tensor finite_difference(const std::function<double()>& f, torch::Tensor x, double eps = 1e-6) {
  auto grad = torch::zeros_like(x);
  auto flat = x.view({-1});
  auto g = grad.view({-1});
  torch::NoGradGuard no_grad;
  for (int64_t k = 0; k < flat.numel(); ++k) {
    double saved = flat[k].item<double>();
    flat[k] = saved + eps;
    double up = f();
    flat[k] = saved - eps;
    double down = f();
    flat[k] = saved;
    g[k] = (up - down) / (2 * eps);
  }
  return grad;
}

}  // namespace

TEST(HeteroAKD, MixingWeightsSumToOneAndFavourTheReliableSide) {
  // Pixel (0,0) and (0,1): the teacher is right, the student wrong; pixel (1,0): the reverse;
  // pixel (1,1) is ignored.
  auto labels = torch::tensor({0, 1, 2, 255}, torch::kLong).reshape({1, 2, 2});
  auto z_t = torch::zeros({1, 3, 2, 2}, kDouble);
  auto z_s = torch::zeros({1, 3, 2, 2}, kDouble);
  z_t[0][0][0][0] = 6.0;  z_s[0][2][0][0] = 6.0;
  z_t[0][1][0][1] = 5.0;  z_s[0][0][0][1] = 5.0;
  z_t[0][0][1][0] = 4.0;  z_s[0][2][1][0] = 7.0;
  for (std::string kind : {"ce", "bce"}) {
    auto o = options_from("reliability: " + kind + "\ntau: 0.5\n");
    auto mix = heteroakd_mix(z_s, z_t, labels, o);
    EXPECT_TRUE(torch::allclose(mix.w_t + mix.w_s, torch::ones({1, 2, 2}, kDouble), 0, 1e-12)) << kind;
    EXPECT_GT(mix.w_t[0][0][0].item<double>(), 0.99) << kind;
    EXPECT_GT(mix.w_t[0][0][1].item<double>(), 0.99) << kind;
    EXPECT_GT(mix.w_s[0][1][0].item<double>(), 0.99) << kind;
    for (int64_t p = 0; p < 3; ++p) {
      int64_t i = p / 2, j = p % 2;
      auto ref = pixel_reference(pixel(z_s, 0, i, j), pixel(z_t, 0, i, j), labels[0][i][j].item<int64_t>(), o);
      EXPECT_NEAR(mix.w_t[0][i][j].item<double>(), ref.w_t, 1e-12) << kind;
      for (int64_t c = 0; c < 3; ++c)
        EXPECT_NEAR(mix.z_mix[0][c][i][j].item<double>(), ref.z_mix[c], 1e-12) << kind;
    }
  }
  // A higher tau flattens the weights towards 1/2.
  auto sharp = heteroakd_mix(z_s, z_t, labels, options_from("tau: 0.5\n"));
  auto flat = heteroakd_mix(z_s, z_t, labels, options_from("tau: 50\n"));
  EXPECT_LT(flat.w_t[0][0][0].item<double>(), sharp.w_t[0][0][0].item<double>());
  EXPECT_GT(flat.w_t[0][0][0].item<double>(), 0.5);
}

TEST(HeteroAKD, MixedTargetCarriesNoGradient) {
  torch::manual_seed(1);
  auto z_s = torch::randn({2, 4, 3, 3}, kDouble).requires_grad_(true);
  auto z_t = torch::randn({2, 4, 3, 3}, kDouble).requires_grad_(true);
  auto labels = random_labels(2, 3, 3, 4);
  auto o = options_from("temperature: 2\n");
  auto mix = heteroakd_mix(z_s, z_t, labels, o);
  EXPECT_FALSE(mix.z_mix.requires_grad());
  EXPECT_FALSE(mix.weights.requires_grad());
  EXPECT_FALSE(mix.w_t.requires_grad());
  auto loss = heteroakd_mix_loss(z_s, mix, o);
  loss.backward();
  // z_t reaches the loss only through the mix: no gradient at all.
  EXPECT_TRUE(!z_t.grad().defined() || z_t.grad().abs().max().item<double>() == 0.0);
  // z_s: only the direct path, T * W * (p_s - p_mix) / #valid, as if the mix were a constant.
  const double T = o.temperature;
  auto valid = (labels != kIgnoreLabel).to(torch::kDouble);
  auto expected = T * mix.weights.unsqueeze(1) * valid.unsqueeze(1) *
                  (torch::softmax(z_s.detach() / T, 1) - torch::softmax(mix.z_mix / T, 1)) / valid.sum();
  EXPECT_TRUE(torch::allclose(z_s.grad(), expected, 1e-10, 1e-12));
}

TEST(HeteroAKD, KemWeightsHaveMeanOnePerImageOverValidPixels) {
  torch::manual_seed(2);
  const int64_t B = 3, C = 5, H = 4, W = 3;
  auto z_s = torch::randn({B, C, H, W}, kDouble) * 2;
  auto z_t = torch::randn({B, C, H, W}, kDouble) * 2;
  auto labels = random_labels(B, H, W, C);
  labels[2].fill_(kIgnoreLabel);  // an image without any valid pixel
  auto o = options_from("temperature: 1.5\n");
  auto mix = heteroakd_mix(z_s, z_t, labels, o);
  auto valid = labels != kIgnoreLabel;
  for (int64_t b = 0; b < 2; ++b) {
    auto w = mix.weights[b].masked_select(valid[b]);
    EXPECT_NEAR(w.mean().item<double>(), 1.0, 1e-12);
    EXPECT_GT((w.max() - w.min()).item<double>(), 1e-3);  // not uniform
    // W = n * exp(D) / sum exp(D) over the image's valid pixels.
    std::vector<double> D;
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j)
        if (valid[b][i][j].item<bool>())
          D.push_back(pixel_reference(pixel(z_s, b, i, j), pixel(z_t, b, i, j), labels[b][i][j].item<int64_t>(), o).D);
    double sum = 0;
    for (double d : D) sum += std::exp(d);
    for (size_t k = 0; k < D.size(); ++k)
      EXPECT_NEAR(w[k].item<double>(), D.size() * std::exp(D[k]) / sum, 1e-10);
  }
  EXPECT_EQ(mix.weights.masked_select(valid.logical_not()).abs().sum().item<double>(), 0.0);
  EXPECT_FALSE(torch::isnan(mix.weights).any().item<bool>());

  // Classes axis: per valid pixel, the class weights average 1.
  auto by_class = heteroakd_mix(z_s, z_t, labels, options_from("kem_axis: classes\n"));
  ASSERT_EQ(by_class.weights.dim(), 4);
  auto class_mean = by_class.weights.mean(1);
  EXPECT_TRUE(torch::allclose(class_mean.masked_select(valid), torch::ones({valid.sum().item<int64_t>()}, kDouble), 0, 1e-12));
  // kem false: uniform ones.
  auto uniform = heteroakd_mix(z_s, z_t, labels, options_from("kem: false\n"));
  EXPECT_TRUE(torch::equal(uniform.weights, valid.to(torch::kDouble)));
}

TEST(HeteroAKD, MixLossMatchesExplicitLoops) {
  torch::manual_seed(3);
  const int64_t B = 2, C = 4, H = 3, W = 4;
  auto z_s = torch::randn({B, C, H, W}, kDouble) * 2;
  auto z_t = torch::randn({B, C, H, W}, kDouble) * 2;
  auto labels = random_labels(B, H, W, C);
  for (std::string yaml : {"", "tau: 0.7\ntemperature: 2\n", "reliability: bce\n", "kem_axis: classes\n",
                           "kem: false\n", "kmm: false\n", "kmm: false\nkem: false\ntemperature: 1\n"}) {
    auto o = options_from(yaml);
    auto loss = heteroakd_mix_loss(z_s, heteroakd_mix(z_s, z_t, labels, o), o).item<double>();
    EXPECT_NEAR(loss, mix_loss_reference(z_s, z_t, labels, o), 1e-10) << yaml;
    EXPECT_GT(loss, 0.0) << yaml;
  }
}

TEST(HeteroAKD, WithoutKmmTheTargetIsTheTeacherProjection) {
  torch::manual_seed(4);
  auto z_s = torch::randn({2, 3, 2, 2}, kDouble);
  auto z_t = torch::randn({2, 3, 2, 2}, kDouble);
  auto labels = random_labels(2, 2, 2, 3);
  auto mix = heteroakd_mix(z_s, z_t, labels, options_from("kmm: false\n"));
  EXPECT_TRUE(torch::equal(mix.z_mix, z_t));
  EXPECT_TRUE(torch::equal(mix.w_t, torch::ones({2, 2, 2}, kDouble)));
  EXPECT_TRUE(torch::equal(mix.w_s, torch::zeros({2, 2, 2}, kDouble)));
  // And with it, a student equal to its target pays nothing.
  auto o = options_from("kmm: false\n");
  EXPECT_NEAR(heteroakd_mix_loss(z_t, heteroakd_mix(z_t, z_t, labels, o), o).item<double>(), 0.0, 1e-14);
}

namespace {

struct TinyOutputs {
  ModelOutput student, teacher;
  torch::Tensor targets;
};

// Two student stages (4 ch at stride 2, 6 at 4) and two teacher stages (5 at 4, 3 at 8) of a
// 16x16 input; student logits at stride 2, teacher logits at stride 4.
TinyOutputs tiny_outputs(int64_t C) {
  TinyOutputs out;
  const int64_t B = 2;
  out.student.features = {torch::randn({B, 4, 8, 8}, kDouble), torch::randn({B, 6, 4, 4}, kDouble)};
  out.teacher.features = {torch::randn({B, 5, 4, 4}, kDouble), torch::randn({B, 3, 2, 2}, kDouble)};
  out.student.logits = torch::randn({B, C, 8, 8}, kDouble);
  out.teacher.logits = torch::randn({B, C, 4, 4}, kDouble) * 2;
  out.targets = random_labels(B, 16, 16, C);
  return out;
}

void check_gradients_against_finite_differences(const std::string& yaml) {
  torch::manual_seed(5);
  const int64_t C = 3;
  auto distiller = make_heteroakd(yaml);
  distiller->to(torch::kDouble);
  auto data = tiny_outputs(C);
  for (auto& f : data.student.features) f.requires_grad_(true);
  data.student.logits.requires_grad_(true);

  // The mixed targets and KEM weights are constants of the loss: freeze them for the
  // finite differences, as the analytic gradient does.
  std::vector<KnowledgeMix> mixes;
  auto terms = distiller->compute(data.student, data.teacher, data.targets, &mixes);
  ASSERT_EQ(mixes.size(), distiller->options().student_stages.size());
  terms.total().backward();
  auto loss_at = [&]() {
    return distiller->compute(data.student, data.teacher, data.targets, &mixes).total().item<double>();
  };
  std::vector<torch::Tensor> inputs;
  for (auto stage : distiller->options().student_stages) inputs.push_back(data.student.features[stage]);
  inputs.push_back(data.student.logits);
  for (auto& x : inputs) {
    auto numeric = finite_difference(loss_at, x.detach());
    ASSERT_TRUE(x.grad().defined());
    EXPECT_GT(x.grad().abs().max().item<double>(), 1e-6) << yaml;
    EXPECT_TRUE(torch::allclose(x.grad(), numeric, 1e-5, 1e-8))
        << yaml << " max error " << (x.grad() - numeric).abs().max().item<double>();
  }
}

}  // namespace

TEST(HeteroAKD, GradientMatchesFiniteDifferences) {
  check_gradients_against_finite_differences("lambda_feat: 0.5\nlambda_kd: 0.3\nkd_temperature: 2\n");
  check_gradients_against_finite_differences("projector: conv\nkem_axis: classes\nreliability: bce\n");
  check_gradients_against_finite_differences("kmm: false\nkem: false\nstudent_stages: [0]\nteacher_stages: [-1]\n");
}

TEST(HeteroAKD, ForwardWiresStagesProjectorsAndTerms) {
  torch::manual_seed(6);
  const int64_t C = 3;
  auto distiller = make_heteroakd("lambda_proj: 0.5\nlambda_mix: 2\n");
  distiller->to(torch::kDouble);
  auto data = tiny_outputs(C);
  Batch batch{torch::zeros({2, 1, 16, 16}), data.targets, torch::arange(2)};
  auto terms = distiller->forward(data.student, data.teacher, batch, StepInfo{});
  EXPECT_EQ(terms.terms.count("heteroakd.proj"), 1u);
  EXPECT_EQ(terms.terms.count("heteroakd.mix"), 1u);
  EXPECT_EQ(terms.terms.count("heteroakd.kd"), 1u);
  EXPECT_EQ(terms.terms.count("heteroakd.feat"), 0u);

  // Projector CE by hand: labels sampled nearest (every s-th pixel), CE averaged over valid.
  auto ce_of = [&](const torch::Tensor& z) {
    const int64_t s = 16 / z.size(2);
    double sum = 0;
    int64_t n = 0;
    for (int64_t b = 0; b < z.size(0); ++b)
      for (int64_t i = 0; i < z.size(2); ++i)
        for (int64_t j = 0; j < z.size(3); ++j) {
          int64_t y = data.targets[b][i * s][j * s].item<int64_t>();
          if (y == kIgnoreLabel) continue;
          auto v = pixel(z, b, i, j);
          sum += log_sum_exp(v) - v[y];
          ++n;
        }
    return sum / n;
  };
  torch::NoGradGuard no_grad;
  double proj = 0, mix_loss = 0;
  auto o = distiller->options();
  for (int k = 0; k < 2; ++k) {
    torch::nn::Sequential student_projector = distiller->student_projectors()[k];
    torch::nn::Sequential teacher_projector = distiller->teacher_projectors()[k];
    auto z_s = student_projector->forward(data.student.features[k]);
    auto z_t = teacher_projector->forward(data.teacher.features[k]);
    EXPECT_EQ(z_s.size(1), C);
    proj += ce_of(z_s) + ce_of(z_t);
    // The teacher projection comes to the student's resolution bilinearly.
    auto z_t_up = torch::nn::functional::interpolate(
        z_t, torch::nn::functional::InterpolateFuncOptions()
                 .size(std::vector<int64_t>{z_s.size(2), z_s.size(3)})
                 .mode(torch::kBilinear)
                 .align_corners(false));
    const int64_t s = 16 / z_s.size(2);
    auto labels_s = data.targets.index({torch::indexing::Slice(), torch::indexing::Slice(0, 16, s),
                                        torch::indexing::Slice(0, 16, s)});
    mix_loss += mix_loss_reference(z_s, z_t_up, labels_s, o);
  }
  EXPECT_NEAR(terms.terms["heteroakd.proj"].item<double>(), 0.5 * proj, 1e-9);
  EXPECT_NEAR(terms.terms["heteroakd.mix"].item<double>(), 2.0 * mix_loss, 1e-9);

  auto no_kd = make_heteroakd("lambda_kd: 0\nlambda_feat: 1\n");
  no_kd->to(torch::kDouble);
  auto terms2 = no_kd->forward(data.student, data.teacher, batch, StepInfo{});
  EXPECT_EQ(terms2.terms.count("heteroakd.kd"), 0u);
  EXPECT_EQ(terms2.terms.count("heteroakd.feat"), 1u);
}

namespace {

// A tiny network returning two stages and logits, for the frozen-teacher check.
struct TinyNetImpl : torch::nn::Module {
  TinyNetImpl(int64_t c1, int64_t c2, int64_t classes)
      : stage1(register_module("stage1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, c1, 3).stride(2).padding(1)))),
        stage2(register_module("stage2", torch::nn::Conv2d(torch::nn::Conv2dOptions(c1, c2, 3).stride(2).padding(1)))),
        head(register_module("head", torch::nn::Conv2d(torch::nn::Conv2dOptions(c2, classes, 1)))) {}
  ModelOutput forward(const torch::Tensor& x) {
    ModelOutput out;
    auto f1 = torch::relu(stage1->forward(x));
    auto f2 = torch::relu(stage2->forward(f1));
    out.features = {f1, f2};
    out.logits = head->forward(f2);
    return out;
  }
  torch::nn::Conv2d stage1, stage2, head;
};
TORCH_MODULE(TinyNet);

std::vector<torch::Tensor> snapshot(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> copies;
  for (const auto& p : params) copies.push_back(p.detach().clone());
  return copies;
}

bool all_equal(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  for (size_t k = 0; k < a.size(); ++k)
    if (!torch::equal(a[k], b[k])) return false;
  return true;
}

}  // namespace

TEST(HeteroAKD, TeacherStaysFrozenWhileItsProjectorsLearn) {
  torch::manual_seed(7);
  const int64_t C = 4;
  TinyNet student(3, 5, C), teacher(6, 2, C);
  DistillerContext context;
  context.student_stages = {{3, 2}, {5, 4}};
  context.teacher_stages = {{6, 2}, {2, 4}};
  context.num_classes = C;
  auto distiller = make_heteroakd("projector: conv\n", context);

  // Every parameter, the teacher's included, goes to the optimizer: only the distiller's
  // detaching keeps the teacher fixed.
  std::vector<torch::Tensor> params = student->parameters();
  for (auto& p : distiller->parameters()) params.push_back(p);
  for (auto& p : teacher->parameters()) params.push_back(p);
  torch::optim::SGD optimizer(params, torch::optim::SGDOptions(0.1));

  auto teacher_before = snapshot(teacher->parameters());
  std::vector<torch::Tensor> teacher_projector_params;
  for (const auto& projector : distiller->teacher_projectors())
    for (auto& p : projector->parameters()) teacher_projector_params.push_back(p);
  auto projector_before = snapshot(teacher_projector_params);
  auto student_before = snapshot(student->parameters());

  auto images = torch::randn({2, 1, 16, 16});
  Batch batch{images, random_labels(2, 16, 16, C), torch::arange(2)};
  optimizer.zero_grad();
  auto terms = distiller->forward(student->forward(images), teacher->forward(images), batch, StepInfo{});
  terms.total().backward();
  optimizer.step();

  EXPECT_TRUE(all_equal(teacher_before, snapshot(teacher->parameters())));
  for (auto& p : teacher->parameters())
    EXPECT_TRUE(!p.grad().defined() || p.grad().abs().max().item<double>() == 0.0);
  for (size_t k = 0; k < teacher_projector_params.size(); ++k)
    EXPECT_FALSE(torch::equal(projector_before[k], teacher_projector_params[k].detach())) << "param " << k;
  EXPECT_FALSE(all_equal(student_before, snapshot(student->parameters())));
}

TEST(HeteroAKD, ConfigIsValidatedAndStagesResolve) {
  auto context = tiny_context();
  auto expect_error = [&](const std::string& yaml, const std::string& key) {
    try {
      make_heteroakd(yaml, context);
      ADD_FAILURE() << "no error for " << yaml;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("'" + key + "'"), std::string::npos) << e.what();
    }
  };
  expect_error("tau: 0\n", "tau");
  expect_error("temperature: -1\n", "temperature");
  expect_error("kd_temperature: 0\n", "kd_temperature");
  expect_error("lambda_mix: -0.5\n", "lambda_mix");
  expect_error("lambda_proj: -1\n", "lambda_proj");
  expect_error("student_stages: [2]\nteacher_stages: [0]\n", "student_stages");
  expect_error("student_stages: [0]\nteacher_stages: [-3]\n", "teacher_stages");
  expect_error("student_stages: [0, 1]\nteacher_stages: [1]\n", "teacher_stages");
  expect_error("projector: mlp\n", "projector");
  expect_error("kem_axis: rows\n", "kem_axis");
  expect_error("reliability: entropy\n", "reliability");

  auto defaults = options_from("", context);
  EXPECT_EQ(defaults.student_stages, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(defaults.teacher_stages, (std::vector<int64_t>{0, 1}));
  EXPECT_DOUBLE_EQ(defaults.temperature, 4.0);
  EXPECT_DOUBLE_EQ(defaults.tau, 1.0);
  EXPECT_DOUBLE_EQ(defaults.lambda_kd, 0.1);
  EXPECT_DOUBLE_EQ(defaults.lambda_mix, 1.0);
  EXPECT_DOUBLE_EQ(defaults.lambda_proj, 1.0);
  EXPECT_DOUBLE_EQ(defaults.lambda_feat, 0.0);
  EXPECT_TRUE(defaults.kmm && defaults.kem);
  auto picked = options_from("student_stages: [-1]\nteacher_stages: [0]\n", context);
  EXPECT_EQ(picked.student_stages, (std::vector<int64_t>{1}));

  // Projector parameter counts: linear in*C + C per side; conv adds 9*in*in + 2*in.
  auto linear = make_heteroakd("", context);
  int64_t n_linear = 0;
  for (auto& p : linear->parameters()) n_linear += p.numel();
  EXPECT_EQ(n_linear, (4 * 3 + 3) + (6 * 3 + 3) + (5 * 3 + 3) + (3 * 3 + 3));
  auto conv = make_heteroakd("projector: conv\n", context);
  int64_t n_conv = 0;
  for (auto& p : conv->parameters()) n_conv += p.numel();
  EXPECT_EQ(n_conv, n_linear + (9 * 16 + 8) + (9 * 36 + 12) + (9 * 25 + 10) + (9 * 9 + 6));

  // The registry builds it by name.
  Config config = Config::from_string("name: heteroakd\n");
  auto by_name = create_distiller("heteroakd", context, config.root());
  EXPECT_NE(std::dynamic_pointer_cast<HeteroAKDImpl>(by_name), nullptr);
}
