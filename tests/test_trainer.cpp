#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unistd.h>
#include <fmt/format.h>

#include "distillery/core/runtime.h"
#include "distillery/train/checkpoint.h"
#include "distillery/train/metrics.h"
#include "distillery/train/trainer.h"

using namespace distillery;
namespace fs = std::filesystem;

namespace {

std::string temp_dir(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("distillery_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

// A small but real segmentation recipe: 32x32 canvases, a slim ResNet student.
std::string small_recipe(const std::string& run_dir, int64_t steps, const std::string& extra = "") {
  return fmt::format(R"(
name: small
seed: 3
output: {{dir: {}}}
data:
  benchmark: fashion-seg
  fashion_seg: {{canvas: 32, train_scenes: 600, val_scenes: 100, min_items: 1, max_items: 2, min_scale: 0.8, max_scale: 1.0}}
  augment: {{enabled: false}}
model: {{name: deeplabv3_resnet18_slim}}
train:
  steps: {}
  batch_size: 16
  eval_every: 1000
  eval_batch_size: 50
  log_every: 1
  optimizer: {{type: sgd, lr: 0.05, warmup_steps: 20}}
{}
)", run_dir, steps, extra);
}

Recipe recipe_from(const std::string& text) { return Recipe::parse(Config::from_string(text, "small.yaml")); }

// The per-step losses a run logged to its metrics.jsonl, in order.
std::vector<double> logged_losses(const std::string& run_dir) {
  std::ifstream log(run_dir + "/metrics.jsonl");
  std::vector<double> losses;
  for (std::string line; std::getline(log, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) losses.push_back(j["loss"].get<double>());
  }
  return losses;
}

std::vector<torch::Tensor> state_of(const torch::nn::Module& m) {
  std::vector<torch::Tensor> out;
  for (auto& p : m.parameters()) out.push_back(p.detach().clone());
  for (auto& b : m.buffers()) out.push_back(b.detach().clone());
  return out;
}

}  // namespace

TEST(Trainer, LossFallsAndBeatsAllBackground) {
  set_thread_count(0);
  std::string dir = temp_dir("learn");
  Trainer trainer(recipe_from(small_recipe(dir, 250)));
  TrainResult result = trainer.run();
  // The mean of the last 10 logged losses is well below the first 10.
  const std::vector<double> losses = logged_losses(dir);
  ASSERT_GE(losses.size(), 10u);
  double first = 0, last = 0;
  for (size_t i = 0; i < 10; ++i) first += losses[i] / 10, last += losses[losses.size() - 1 - i] / 10;
  EXPECT_LT(last, 0.6 * first);
  // Chance level: predicting background everywhere on the same validation scenes.
  const TensorDataset& val = *trainer.data().val;
  ConfusionMatrix background(val.num_classes);
  background.update(torch::zeros_like(val.targets, torch::kInt64), val.targets);
  EXPECT_GT(result.final_metric, 1.3 * background.mean_iou())
      << "all-background mIoU " << background.mean_iou();
  EXPECT_TRUE(fs::exists(dir + "/latest.ckpt"));
  EXPECT_TRUE(fs::exists(dir + "/best.ckpt"));
  EXPECT_TRUE(fs::exists(dir + "/config.yaml"));
}

TEST(Trainer, ResumeGivesIdenticalWeights) {
  set_thread_count(0);
  std::string straight = temp_dir("straight"), split = temp_dir("split");
  Trainer full(recipe_from(small_recipe(straight, 12, "")));
  full.run();

  // Same recipe, stopped after 6 steps, then a fresh process-like Trainer resumes it.
  Trainer first(recipe_from(small_recipe(split, 12)));
  first.run(/*resume=*/false, /*stop_after=*/6);
  EXPECT_EQ(read_checkpoint_meta(split + "/latest.ckpt").step, 6);
  Trainer second(recipe_from(small_recipe(split, 12)));
  second.run(/*resume=*/true);

  auto a = state_of(*full.student());
  auto b = state_of(*second.student());
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "tensor " << i;
}

TEST(Trainer, ResumeRefusesAnotherModel) {
  std::string dir = temp_dir("other");
  Trainer first(recipe_from(small_recipe(dir, 2)));
  first.run();
  std::string text = small_recipe(dir, 4);
  text.replace(text.find("deeplabv3_resnet18_slim"), 23, "deeplabv3_mobilenetv2");
  Trainer second(recipe_from(text));
  try {
    second.run(/*resume=*/true);
    FAIL() << "expected a refusal";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("deeplabv3_resnet18_slim"), std::string::npos) << e.what();
  }
}

TEST(Trainer, UnknownRecipeKeyIsRejected) {
  std::string dir = temp_dir("badkey");
  std::string text = small_recipe(dir, 2, "  lerning_rate: 3\n");
  try {
    Trainer t(recipe_from(text));
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.lerning_rate"), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, CorruptAndTruncatedFilesAreDetected) {
  std::string dir = temp_dir("ckpt");
  auto model = torch::nn::Linear(3, 2);
  CheckpointMeta meta;
  meta.step = 7;
  meta.model_name = "linear";
  save_checkpoint(dir + "/a.ckpt", meta, CheckpointParts{model.ptr().get()});
  auto other = torch::nn::Linear(3, 2);
  EXPECT_EQ(load_checkpoint(dir + "/a.ckpt", CheckpointParts{other.ptr().get()}).step, 7);
  EXPECT_TRUE(torch::equal(model->weight, other->weight));

  std::string bytes;
  {
    std::ifstream in(dir + "/a.ckpt", std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto write = [&](const std::string& name, const std::string& content) {
    std::ofstream(dir + "/" + name, std::ios::binary) << content;
    return dir + "/" + name;
  };
  std::string flipped = bytes;
  flipped[bytes.size() / 2] ^= 0x5a;
  EXPECT_THROW(read_checkpoint_meta(write("flip.ckpt", flipped)), Error);
  EXPECT_THROW(read_checkpoint_meta(write("trunc.ckpt", bytes.substr(0, bytes.size() - 9))), Error);
  EXPECT_THROW(read_checkpoint_meta(write("empty.ckpt", "")), Error);
  EXPECT_THROW(read_checkpoint_meta(dir + "/missing.ckpt"), Error);
  auto wrong = torch::nn::Linear(4, 2);
  EXPECT_THROW(load_checkpoint(dir + "/a.ckpt", CheckpointParts{wrong.ptr().get()}), Error);
}

TEST(Trainer, TaskWeightScalesTheLoggedTaskLoss) {
  set_thread_count(0);
  auto first_loss = [](const std::string& dir, const std::string& extra) {
    Trainer(recipe_from(small_recipe(dir, 1, extra))).run();
    const std::vector<double> losses = logged_losses(dir);
    return losses.empty() ? -1.0 : losses.front();
  };
  const double full = first_loss(temp_dir("task_w1"), "");
  const double quarter = first_loss(temp_dir("task_w025"), "  task_weight: 0.25\n");
  ASSERT_GT(full, 0);
  EXPECT_NEAR(quarter, 0.25 * full, 1e-5 * full);  // same seed: same weights, same first batch
}

TEST(Trainer, TaskWeightMustBeNonNegativeAndNeedsADistillerAtZero) {
  for (const std::string& value : {"-0.5", "0"}) {
    try {
      recipe_from(small_recipe(temp_dir("task_w_bad"), 2, "  task_weight: " + value + "\n"));
      FAIL() << "task_weight " << value << " accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("train.task_weight"), std::string::npos) << e.what();
    }
  }
}
