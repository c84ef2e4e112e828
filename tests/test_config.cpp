#include <gtest/gtest.h>

#include "distillery/core/config.h"

using namespace distillery;

TEST(Config, ReadsTypedValuesAndDefaults) {
  Config config = Config::from_string("train:\n  lr: 0.5\n  steps: 10\n  name: abc\n  flags: [1, 2]\n");
  auto train = config.root().section("train");
  EXPECT_DOUBLE_EQ(train.get<double>("lr", 0.1), 0.5);
  EXPECT_EQ(train.get<int64_t>("steps", 1), 10);
  EXPECT_EQ(train.get<std::string>("name", ""), "abc");
  EXPECT_EQ(train.get<std::vector<int64_t>>("flags", {}), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(train.get<int>("missing", 7), 7);
  EXPECT_NO_THROW(config.check_all_consumed());
}

TEST(Config, UnknownKeyIsNamedWithSuggestion) {
  Config config = Config::from_string("train:\n  lrr: 0.5\n");
  auto train = config.root().section("train");
  train.get<double>("lr", 0.1);
  try {
    config.check_all_consumed();
    FAIL() << "expected an error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown key 'train.lrr'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("did you mean 'train.lr'"), std::string::npos) << e.what();
    EXPECT_EQ(e.exit_code(), 2);
  }
}

TEST(Config, WrongTypeNamesKey) {
  Config config = Config::from_string("train:\n  steps: ten\n");
  try {
    config.root().section("train").get<int64_t>("steps", 1);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "config key 'train.steps': expected an integer, got 'ten'");
  }
  EXPECT_THROW(config.root().section("train").get<double>("steps", 1.0), ConfigError);
}

TEST(Config, OverridesCreateAndReplaceNestedKeys) {
  Config config = Config::from_string("train:\n  lr: 0.5\nlist:\n  - {w: 1}\n");
  config.apply_override("train.lr=0.25");
  config.apply_override("model.name=resnet");
  config.apply_override("list.0.w=3");
  auto root = config.root();
  EXPECT_DOUBLE_EQ(root.section("train").get<double>("lr", 0), 0.25);
  EXPECT_EQ(root.section("model").get<std::string>("name", ""), "resnet");
  EXPECT_EQ(root.section_list("list")[0].get<int>("w", 0), 3);
  EXPECT_THROW(config.apply_override("novalue"), ConfigError);
  EXPECT_THROW(config.apply_override("list.5.w=1"), ConfigError);
}

TEST(Config, ChoicesAndChecks) {
  Config config = Config::from_string("opt: adam\n");
  EXPECT_THROW(config.root().get_choice("opt", "sgd", {"sgd", "adamw"}), ConfigError);
  EXPECT_THROW(config.root().check(false, "opt", "bad"), ConfigError);
  EXPECT_THROW(Config::load_file("/nonexistent/x.yaml"), ConfigError);
  EXPECT_THROW(Config::from_string("a: [1, 2"), ConfigError);
  EXPECT_THROW(Config::from_string("- 1\n- 2\n"), ConfigError);
}
