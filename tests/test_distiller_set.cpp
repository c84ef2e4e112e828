// DistillerSet: weights and warm-up, name validation, term naming, owned parameters.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "distillery/core/config.h"
#include "distillery/distill/distiller_set.h"
#include "distillery/distill/registry.h"

using namespace distillery;

namespace {

DistillerContext context() {
  DistillerContext ctx;
  ctx.student_stages = {{4, 2}, {6, 4}, {8, 8}};
  ctx.teacher_stages = {{5, 2}, {7, 4}};
  ctx.num_classes = 3;
  return ctx;
}

struct Outputs {
  ModelOutput student, teacher;
  Batch batch;
};

Outputs random_outputs() {
  Outputs o;
  o.student.logits = torch::randn({2, 3, 4, 4});
  o.student.features = {torch::randn({2, 4, 8, 8}), torch::randn({2, 6, 4, 4}), torch::randn({2, 8, 2, 2})};
  o.teacher.logits = torch::randn({2, 3, 8, 8});
  o.teacher.features = {torch::randn({2, 5, 8, 8}), torch::randn({2, 7, 4, 4})};
  o.batch.targets = torch::randint(0, 3, {2, 16, 16}, torch::kLong);
  return o;
}

StepInfo at_step(int64_t step) {
  StepInfo info;
  info.step = step;
  info.total_steps = 100;
  return info;
}

}  // namespace

TEST(DistillerSet, WeightAndLinearWarmupScaleTheTerm) {
  torch::manual_seed(0);
  Config config = Config::from_string("distillers:\n  - {name: kd, weight: 2, warmup_steps: 10, temperature: 2}\n");
  DistillerSet set(config.root().section_list("distillers"), context());
  EXPECT_NO_THROW(config.check_all_consumed());
  Config raw_config = Config::from_string("{temperature: 2}");
  auto raw_kd = create_distiller("kd", context(), raw_config.root());
  auto o = random_outputs();
  const auto raw = raw_kd->forward(o.student, o.teacher, o.batch, at_step(0)).terms.at("kd");
  ASSERT_GT(raw.item<float>(), 0.0f);
  auto term = [&](int64_t step) { return set->forward(o.student, o.teacher, o.batch, at_step(step)).terms.at("kd"); };
  EXPECT_EQ(term(0).item<float>(), 0.0f);
  EXPECT_EQ(term(5).item<float>(), (2.0 * 0.5 * raw).item<float>());
  EXPECT_FLOAT_EQ(term(2).item<float>(), (2.0 * 0.2 * raw).item<float>());
  EXPECT_EQ(term(10).item<float>(), (2.0 * raw).item<float>());
  EXPECT_EQ(term(50).item<float>(), (2.0 * raw).item<float>());
  EXPECT_EQ(set->names(), (std::vector<std::string>{"kd"}));
  EXPECT_TRUE(set->needs_teacher());
}

TEST(DistillerSet, DefaultsAreWeightOneWithoutWarmup) {
  torch::manual_seed(1);
  Config config = Config::from_string("distillers: [{name: dist}]");
  DistillerSet set(config.root().section_list("distillers"), context());
  Config raw_config = Config::from_string("{}");
  auto raw = create_distiller("dist", context(), raw_config.root());
  auto o = random_outputs();
  EXPECT_EQ(set->forward(o.student, o.teacher, o.batch, at_step(0)).terms.at("dist").item<float>(),
            raw->forward(o.student, o.teacher, o.batch, at_step(0)).terms.at("dist").item<float>());
}

TEST(DistillerSet, UnknownMethodListsKnownOnes) {
  Config config = Config::from_string("distillers: [{name: kdd}]");
  try {
    DistillerSet set(config.root().section_list("distillers"), context());
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("distillers.0.name"), std::string::npos) << message;
    EXPECT_NE(message.find("kdd"), std::string::npos) << message;
    for (const auto& entry : distiller_registry())
      EXPECT_NE(message.find(entry.name), std::string::npos) << message;
  }
  Config direct = Config::from_string("{}");
  try {
    create_distiller("nope", context(), direct.root());
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown distiller 'nope' (known: kd, cwd, dist"), std::string::npos) << e.what();
  }
}

TEST(DistillerSet, MissingNameNegativeWeightAndUnknownKeyAreConfigErrors) {
  Config missing = Config::from_string("distillers: [{weight: 1}]");
  EXPECT_THROW(DistillerSet(missing.root().section_list("distillers"), context()), ConfigError);
  Config negative = Config::from_string("distillers: [{name: kd, weight: -1}]");
  EXPECT_THROW(DistillerSet(negative.root().section_list("distillers"), context()), ConfigError);
  Config warmup = Config::from_string("distillers: [{name: kd, warmup_steps: -2}]");
  EXPECT_THROW(DistillerSet(warmup.root().section_list("distillers"), context()), ConfigError);
  // A method key that no code reads is caught by the global check.
  Config typo = Config::from_string("distillers: [{name: kd, temprature: 2}]");
  DistillerSet set(typo.root().section_list("distillers"), context());
  EXPECT_THROW(typo.check_all_consumed(), ConfigError);
}

TEST(DistillerSet, OwnsTheParametersOfItsDistillers) {
  Config config = Config::from_string(
      "distillers:\n  - {name: fitnet}\n  - {name: ofa, stages: [1], projector: linear}\n  - {name: kd}\n");
  DistillerSet set(config.root().section_list("distillers"), context());
  int64_t count = 0;
  for (const auto& p : set->parameters()) count += p.numel();
  // fitnet: 1x1 regressor 8 -> 7 channels; ofa: linear branch 6 -> 3 classes.
  EXPECT_EQ(count, (8 * 7 + 7) + (6 * 3 + 3));
  auto named = set->named_parameters();
  EXPECT_TRUE(named.contains("0_fitnet.regressor.0.weight"));
  EXPECT_TRUE(named.contains("1_ofa.branch0.0.bias"));
  // Training through the set reaches them.
  auto o = random_outputs();
  set->forward(o.student, o.teacher, o.batch, at_step(0)).total().backward();
  for (const auto& p : set->parameters()) EXPECT_TRUE(p.grad().defined() && p.grad().abs().sum().item<float>() > 0);
}

TEST(DistillerSet, CollidingTermNamesArePrefixedAndAllCount) {
  torch::manual_seed(2);
  Config config = Config::from_string("distillers:\n  - {name: kd}\n  - {name: kd, temperature: 4, weight: 0.5}\n");
  DistillerSet set(config.root().section_list("distillers"), context());
  auto o = random_outputs();
  auto terms = set->forward(o.student, o.teacher, o.batch, at_step(0));
  ASSERT_EQ(terms.terms.size(), 2u);
  Config c1 = Config::from_string("{}"), c4 = Config::from_string("{temperature: 4}");
  const float kd1 = create_distiller("kd", context(), c1.root())->forward(o.student, o.teacher, o.batch, at_step(0)).terms.at("kd").item<float>();
  const float kd4 = create_distiller("kd", context(), c4.root())->forward(o.student, o.teacher, o.batch, at_step(0)).terms.at("kd").item<float>();
  EXPECT_FLOAT_EQ(terms.terms.at("kd").item<float>(), kd1);
  EXPECT_FLOAT_EQ(terms.terms.at("kd.kd").item<float>(), 0.5f * kd4);
  EXPECT_FLOAT_EQ(terms.total().item<float>(), kd1 + 0.5f * kd4);
}

TEST(DistillerSet, EmptySetNeedsNoTeacher) {
  Config config = Config::from_string("distillers: []");
  DistillerSet set(config.root().section_list("distillers"), context());
  EXPECT_TRUE(set->empty());
  EXPECT_FALSE(set->needs_teacher());
  auto o = random_outputs();
  EXPECT_TRUE(set->forward(o.student, o.teacher, o.batch, at_step(0)).terms.empty());
}
