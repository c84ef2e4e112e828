#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "distillery/core/error.h"
#include "distillery/train/metrics.h"
#include "distillery/train/optimizer.h"

using namespace distillery;

TEST(ConfusionMatrix, HandWorkedIoU) {
  // 3 classes. truth: 0 0 1 1 2 255 ; prediction: 0 1 1 1 0 2
  ConfusionMatrix cm(3);
  auto truth = torch::tensor({0, 0, 1, 1, 2, 255}, torch::kInt64);
  auto pred = torch::tensor({0, 1, 1, 1, 0, 2}, torch::kInt64);
  cm.update(pred, truth);
  // class 0: tp 1, fp 1 (the 2 predicted as 0), fn 1 -> 1/3
  // class 1: tp 2, fp 1, fn 0 -> 2/3 ; class 2: tp 0, fn 1 -> 0 (the ignored pixel is skipped)
  auto iou = cm.per_class_iou();
  EXPECT_NEAR(iou[0], 1.0 / 3, 1e-12);
  EXPECT_NEAR(iou[1], 2.0 / 3, 1e-12);
  EXPECT_NEAR(iou[2], 0.0, 1e-12);
  EXPECT_NEAR(cm.mean_iou(), 1.0 / 3, 1e-12);
  EXPECT_NEAR(cm.pixel_accuracy(), 3.0 / 5, 1e-12);
  EXPECT_EQ(cm.counts().sum().item<int64_t>(), 5);
}

TEST(ConfusionMatrix, AbsentClassesAreSkippedInTheMean) {
  ConfusionMatrix cm(4);
  cm.update(torch::tensor({0, 1, 1}, torch::kInt64), torch::tensor({0, 1, 0}, torch::kInt64));
  auto iou = cm.per_class_iou();
  EXPECT_TRUE(std::isnan(iou[2]) && std::isnan(iou[3]));
  EXPECT_NEAR(cm.mean_iou(), (0.5 + 0.5) / 2, 1e-12);
}

TEST(ConfusionMatrix, MergeEqualsJointUpdate) {
  torch::manual_seed(0);
  auto t = torch::randint(0, 5, {200}, torch::kInt64);
  auto p = torch::randint(0, 5, {200}, torch::kInt64);
  ConfusionMatrix joint(5), a(5), b(5);
  joint.update(p, t);
  a.update(p.slice(0, 0, 120), t.slice(0, 0, 120));
  b.update(p.slice(0, 120), t.slice(0, 120));
  a.merge(b);
  EXPECT_TRUE(torch::equal(joint.counts(), a.counts()));
}

TEST(ConfusionMatrix, OutOfRangeTargetIsAnError) {
  ConfusionMatrix cm(3);
  EXPECT_THROW(cm.update(torch::tensor({0}, torch::kInt64), torch::tensor({7}, torch::kInt64)), DataError);
}

TEST(Schedule, WarmupThenPoly) {
  OptimizerOptions o;
  o.lr = 0.1;
  o.warmup_steps = 10;
  o.warmup_start_factor = 0.1;
  o.poly_power = 0.9;
  EXPECT_NEAR(learning_rate_at(o, 0, 100), 0.01, 1e-12);
  EXPECT_NEAR(learning_rate_at(o, 5, 100), 0.1 * (0.1 + 0.9 * 0.5), 1e-12);
  EXPECT_NEAR(learning_rate_at(o, 50, 100), 0.1 * std::pow(0.5, 0.9), 1e-12);
  EXPECT_NEAR(learning_rate_at(o, 100, 100), 0.0, 1e-12);
}

TEST(Optimizer, WeightDecayOnlyOnMatrices) {
  auto linear = torch::nn::Linear(3, 2);
  OptimizerOptions o;
  o.weight_decay = 0.5;
  auto opt = make_optimizer(o, linear->parameters());
  ASSERT_EQ(opt->param_groups().size(), 2u);
  auto& decay = static_cast<torch::optim::SGDOptions&>(opt->param_groups()[0].options());
  auto& none = static_cast<torch::optim::SGDOptions&>(opt->param_groups()[1].options());
  EXPECT_EQ(opt->param_groups()[0].params().size(), 1u);  // weight
  EXPECT_DOUBLE_EQ(decay.weight_decay(), 0.5);
  EXPECT_DOUBLE_EQ(none.weight_decay(), 0.0);
  set_learning_rate(*opt, 0.25);
  EXPECT_DOUBLE_EQ(decay.lr(), 0.25);
}
