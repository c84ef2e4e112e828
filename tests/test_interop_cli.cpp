// End to end through the command line on a folder-layout dataset written here: train a
// SegFormer on 3-channel photos (it must learn), evaluate with class names, predict label PNGs
// and overlays, export safetensors, and start a new run from the exported weights.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <torch/torch.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "distillery/core/image_io.h"
#include "distillery/core/png.h"
#include "distillery/core/safetensors.h"

namespace fs = std::filesystem;
using namespace distillery;

namespace {

struct Result {
  int code;
  std::string output;
};

Result run_distill(const std::string& args) {
  std::string command = std::string(DISTILL_BINARY) + " --threads 1 " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  std::string output;
  std::array<char, 4096> buffer{};
  while (fgets(buffer.data(), buffer.size(), pipe)) output += buffer.data();
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

// A blue background (class 0) with an orange square (class 1) and a green bar (class 2) at
// positions that vary per image.
std::pair<torch::Tensor, torch::Tensor> scene(int index, int64_t height, int64_t width) {
  auto image = torch::empty({height, width, 3}, torch::kUInt8);
  image.select(2, 0).fill_(30);
  image.select(2, 1).fill_(60);
  image.select(2, 2).fill_(170);
  auto labels = torch::zeros({height, width}, torch::kUInt8);
  const int64_t top = (index * 7) % (height - 16), left = (index * 11) % (width - 16);
  auto square = image.narrow(0, top, 14).narrow(1, left, 14);
  square.select(2, 0).fill_(240);
  square.select(2, 1).fill_(140);
  square.select(2, 2).fill_(20);
  labels.narrow(0, top, 14).narrow(1, left, 14).fill_(1);
  const int64_t bar = (index * 5) % (width - 6);
  auto column = image.narrow(1, bar, 6);
  column.select(2, 0).fill_(40);
  column.select(2, 1).fill_(220);
  column.select(2, 2).fill_(60);
  labels.narrow(1, bar, 6).fill_(2);
  return {image, labels};
}

class InteropCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("distillery_interop_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    const fs::path data = root_ / "data";
    for (const char* split : {"train", "val"}) {
      fs::create_directories(data / "images" / split);
      fs::create_directories(data / "masks" / split);
      const int count = std::string(split) == "train" ? 24 : 4;
      for (int i = 0; i < count; ++i) {
        const int index = std::string(split) == "train" ? i : 100 + i;
        auto [image, labels] = scene(index, 40, 48);
        const std::string name = "scene" + std::to_string(i);
        if (i % 2)
          write_jpeg((data / "images" / split / (name + ".jpg")).string(), image, 95);
        else
          write_png((data / "images" / split / (name + ".png")).string(), image);
        write_png((data / "masks" / split / (name + ".png")).string(), labels);
      }
    }
    std::ofstream(data / "classes.txt") << "water\nboat #ff9900\nweed #00cc00\n";
    recipe_ = (root_ / "folder.yaml").string();
    std::ofstream(recipe_) << "name: folder_test\nseed: 0\noutput: {dir: " << (root_ / "run").string() << "}\n"
                           << "data: {benchmark: folder, root: " << data.string() << ", crop_size: 32,\n"
                           << "       augment: {min_scale: 0.75, max_scale: 1.25}, eval: {mode: slide, crop: 32, stride: 16}}\n"
                           << "model: {name: segformer_b0}\n"
                           << "train: {steps: 150, batch_size: 8, eval_every: 150, log_every: 50, prefetch: 2,\n"
                           << "        optimizer: {type: adamw, lr: 0.004, warmup_steps: 10}}\n";
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }

  static inline fs::path root_;
  static inline std::string recipe_;
};

TEST_F(InteropCli, TrainEvalPredictExportAndReload) {
  Result train = run_distill("train " + recipe_);
  ASSERT_EQ(train.code, 0) << train.output;
  const std::string checkpoint = (root_ / "run" / "latest.ckpt").string();

  Result eval = run_distill("eval " + recipe_ + " --checkpoint " + checkpoint);
  ASSERT_EQ(eval.code, 0) << eval.output;
  for (const char* name : {"water", "boat", "weed"}) EXPECT_NE(eval.output.find(name), std::string::npos) << eval.output;
  const auto at = eval.output.find("mIoU ");
  ASSERT_NE(at, std::string::npos) << eval.output;
  const double miou = std::stod(eval.output.substr(at + 5));
  EXPECT_GT(miou, 0.75) << "150 steps on three flat colours must learn; " << eval.output;

  // predict: one PNG and one JPEG of full size, label maps with class ids, overlays.
  const fs::path out = root_ / "pred";
  const std::string a = (root_ / "data/images/val/scene0.png").string();
  const std::string b = (root_ / "data/images/val/scene1.jpg").string();
  Result predict = run_distill("predict " + recipe_ + " --checkpoint " + checkpoint + " " + a + " " + b +
                               " --out " + out.string());
  ASSERT_EQ(predict.code, 0) << predict.output;
  torch::Tensor labels = read_png_indices((out / "scene0_labels.png").string());
  torch::Tensor truth = read_png_labels((root_ / "data/masks/val/scene0.png").string());
  ASSERT_EQ(labels.sizes(), truth.sizes());
  const double pixel_accuracy = (labels == truth).to(torch::kFloat).mean().item<double>();
  EXPECT_GT(pixel_accuracy, 0.85);
  std::printf("folder run: val mIoU %.4f, predicted scene0 pixel accuracy %.4f\n", miou, pixel_accuracy);
  torch::Tensor overlay = read_png((out / "scene1_overlay.png").string());
  EXPECT_EQ(overlay.sizes(), (std::vector<int64_t>{40, 48, 3}));
  EXPECT_NE(predict.output.find("water"), std::string::npos) << predict.output;

  // export with the SegFormer reference names, then start a run from those weights.
  const std::string weights = (root_ / "student.safetensors").string();
  Result exported = run_distill("export " + recipe_ + " --checkpoint " + checkpoint + " --names mit --out " + weights);
  ASSERT_EQ(exported.code, 0) << exported.output;
  SafetensorsFile file = read_safetensors(weights);
  EXPECT_TRUE(file.tensors.count("backbone.block1.0.attn.norm.weight"));
  EXPECT_TRUE(file.tensors.count("decode_head.linear_pred.weight"));
  EXPECT_EQ(file.metadata.at("distillery_model"), "segformer_b0");

  Result reload = run_distill("train " + recipe_ + " --set model.pretrained=" + weights +
                              " --set train.steps=1 --set train.eval_every=1 --set output.dir=" +
                              (root_ / "run2").string());
  ASSERT_EQ(reload.code, 0) << reload.output;
  EXPECT_NE(reload.output.find("mit names under 'backbone.'"), std::string::npos) << reload.output;
  // One step from the trained weights is still far better than chance.
  const auto final_at = reload.output.find("final mIoU ");
  ASSERT_NE(final_at, std::string::npos) << reload.output;
  const double reloaded = std::stod(reload.output.substr(final_at + 11));
  EXPECT_GT(reloaded, 0.5) << reload.output;
  std::printf("one step from the exported weights: val mIoU %.4f\n", reloaded);

  // The exported student as a frozen teacher for KD (teacher.model.pretrained, no checkpoint).
  Result distil = run_distill("train " + recipe_ + " --set teacher.model.name=segformer_b0 --set teacher.model.pretrained=" +
                              weights + " --set 'distillers=[{name: kd}]' --set train.steps=2 --set train.eval_every=2" +
                              " --set output.dir=" + (root_ / "run3").string());
  ASSERT_EQ(distil.code, 0) << distil.output;
  EXPECT_NE(distil.output.find("Teacher segformer_b0 from " + weights + ": loaded"), std::string::npos) << distil.output;

  // show-data draws the first samples' centre crops.
  Result show = run_distill("show-data " + recipe_ + " --count 2 --out " + (root_ / "show.png").string());
  ASSERT_EQ(show.code, 0) << show.output;
  EXPECT_EQ(read_png((root_ / "show.png").string()).size(2), 3);

  // A corrupt weights file is one line and exit 1; a missing one is a config error.
  std::ofstream(root_ / "bad.safetensors") << "garbage!";
  Result bad = run_distill("train " + recipe_ + " --set model.pretrained=" + (root_ / "bad.safetensors").string());
  EXPECT_EQ(bad.code, 1) << bad.output;
  EXPECT_NE(bad.output.find("safetensors"), std::string::npos) << bad.output;
  Result missing = run_distill("train " + recipe_ + " --set model.pretrained=/nonexistent.safetensors");
  EXPECT_EQ(missing.code, 2) << missing.output;
  EXPECT_NE(missing.output.find("model.pretrained"), std::string::npos) << missing.output;
}

}  // namespace
