// Every segmentation preset starts with near-zero class scores, so that the first cross-entropy
// is log C (uninformed) rather than the ~5 a fan-out-initialised classifier gave, which left
// some seeds stuck near the all-background prediction (logit std ~3 then, < 0.3 now).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "distillery/models/zoo.h"

using namespace distillery;

TEST(ModelInit, EverySegmentationPresetStartsUninformed) {
  int checked = 0;
  for (const auto& entry : model_zoo()) {
    if (entry.task != Task::Segmentation) continue;
    for (int seed = 0; seed < 2; ++seed) {
      torch::manual_seed(seed);
      auto model = create_model(entry.name, ModelOptions{});
      model->train();
      auto images = torch::rand({4, 1, 64, 64});
      auto logits = model->forward(images).logits;
      auto labels = torch::randint(0, 11, {4, logits.size(2), logits.size(3)});
      const double ce = torch::nn::functional::cross_entropy(logits, labels).item<double>();
      EXPECT_LT(logits.std().item<double>(), 0.5) << entry.name << " seed " << seed;
      EXPECT_NEAR(ce, std::log(11.0), 0.05) << entry.name << " seed " << seed;
    }
    ++checked;
  }
  EXPECT_GE(checked, 6);  // the CNN and Transformer segmentation presets
}
