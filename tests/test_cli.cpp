// End-to-end tests of the `distill` executable: exit codes and one-line errors.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace fs = std::filesystem;

namespace {

struct Result {
  int code;
  std::string output;  // stdout + stderr
};

Result run_distill(const std::string& args) {
  std::string command = std::string(DISTILL_BINARY) + " " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  std::string output;
  std::array<char, 4096> buffer;
  while (size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) output.append(buffer.data(), n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

std::string temp_dir(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("distillery_cli_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

std::string write_file(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

const char* kTinyRecipe = R"(
name: tiny
seed: 1
data:
  fashion_seg: {canvas: 32, train_scenes: 64, val_scenes: 16, max_items: 2, max_scale: 1.0}
model: {name: deeplabv3_resnet18_slim, width: 0.25}
train: {steps: 4, batch_size: 4, eval_every: 4, log_every: 1}
)";

}  // namespace

TEST(Cli, UnknownKeyExitsWithTwoAndNamesIt) {
  std::string dir = temp_dir("unknown");
  std::string recipe = write_file(dir + "/r.yaml", std::string(kTinyRecipe) + "trian: {steps: 3}\n");
  Result r = run_distill("train " + recipe + " --set output.dir=" + dir + "/run");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("unknown key 'trian'"), std::string::npos) << r.output;
}

TEST(Cli, WrongTypeAndBadValueExitWithTwo) {
  std::string dir = temp_dir("types");
  std::string recipe = write_file(dir + "/r.yaml", kTinyRecipe);
  Result r = run_distill("train " + recipe + " --set train.steps=many");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("train.steps"), std::string::npos) << r.output;
  r = run_distill("train " + recipe + " --set train.optimizer.lr=-1");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("train.optimizer.lr"), std::string::npos) << r.output;
  r = run_distill("train " + recipe + " --set model.name=resnet9000");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("resnet9000"), std::string::npos) << r.output;
}

TEST(Cli, MissingFilesExitWithTwo) {
  Result r = run_distill("train /nonexistent/recipe.yaml");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("/nonexistent/recipe.yaml"), std::string::npos);
  std::string dir = temp_dir("missing");
  std::string recipe = write_file(dir + "/r.yaml", kTinyRecipe);
  r = run_distill("train " + recipe + " --set data.mnist_dir=/nonexistent/mnist");
  EXPECT_NE(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("/nonexistent/mnist"), std::string::npos) << r.output;
}

TEST(Cli, TrainWritesRunDirectoryAndEvalReadsIt) {
  std::string dir = temp_dir("train");
  std::string recipe = write_file(dir + "/r.yaml", kTinyRecipe);
  Result r = run_distill("--threads 1 train " + recipe + " --set output.dir=" + dir + "/run");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir + "/run/metrics.jsonl"));
  EXPECT_TRUE(fs::exists(dir + "/run/config.yaml"));
  r = run_distill("eval " + recipe + " --checkpoint " + dir + "/run/latest.ckpt");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("mIoU"), std::string::npos);
  EXPECT_NE(r.output.find("Ankle boot"), std::string::npos) << r.output;
  // A corrupt checkpoint is refused with one line naming it.
  write_file(dir + "/bad.ckpt", "garbage");
  r = run_distill("eval " + recipe + " --checkpoint " + dir + "/bad.ckpt");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("bad.ckpt"), std::string::npos);
}

TEST(Cli, ModelsListsTheZoo) {
  Result r = run_distill("models");
  ASSERT_EQ(r.code, 0) << r.output;
  for (const char* name : {"deeplabv3_resnet50", "deeplabv3_resnet18", "deeplabv3_mobilenetv2",
                           "segformer_b0", "segformer_b2"})
    EXPECT_NE(r.output.find(name), std::string::npos) << name;
}

TEST(Cli, ShowDataWritesPng) {
  std::string dir = temp_dir("show");
  std::string recipe = write_file(dir + "/r.yaml", kTinyRecipe);
  Result r = run_distill("show-data " + recipe + " --count 4 --out " + dir + "/grid.png");
  ASSERT_EQ(r.code, 0) << r.output;
  std::ifstream png(dir + "/grid.png", std::ios::binary);
  char magic[8] = {};
  png.read(magic, 8);
  EXPECT_EQ(std::string(magic + 1, 3), "PNG");
}

TEST(Cli, HeteroAKDRunTrainsMissingTeacherThenDistils) {
  std::string dir = temp_dir("hetero");
  std::string teacher = write_file(dir + "/teacher.yaml", kTinyRecipe);
  std::string student = write_file(dir + "/student.yaml", std::string(R"(
name: tiny_student
seed: 2
data:
  fashion_seg: {canvas: 32, train_scenes: 64, val_scenes: 16, max_items: 2, max_scale: 1.0}
model: {name: segformer_b0, width: 0.5}
teacher:
  model: {name: deeplabv3_resnet18_slim, width: 0.25}
  checkpoint: )") + dir + "/teacher/latest.ckpt\n  recipe: " + teacher + R"(
distillers:
  - {name: heteroakd, student_stages: [1, 2], teacher_stages: [-2, -1]}
train: {steps: 3, batch_size: 4, eval_every: 3, log_every: 1, optimizer: {type: adamw}}
)");
  Result r = run_distill("--threads 1 train " + student + " --set output.dir=" + dir + "/student");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir + "/teacher/latest.ckpt"));  // trained first, from teacher.recipe
  std::ifstream log(dir + "/student/metrics.jsonl");
  std::string all((std::istreambuf_iterator<char>(log)), {});
  for (const char* term : {"\"ce\"", "\"heteroakd.mix\"", "\"heteroakd.proj\"", "\"heteroakd.kd\"", "mIoU"})
    EXPECT_NE(all.find(term), std::string::npos) << term << "\n" << all;
}
