// CIRKD: the mini-batch and memory terms against explicit loops, zero loss when the student's
// embeddings are the teacher's, and the FIFO memory banks (wrap-around, ignore pixels).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "distillery/core/config.h"
#include "distillery/distill/methods/cirkd.h"
#include "distillery/distill/registry.h"

using namespace distillery;

namespace {

const auto kDouble = torch::TensorOptions().dtype(torch::kDouble);

DistillerContext context_with(int64_t student_channels, int64_t teacher_channels, int64_t classes = 4) {
  DistillerContext context;
  context.student_stages = {{2, 2}, {student_channels, 4}};
  context.teacher_stages = {{3, 2}, {teacher_channels, 4}};
  context.num_classes = classes;
  return context;
}

std::shared_ptr<CIRKDImpl> make_cirkd(const std::string& yaml, const DistillerContext& context) {
  Config config = Config::from_string(yaml.empty() ? "{}" : yaml);
  auto distiller = std::dynamic_pointer_cast<CIRKDImpl>(make_cirkd_distiller(context, config.root()));
  config.check_all_consumed();
  return distiller;
}

torch::Tensor random_labels(int64_t B, int64_t h, int64_t w, int64_t C, double ignore = 0.25) {
  auto labels = torch::randint(0, C, {B, h, w}, torch::kLong);
  return labels.masked_fill(torch::rand({B, h, w}) < ignore, kIgnoreLabel);
}

double log_sum_exp(const std::vector<double>& z) {
  double m = z[0];
  for (double v : z) m = std::max(m, v);
  double s = 0;
  for (double v : z) s += std::exp(v - m);
  return m + std::log(s);
}

// KL(softmax(t) || softmax(s)) of two logit rows.
double kl_rows(const std::vector<double>& s, const std::vector<double>& t) {
  double ls = log_sum_exp(s), lt = log_sum_exp(t), kl = 0;
  for (size_t m = 0; m < s.size(); ++m) kl += std::exp(t[m] - lt) * ((t[m] - lt) - (s[m] - ls));
  return kl;
}

// Cells of a max-pooled (ceil mode) map: unit vectors and validity, per image.
struct Cells {
  std::vector<std::vector<std::vector<double>>> unit;  // [B][cell][D]
  std::vector<std::vector<bool>> valid;                // [B][cell]
};

Cells pooled_cells(const torch::Tensor& x, const torch::Tensor& valid, int64_t pool) {
  const int64_t B = x.size(0), D = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t h = (H + pool - 1) / pool, w = (W + pool - 1) / pool;
  Cells cells;
  cells.unit.resize(B);
  cells.valid.resize(B);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t ci = 0; ci < h; ++ci)
      for (int64_t cj = 0; cj < w; ++cj) {
        std::vector<double> v(D, -1e300);
        bool any = false;
        for (int64_t i = ci * pool; i < std::min(H, (ci + 1) * pool); ++i)
          for (int64_t j = cj * pool; j < std::min(W, (cj + 1) * pool); ++j) {
            any = any || valid[b][i][j].item<bool>();
            for (int64_t d = 0; d < D; ++d) v[d] = std::max(v[d], x[b][d][i][j].item<double>());
          }
        double norm = 0;
        for (double e : v) norm += e * e;
        norm = std::max(std::sqrt(norm), 1e-12);
        for (double& e : v) e /= norm;
        cells.unit[b].push_back(v);
        cells.valid[b].push_back(any);
      }
  return cells;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t k = 0; k < a.size(); ++k) s += a[k] * b[k];
  return s;
}

double minibatch_reference(const torch::Tensor& s, const torch::Tensor& t, const torch::Tensor& valid,
                           int64_t pool, double temperature) {
  auto S = pooled_cells(s, valid, pool), T = pooled_cells(t, valid, pool);
  const size_t B = S.unit.size();
  double total = 0;
  int64_t rows = 0;
  for (size_t i = 0; i < B; ++i)
    for (size_t j = 0; j < B; ++j)
      for (size_t n = 0; n < S.unit[i].size(); ++n) {
        if (!S.valid[i][n]) continue;
        std::vector<double> s_row, t_row;
        for (size_t m = 0; m < S.unit[j].size(); ++m) {
          if (!S.valid[j][m]) continue;
          s_row.push_back(dot(S.unit[i][n], S.unit[j][m]) / temperature);
          t_row.push_back(dot(T.unit[i][n], T.unit[j][m]) / temperature);
        }
        if (s_row.empty()) continue;
        total += kl_rows(s_row, t_row);
        ++rows;
      }
  return total / rows;
}

}  // namespace

TEST(CIRKD, MinibatchTermMatchesExplicitLoops) {
  torch::manual_seed(11);
  const int64_t B = 3, H = 5, W = 5;
  auto s = torch::randn({B, 3, H, W}, kDouble);
  auto t = torch::randn({B, 4, H, W}, kDouble);
  auto labels = random_labels(B, H, W, 4);
  // Image 2: only its bottom-right corner cell (ceil mode) holds a valid pixel; its top-left
  // 2x2 cell of image 0 is all ignored.
  labels[2].fill_(kIgnoreLabel);
  labels[2][4][4] = 1;
  labels[0].slice(0, 0, 2).slice(1, 0, 2).fill_(kIgnoreLabel);
  auto valid = labels != kIgnoreLabel;
  for (int64_t pool : {1, 2}) {
    for (double temperature : {0.1, 0.5}) {
      auto loss = cirkd_minibatch_loss(s, t, valid, pool, temperature).item<double>();
      EXPECT_NEAR(loss, minibatch_reference(s, t, valid, pool, temperature), 1e-9)
          << "pool " << pool << " temperature " << temperature;
      EXPECT_GT(loss, 0.0);
    }
  }
  // An image with no valid pixel takes no part: same value as without it.
  labels[1].fill_(kIgnoreLabel);
  valid = labels != kIgnoreLabel;
  auto keep = torch::tensor({0, 2}, torch::kLong);
  EXPECT_NEAR(cirkd_minibatch_loss(s, t, valid, 2, 0.1).item<double>(),
              cirkd_minibatch_loss(s.index_select(0, keep), t.index_select(0, keep),
                                   valid.index_select(0, keep), 2, 0.1).item<double>(),
              1e-12);
}

TEST(CIRKD, MinibatchGradientMatchesFiniteDifferences) {
  torch::manual_seed(12);
  auto s = torch::randn({2, 3, 4, 4}, kDouble).requires_grad_(true);
  auto t = torch::randn({2, 5, 4, 4}, kDouble);
  auto valid = random_labels(2, 4, 4, 3) != kIgnoreLabel;
  cirkd_minibatch_loss(s, t, valid, 2, 0.2).backward();
  auto numeric = torch::zeros_like(s);
  {
    torch::NoGradGuard no_grad;
    auto x = s.detach().view({-1});
    for (int64_t k = 0; k < x.numel(); ++k) {
      double saved = x[k].item<double>(), eps = 1e-6;
      x[k] = saved + eps;
      double up = cirkd_minibatch_loss(s, t, valid, 2, 0.2).item<double>();
      x[k] = saved - eps;
      double down = cirkd_minibatch_loss(s, t, valid, 2, 0.2).item<double>();
      x[k] = saved;
      numeric.view({-1})[k] = (up - down) / (2 * eps);
    }
  }
  EXPECT_GT(s.grad().abs().max().item<double>(), 1e-4);
  EXPECT_TRUE(torch::allclose(s.grad(), numeric, 1e-5, 1e-8));
}

TEST(CIRKD, MemoryTermMatchesExplicitLoops) {
  torch::manual_seed(13);
  auto unit = [](torch::Tensor x) { return x / x.norm(2, 1, true); };
  auto q_s = unit(torch::randn({6, 4}, kDouble));
  auto q_t = unit(torch::randn({6, 4}, kDouble));
  auto bank = unit(torch::randn({9, 4}, kDouble));
  double expected = 0;
  for (int64_t n = 0; n < 6; ++n) {
    std::vector<double> s_row, t_row;
    for (int64_t m = 0; m < 9; ++m) {
      s_row.push_back((q_s[n] * bank[m]).sum().item<double>() / 0.1);
      t_row.push_back((q_t[n] * bank[m]).sum().item<double>() / 0.1);
    }
    expected += kl_rows(s_row, t_row) / 6;
  }
  EXPECT_NEAR(cirkd_memory_loss(q_s, q_t, bank, 0.1).item<double>(), expected, 1e-9);
  EXPECT_EQ(cirkd_memory_loss(q_s, q_t, bank.slice(0, 0, 0), 0.1).item<double>(), 0.0);
  EXPECT_NEAR(cirkd_memory_loss(q_t, q_t, bank, 0.1).item<double>(), 0.0, 1e-12);
}

TEST(CIRKD, ZeroLossWhenStudentEmbeddingsAreTheTeachers) {
  torch::manual_seed(14);
  auto context = context_with(6, 6);
  auto distiller = make_cirkd("projector: none\npixel_memory_size: 50\nregion_memory_size: 7\n", context);
  EXPECT_TRUE(distiller->parameters().empty());
  ModelOutput out;
  out.features = {torch::randn({3, 2, 8, 8}), torch::randn({3, 6, 4, 4})};
  out.logits = torch::randn({3, 4, 8, 8});
  Batch batch{torch::zeros({3, 1, 16, 16}), random_labels(3, 16, 16, 4), torch::arange(3)};
  for (int step = 0; step < 3; ++step) {  // later steps read filled banks
    auto terms = distiller->forward(out, out, batch, StepInfo{});
    for (const char* name : {"cirkd.minibatch", "cirkd.memory", "cirkd.region", "cirkd.kd"}) {
      ASSERT_EQ(terms.terms.count(name), 1u) << name;
      EXPECT_NEAR(terms.terms[name].item<double>(), 0.0, 1e-6) << name << " step " << step;
    }
  }
  EXPECT_GT(distiller->pixel_queue_count(), 0);
  // A different student is not free.
  ModelOutput other = out;
  other.features[1] = torch::randn({3, 6, 4, 4});
  auto terms = distiller->forward(other, out, batch, StepInfo{});
  EXPECT_GT(terms.terms["cirkd.minibatch"].item<double>(), 1e-3);
  EXPECT_GT(terms.terms["cirkd.memory"].item<double>(), 1e-4);
  EXPECT_GT(terms.terms["cirkd.region"].item<double>(), 1e-4);
}

TEST(CIRKD, MemoryBankWrapsAndHoldsTheLastEntries) {
  auto distiller = make_cirkd("pixel_memory_size: 5\nregion_memory_size: 3\n", context_with(2, 2));
  auto entries = torch::arange(2 * 14, torch::kFloat).reshape({14, 2});
  auto labels = torch::arange(14, torch::kLong) % 4;
  EXPECT_EQ(distiller->pixel_queue_count(), 0);
  EXPECT_TRUE(torch::equal(distiller->pixel_queue_labels(), torch::full({5}, -1, torch::kLong)));

  distiller->enqueue_pixels(entries.slice(0, 0, 3), labels.slice(0, 0, 3));
  EXPECT_EQ(distiller->pixel_queue_ptr(), 3);
  EXPECT_EQ(distiller->pixel_queue_count(), 3);
  distiller->enqueue_pixels(entries.slice(0, 3, 7), labels.slice(0, 3, 7));  // wraps
  EXPECT_EQ(distiller->pixel_queue_ptr(), 2);
  EXPECT_EQ(distiller->pixel_queue_count(), 5);
  // Entry k sits in slot k % 5: the bank holds entries 2..6.
  auto expect_last = [&](int64_t pushed) {
    for (int64_t k = pushed - 5; k < pushed; ++k) {
      EXPECT_TRUE(torch::equal(distiller->pixel_queue()[k % 5], entries[k])) << "entry " << k;
      EXPECT_EQ(distiller->pixel_queue_labels()[k % 5].item<int64_t>(), labels[k].item<int64_t>());
    }
  };
  expect_last(7);
  // A push longer than the bank keeps its last 5, as if pushed one by one.
  distiller->enqueue_pixels(entries.slice(0, 7, 14), labels.slice(0, 7, 14));
  EXPECT_EQ(distiller->pixel_queue_ptr(), 14 % 5);
  expect_last(14);

  // Buffers, so that checkpoints carry the banks.
  std::set<std::string> buffers;
  for (const auto& item : distiller->named_buffers()) buffers.insert(item.key());
  for (const char* name : {"pixel_queue", "pixel_queue_labels", "pixel_queue_ptr", "pixel_queue_count",
                           "region_queue", "region_queue_labels", "region_queue_ptr", "region_queue_count"})
    EXPECT_EQ(buffers.count(name), 1u) << name;
}

TEST(CIRKD, IgnorePixelsNeverEnterTheBanks) {
  torch::manual_seed(15);
  const int64_t C = 4, D = 3;
  auto distiller = make_cirkd("pixel_memory_size: 64\nregion_memory_size: 16\npixels_per_image: 4\n",
                              context_with(D, D, C));
  auto t_unit = torch::randn({2, D, 4, 4});
  t_unit = t_unit / t_unit.norm(2, 1, true);
  auto labels = torch::full({2, 4, 4}, kIgnoreLabel, torch::kLong);
  // Image 0: three valid pixels (fewer than pixels_per_image) of classes 1, 1, 3; image 1: six.
  labels[0][0][1] = 1; labels[0][2][2] = 1; labels[0][3][0] = 3;
  for (int64_t k = 0; k < 6; ++k) labels[1][k / 4][k % 4] = k % 2 == 0 ? 0 : 2;
  distiller->update_memory(t_unit, labels);

  EXPECT_EQ(distiller->pixel_queue_count(), 3 + 4);
  auto bank_labels = distiller->pixel_queue_labels().slice(0, 0, 7);
  EXPECT_FALSE((bank_labels == kIgnoreLabel).any().item<bool>());
  EXPECT_FALSE((bank_labels < 0).any().item<bool>());
  // Every entry is the embedding of a valid pixel with that label; image 0's three all enter.
  std::set<std::pair<int64_t, int64_t>> seen;
  for (int64_t e = 0; e < 7; ++e) {
    bool found = false;
    for (int64_t b = 0; b < 2 && !found; ++b)
      for (int64_t p = 0; p < 16 && !found; ++p) {
        int64_t y = labels[b][p / 4][p % 4].item<int64_t>();
        if (y == kIgnoreLabel) continue;
        if (torch::equal(distiller->pixel_queue()[e], t_unit[b].select(1, p / 4).select(1, p % 4))) {
          found = true;
          EXPECT_EQ(bank_labels[e].item<int64_t>(), y);
          EXPECT_TRUE(seen.insert({b, p}).second) << "pixel sampled twice";
        }
      }
    EXPECT_TRUE(found) << "entry " << e;
  }
  // Regions: per image and present class, the normalised mean of its pixels, in class order.
  EXPECT_EQ(distiller->region_queue_count(), 4);
  EXPECT_TRUE(torch::equal(distiller->region_queue_labels().slice(0, 0, 4), torch::tensor({1, 3, 0, 2}, torch::kLong)));
  auto region = [&](int64_t b, int64_t cls) {
    auto sum = torch::zeros({D});
    for (int64_t p = 0; p < 16; ++p)
      if (labels[b][p / 4][p % 4].item<int64_t>() == cls) sum += t_unit[b].select(1, p / 4).select(1, p % 4);
    return sum / sum.norm();
  };
  EXPECT_TRUE(torch::allclose(distiller->region_queue()[0], region(0, 1), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(distiller->region_queue()[1], region(0, 3), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(distiller->region_queue()[3], region(1, 2), 1e-5, 1e-6));
}

TEST(CIRKD, BanksUpdateAfterTheLossOnlyInTrainingAndDeterministically) {
  auto context = context_with(5, 3);
  auto run = [&](uint64_t seed, bool train) {
    torch::manual_seed(seed);
    auto distiller = make_cirkd("pixel_memory_size: 32\nregion_memory_size: 8\n", context);
    distiller->train(train);
    ModelOutput s, t;
    s.features = {torch::randn({2, 2, 8, 8}), torch::randn({2, 5, 4, 4})};
    t.features = {torch::randn({2, 3, 8, 8}), torch::randn({2, 3, 2, 2})};  // teacher at a coarser stride
    s.logits = torch::randn({2, 4, 8, 8});
    t.logits = torch::randn({2, 4, 4, 4});
    Batch batch{torch::zeros({2, 1, 16, 16}), random_labels(2, 16, 16, 4, 0.0), torch::arange(2)};
    auto first = distiller->forward(s, t, batch, StepInfo{});
    // Nothing in the banks yet when the first loss is computed.
    EXPECT_EQ(first.terms["cirkd.memory"].item<double>(), 0.0);
    EXPECT_GT(first.terms["cirkd.minibatch"].item<double>(), 0.0);
    auto second = distiller->forward(s, t, batch, StepInfo{});
    if (train) EXPECT_GT(second.terms["cirkd.memory"].item<double>(), 0.0);
    second.total().backward();
    return distiller;
  };
  auto eval = run(3, false);
  EXPECT_EQ(eval->pixel_queue_count(), 0);
  auto a = run(3, true), b = run(3, true);
  EXPECT_EQ(a->pixel_queue_count(), 32);  // 2 steps x 2 images x 16 pixels
  EXPECT_TRUE(torch::equal(a->pixel_queue(), b->pixel_queue()));
  EXPECT_TRUE(torch::equal(a->region_queue(), b->region_queue()));
  // The projector maps the student's 5 channels to the teacher's 3: 5*3 + 2*3 + 3*3 weights.
  int64_t count = 0;
  for (auto& p : a->parameters()) count += p.numel();
  EXPECT_EQ(count, 5 * 3 + 2 * 3 + 3 * 3);
}

TEST(CIRKD, ConfigIsValidated) {
  auto expect_error = [](const std::string& yaml, const std::string& key, const DistillerContext& context) {
    try {
      make_cirkd(yaml, context);
      ADD_FAILURE() << "no error for " << yaml;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("'" + key + "'"), std::string::npos) << e.what();
    }
  };
  auto context = context_with(5, 3);
  expect_error("projector: none\n", "projector", context);
  expect_error("contrast_temperature: 0\n", "contrast_temperature", context);
  expect_error("pixel_memory_size: 0\n", "pixel_memory_size", context);
  expect_error("lambda_region: -1\n", "lambda_region", context);
  expect_error("student_stage: 2\n", "student_stage", context);
  expect_error("minibatch_pool: 0\n", "minibatch_pool", context);
  auto defaults = make_cirkd("", context)->options();
  EXPECT_EQ(defaults.student_stage, 1);
  EXPECT_DOUBLE_EQ(defaults.contrast_temperature, 0.1);
  EXPECT_DOUBLE_EQ(defaults.lambda_minibatch, 1.0);
  EXPECT_DOUBLE_EQ(defaults.lambda_memory, 0.1);
  EXPECT_DOUBLE_EQ(defaults.lambda_region, 0.1);
  EXPECT_DOUBLE_EQ(defaults.lambda_kd, 1.0);
  Config config = Config::from_string("name: cirkd\n");
  EXPECT_NE(std::dynamic_pointer_cast<CIRKDImpl>(create_distiller("cirkd", context, config.root())), nullptr);
}
