// DOT (train/dot.h): delta = 0 is SGD with momentum on the summed loss, step for step; with
// delta > 0 the two buffers follow their own momenta (a hand-made two-parameter problem,
// simulated in plain doubles); one-loss parameters use the mean momentum; state round-trips;
// a distillation run with DOT resumes bit for bit; the recipe validates its keys.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>
#include <fmt/format.h>

#include "distillery/core/error.h"
#include "distillery/core/runtime.h"
#include "distillery/train/checkpoint.h"
#include "distillery/train/dot.h"
#include "distillery/train/optimizer.h"
#include "distillery/train/trainer.h"

using namespace distillery;
namespace fs = std::filesystem;

namespace {

const auto kDouble = torch::TensorOptions().dtype(torch::kDouble);

OptimizerOptions options(const std::string& type, double delta, double weight_decay = 0.01) {
  OptimizerOptions o;
  o.type = type;
  o.lr = 0.05;
  o.momentum = 0.9;
  o.weight_decay = weight_decay;
  o.delta = delta;
  return o;
}

// A small problem with every kind of parameter: w, b reached by both losses, t by the task
// loss only, q by the distillation loss only; w, t, q are decayed (more than one dimension).
struct Problem {
  torch::Tensor w = torch::randn({3, 2}, kDouble).requires_grad_(true);
  torch::Tensor b = torch::randn({2}, kDouble).requires_grad_(true);
  torch::Tensor t = torch::randn({2, 2}, kDouble).requires_grad_(true);
  torch::Tensor q = torch::randn({2, 2}, kDouble).requires_grad_(true);
  torch::Tensor x = torch::randn({5, 3}, kDouble), y = torch::randn({5, 2}, kDouble);

  std::vector<torch::Tensor> params() const { return {w, b, t, q}; }
  Problem clone() const {
    Problem p = *this;
    for (auto* v : {&p.w, &p.b, &p.t, &p.q}) *v = v->detach().clone().requires_grad_(true);
    return p;
  }
  torch::Tensor hidden() const { return x.mm(w) + b; }
  torch::Tensor task() const { return (hidden() - y).pow(2).mean() + 0.1 * t.mm(t).sum().pow(2); }
  torch::Tensor distill() const { return (hidden().mm(q) - 0.5 * y).pow(2).mean(); }
};

double lr_at(int step) { return 0.05 * (1.0 - step / 40.0); }

}  // namespace

TEST(Dot, DeltaZeroEqualsSgdWithMomentumOnTheSummedLoss) {
  torch::manual_seed(0);
  Problem sgd_problem;
  Problem dot_problem = sgd_problem.clone();
  const auto w0 = sgd_problem.w.detach().clone();
  auto sgd = make_optimizer(options("sgd", 0.0), sgd_problem.params());
  auto dot = make_optimizer(options("dot", 0.0), dot_problem.params());
  auto* split = dynamic_cast<SplitLossOptimizer*>(dot.get());
  ASSERT_NE(split, nullptr);
  for (int step = 0; step < 20; ++step) {
    set_learning_rate(*sgd, lr_at(step));
    set_learning_rate(*dot, lr_at(step));
    sgd->zero_grad();
    (sgd_problem.task() + sgd_problem.distill()).backward();
    sgd->step();
    split->backward_and_step(dot_problem.task(), dot_problem.distill());
    auto a = sgd_problem.params(), b = dot_problem.params();
    for (size_t i = 0; i < a.size(); ++i)
      ASSERT_TRUE(torch::allclose(a[i], b[i], 1e-12, 1e-13)) << "step " << step << " parameter " << i;
  }
  // The problem really moved (not a trivially fixed point).
  EXPECT_GT((sgd_problem.w - w0).abs().sum().item<double>(), 0.1);
}

TEST(Dot, TwoBuffersFollowTheirOwnMomenta) {
  // Two scalars a (shape [1, 1], decayed) and c (shape [1], not decayed); task loss
  // (a + 2c)^2 / 2, distillation loss (3a - c)^2 / 2. Simulated by hand below.
  auto a = torch::full({1, 1}, 0.7, kDouble).requires_grad_(true);
  auto c = torch::full({1}, -0.4, kDouble).requires_grad_(true);
  const double mu = 0.9, delta = 0.075, lr = 0.1, wd = 0.01;
  auto o = options("dot", delta, wd);
  o.lr = lr;
  auto optimizer = make_optimizer(o, {a, c});
  auto* dot = dynamic_cast<DotOptimizer*>(optimizer.get());
  ASSERT_NE(dot, nullptr);

  double A = 0.7, Cc = -0.4;
  double mt_a = 0, mt_c = 0, md_a = 0, md_c = 0;
  for (int step = 0; step < 5; ++step) {
    auto task = 0.5 * (a + 2 * c).pow(2).sum();
    auto distill = 0.5 * (3 * a - c).pow(2).sum();
    dot->backward_and_step(task, distill);

    const double gt = A + 2 * Cc, gd = 3 * A - Cc;
    const double gt_a = gt + wd * A, gt_c = 2 * gt, gd_a = 3 * gd, gd_c = -gd;
    if (step == 0) {
      mt_a = gt_a, mt_c = gt_c, md_a = gd_a, md_c = gd_c;
    } else {
      mt_a = (mu - delta) * mt_a + gt_a;
      mt_c = (mu - delta) * mt_c + gt_c;
      md_a = (mu + delta) * md_a + gd_a;
      md_c = (mu + delta) * md_c + gd_c;
    }
    A -= lr * (mt_a + md_a);
    Cc -= lr * (mt_c + md_c);
    EXPECT_NEAR(dot->task_momentum()[0].item<double>(), mt_a, 1e-12) << step;
    EXPECT_NEAR(dot->task_momentum()[1].item<double>(), mt_c, 1e-12) << step;
    EXPECT_NEAR(dot->distill_momentum()[0].item<double>(), md_a, 1e-12) << step;
    EXPECT_NEAR(dot->distill_momentum()[1].item<double>(), md_c, 1e-12) << step;
    EXPECT_NEAR(a.item<double>(), A, 1e-12) << step;
    EXPECT_NEAR(c.item<double>(), Cc, 1e-12) << step;
  }
  // With delta > 0 the distillation buffer keeps more of its history than the task buffer:
  // a different trajectory from delta = 0.
  EXPECT_GT(std::abs(dot->distill_momentum()[0].item<double>() - dot->task_momentum()[0].item<double>()), 1e-6);
}

TEST(Dot, OneLossParametersUseTheMeanMomentumAndUnreachedOnesStay) {
  auto t = torch::full({1, 1}, 1.0, kDouble).requires_grad_(true);   // task only, decayed
  auto d = torch::full({1, 1}, -2.0, kDouble).requires_grad_(true);  // distillation only, decayed
  auto u = torch::full({1}, 3.0, kDouble).requires_grad_(true);      // neither
  const double mu = 0.9, lr = 0.05, wd = 0.01;
  auto o = options("dot", 0.075, wd);
  auto optimizer = make_optimizer(o, {t, d, u});
  auto* dot = dynamic_cast<DotOptimizer*>(optimizer.get());
  // Flat order: decayed group first (t, d), then u.
  double T = 1.0, D = -2.0, mt = 0, md = 0;
  for (int step = 0; step < 4; ++step) {
    dot->backward_and_step(t.pow(2).sum(), (d - 1).pow(2).sum());
    const double gt = 2 * T + wd * T, gd = 2 * (D - 1) + wd * D;
    mt = step == 0 ? gt : mu * mt + gt;
    md = step == 0 ? gd : mu * md + gd;
    T -= lr * mt;
    D -= lr * md;
    EXPECT_NEAR(t.item<double>(), T, 1e-12);
    EXPECT_NEAR(d.item<double>(), D, 1e-12);
  }
  EXPECT_FALSE(dot->distill_momentum()[0].defined());  // t never saw the distillation loss
  EXPECT_FALSE(dot->task_momentum()[1].defined());     // d never saw the task loss
  EXPECT_EQ(u.item<double>(), 3.0);
  EXPECT_FALSE(dot->task_momentum()[2].defined());
  EXPECT_FALSE(dot->distill_momentum()[2].defined());
}

TEST(Dot, StateRoundTripsThroughAnArchiveAndRefusesOtherStates) {
  torch::manual_seed(1);
  Problem p;
  auto first = make_optimizer(options("dot", 0.075), p.params());
  for (int i = 0; i < 3; ++i) dynamic_cast<SplitLossOptimizer*>(first.get())->backward_and_step(p.task(), p.distill());
  torch::serialize::OutputArchive out;
  first->save(out);
  std::stringstream bytes;
  out.save_to(bytes);

  auto second = make_optimizer(options("dot", 0.075), p.params());
  torch::serialize::InputArchive in;
  in.load_from(bytes);
  second->load(in);
  auto* a = dynamic_cast<DotOptimizer*>(first.get());
  auto* b = dynamic_cast<DotOptimizer*>(second.get());
  int defined = 0;
  for (size_t i = 0; i < a->task_momentum().size(); ++i) {
    for (auto [x, y] : {std::make_pair(a->task_momentum()[i], b->task_momentum()[i]),
                        std::make_pair(a->distill_momentum()[i], b->distill_momentum()[i])}) {
      ASSERT_EQ(x.defined(), y.defined()) << i;
      if (!x.defined()) continue;
      EXPECT_TRUE(torch::equal(x, y)) << i;
      ++defined;
    }
  }
  EXPECT_EQ(defined, 6);  // w, b: two buffers each; t: task only; q: distillation only
  // An SGD state is not DOT's.
  auto sgd = make_optimizer(options("sgd", 0.0), p.params());
  torch::serialize::OutputArchive sgd_out;
  sgd->save(sgd_out);
  std::stringstream sgd_bytes;
  sgd_out.save_to(sgd_bytes);
  torch::serialize::InputArchive sgd_in;
  sgd_in.load_from(sgd_bytes);
  EXPECT_THROW(second->load(sgd_in), Error);
}

namespace {

std::string temp_dir(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("distillery_dot_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

// A small fashion-seg distillation with DOT (32x32 scenes, 100 validation scenes): a
// SegFormer-b0 teacher trained for 2 steps, a slim DeepLabV3 student with pixel KD and
// HeteroAKD (its teacher-side projectors are reached only by the distillation loss).
std::string dot_recipe(const std::string& dir, const std::string& run, int64_t steps) {
  return fmt::format(R"(
name: {1}
seed: 5
output: {{dir: {0}/{1}}}
data:
  benchmark: fashion-seg
  fashion_seg: {{canvas: 32, train_scenes: 300, val_scenes: 50, min_items: 1, max_items: 2, min_scale: 0.8, max_scale: 1.0}}
model: {{name: deeplabv3_resnet18_slim}}
teacher: {{model: {{name: segformer_b0}}, checkpoint: {0}/teacher/latest.ckpt, recipe: {0}/teacher.yaml}}
distillers:
  - {{name: kd}}
  - {{name: heteroakd, student_stages: [-1], teacher_stages: [-1]}}
train:
  steps: {2}
  batch_size: 8
  eval_every: 1000
  eval_batch_size: 50
  log_every: 1
  optimizer: {{type: dot, lr: 0.02, momentum: 0.9, delta: 0.075, weight_decay: 0.0001}}
)", dir, run, steps);
}

Recipe recipe_from(const std::string& text) { return Recipe::parse(Config::from_string(text, "dot.yaml")); }

std::vector<torch::Tensor> state_of(const torch::nn::Module& m) {
  std::vector<torch::Tensor> out;
  for (auto& p : m.parameters()) out.push_back(p.detach().clone());
  for (auto& b : m.buffers()) out.push_back(b.detach().clone());
  return out;
}

}  // namespace

TEST(Dot, DistillationRunWithDotResumesBitForBit) {
  set_thread_count(0);
  std::string dir = temp_dir("resume");
  std::ofstream(dir + "/teacher.yaml") << fmt::format(
      "name: teacher\nseed: 1\noutput: {{dir: {}/teacher}}\ndata:\n  benchmark: fashion-seg\n"
      "  fashion_seg: {{canvas: 32, train_scenes: 300, val_scenes: 50, min_items: 1, max_items: 2, "
      "min_scale: 0.8, max_scale: 1.0}}\nmodel: {{name: segformer_b0}}\n"
      "train: {{steps: 2, batch_size: 8, eval_every: 1000, eval_batch_size: 50}}\n",
      dir);
  Trainer full(recipe_from(dot_recipe(dir, "straight", 6)));
  full.run();
  Trainer first(recipe_from(dot_recipe(dir, "split", 6)));
  first.run(/*resume=*/false, /*stop_after=*/3);
  Trainer second(recipe_from(dot_recipe(dir, "split", 6)));
  second.run(/*resume=*/true);
  auto a = state_of(*full.student()), b = state_of(*second.student());
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "tensor " << i;
}

TEST(Dot, RecipeValidatesDeltaAndMomentum) {
  auto parse = [](const std::string& optimizer) {
    return Recipe::parse(Config::from_string(
        "data: {benchmark: fashion-mnist}\nmodel: {name: vit_tiny_cls}\ntrain: {optimizer: " + optimizer + "}\n"));
  };
  EXPECT_EQ(parse("{type: dot}").train.optimizer.delta, 0.075);
  EXPECT_EQ(parse("{type: dot, delta: 0.05}").train.optimizer.delta, 0.05);
  EXPECT_THROW(parse("{type: dot, momentum: 0.95}"), ConfigError);   // 0.95 + 0.075 >= 1
  EXPECT_THROW(parse("{type: dot, delta: -0.1}"), ConfigError);
  EXPECT_THROW(parse("{type: dot, grad_clip: 1}"), ConfigError);
  // delta belongs to DOT: with SGD the key is unknown once the run is built.
  Config config = Config::from_string("data: {benchmark: fashion-mnist}\nmodel: {name: vit_tiny_cls}\n"
                                      "train: {optimizer: {type: sgd, delta: 0.1}}\n");
  Recipe recipe = Recipe::parse(config);
  EXPECT_THROW(recipe.config.check_all_consumed(), ConfigError);
}
