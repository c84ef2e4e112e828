#include <fmt/format.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "distillery/core/error.h"
#include "distillery/core/runtime.h"
#include "distillery/models/zoo.h"
#include "distillery/train/checkpoint.h"
#include "distillery/train/data_setup.h"
#include "distillery/train/teacher_cache.h"
#include "distillery/train/trainer.h"

using namespace distillery;
namespace fs = std::filesystem;

namespace {

struct Fixture {
  std::string dir;
  std::string teacher_ckpt;
};

// A random (untrained) CNN teacher checkpoint in a fresh directory.
Fixture make_fixture(const std::string& name) {
  Fixture f;
  f.dir = (fs::temp_directory_path() / fmt::format("distillery_cache_{}_{}", name, ::getpid())).string();
  fs::remove_all(f.dir);
  fs::create_directories(f.dir);
  f.teacher_ckpt = f.dir + "/teacher.ckpt";
  torch::manual_seed(11);
  ModelOptions options;
  options.input_size = 32;
  Model teacher = create_model("deeplabv3_resnet18_slim", options);
  CheckpointMeta meta;
  meta.model_name = "deeplabv3_resnet18_slim";
  meta.num_classes = teacher->num_classes();
  save_checkpoint(f.teacher_ckpt, meta, CheckpointParts{teacher.get()});
  return f;
}

// SegFormer student, CNN teacher, pixel KD + HeteroAKD (teacher stages 2 and 3, logits).
std::string recipe_text(const Fixture& f, const std::string& run, int64_t steps, const std::string& teacher_extra,
                        int64_t seed = 5) {
  return fmt::format(R"(
name: cache_test
seed: {}
output: {{dir: {}/{}}}
data:
  benchmark: fashion-seg
  fashion_seg: {{canvas: 32, train_scenes: 200, val_scenes: 20, min_items: 1, max_items: 2, min_scale: 0.8, max_scale: 1.0}}
  augment: {{enabled: true}}
model: {{name: segformer_b0}}
teacher: {{model: {{name: deeplabv3_resnet18_slim}}, checkpoint: {}{}}}
distillers:
  - {{name: kd}}
  - {{name: heteroakd, student_stages: [1, 2], teacher_stages: [-2, -1]}}
train:
  steps: {}
  batch_size: 8
  eval_every: 1000
  eval_batch_size: 20
  log_every: 1
  optimizer: {{type: sgd, lr: 0.01}}  # AdamW would turn rounding noise in near-zero gradients into lr-sized steps
)", seed, f.dir, run, f.teacher_ckpt, teacher_extra, steps);
}

Recipe parse(const std::string& text) { return Recipe::parse(Config::from_string(text, "cache_test.yaml")); }

std::vector<torch::Tensor> weights(const torch::nn::Module& m) {
  std::vector<torch::Tensor> out;
  for (auto& p : m.parameters()) out.push_back(p.detach().clone());
  return out;
}

}  // namespace

TEST(TeacherCache, StoresWhatTheDistillersReadAndMatchesTheOnlineTeacher) {
  set_thread_count(0);
  Fixture f = make_fixture("match");
  const std::string cache = f.dir + "/t.cache";
  Recipe recipe = parse(recipe_text(f, "build", 6, ""));
  build_teacher_cache(recipe, cache, 6);

  CachedTeacher cached(cache);
  std::vector<std::string> names;
  for (const auto& e : cached.header().entries) names.push_back(e.name);
  // The slim ResNet has 4 stages: -2, -1 are stages 2 and 3; KD and HeteroAKD's KD term read logits.
  EXPECT_EQ(names, (std::vector<std::string>{"logits", "features[2]", "features[3]"}));
  EXPECT_EQ(cached.header().steps, 6);
  EXPECT_EQ(cached.header().batch_size, 8);

  // Step k of the cache = the online teacher on the batch of step k, to fp16 precision.
  Recipe again = parse(recipe_text(f, "online", 6, ""));
  auto online = make_teacher_source(again.teacher);
  DataSplits data = load_data_splits(again.data);
  for (int64_t step : {0, 3, 5}) {
    Batch batch = make_train_batch(*data.train, train_loader_options(again), step);
    ModelOutput expected = online->outputs(batch);
    ModelOutput got = cached.outputs(batch);
    EXPECT_TRUE(torch::allclose(got.logits, expected.logits, 2e-3, 2e-3)) << "step " << step;
    EXPECT_TRUE(torch::allclose(got.features[3], expected.features[3], 2e-3, 2e-3)) << "step " << step;
    EXPECT_FALSE(got.features[0].defined());
  }
  fs::remove_all(f.dir);
}

TEST(TeacherCache, CachedRunFollowsTheOnlineRun) {
  set_thread_count(0);
  Fixture f = make_fixture("train");
  const std::string cache = f.dir + "/t.cache";
  build_teacher_cache(parse(recipe_text(f, "build", 5, "")), cache, 5);

  Trainer online(parse(recipe_text(f, "online", 5, "")));
  online.run();
  Trainer cached(parse(recipe_text(f, "cached", 5, fmt::format(", source: cache, path: {}", cache))));
  cached.run();
  // Same initialisation and batches; only fp16 rounding of the teacher's outputs differs.
  auto a = weights(*online.student()), b = weights(*cached.student());
  ASSERT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>());
  EXPECT_LT(worst, 1e-3);
  EXPECT_GT(worst, 0.0);  // really read from the (rounded) cache, not from an online teacher
  fs::remove_all(f.dir);
}

TEST(TeacherCache, RefusesAnotherScheduleAndCorruptFiles) {
  set_thread_count(1);
  Fixture f = make_fixture("bad");
  const std::string cache = f.dir + "/t.cache";
  build_teacher_cache(parse(recipe_text(f, "build", 3, "")), cache, 3);
  const std::string source = fmt::format(", source: cache, path: {}", cache);

  auto expect_config_error = [&](const std::string& text, const std::string& needle) {
    try {
      Trainer trainer(parse(text));
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_config_error(recipe_text(f, "seed", 3, source, /*seed=*/6), "was built for seed 5");
  expect_config_error(recipe_text(f, "steps", 4, source), "holds 3 steps, the run needs 4");

  // One flipped byte in a block: caught by the block's checksum when that step is read.
  auto size = fs::file_size(cache);
  {
    std::fstream file(cache, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(size - 8 - 3 * 4 - 100));
    file.put('\x7f');
  }
  Recipe recipe = parse(recipe_text(f, "corrupt", 3, ""));
  DataSplits data = load_data_splits(recipe.data);
  CachedTeacher corrupt(cache);
  Batch last = make_train_batch(*data.train, train_loader_options(recipe), 2);
  EXPECT_THROW(corrupt.outputs(last), DataError);
  Batch first = make_train_batch(*data.train, train_loader_options(recipe), 0);
  EXPECT_NO_THROW(corrupt.outputs(first));

  fs::resize_file(cache, size - 10);
  try {
    CachedTeacher truncated(cache);
    ADD_FAILURE() << "truncated cache accepted";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("truncated or corrupt"), std::string::npos) << e.what();
  }
  fs::remove_all(f.dir);
}
