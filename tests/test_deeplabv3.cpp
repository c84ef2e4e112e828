#include <gtest/gtest.h>
#include <torch/torch.h>

#include "distillery/core/error.h"
#include "distillery/models/deeplabv3.h"
#include "distillery/models/flops.h"
#include "distillery/models/resnet.h"
#include "distillery/models/zoo.h"

using namespace distillery;

namespace {

CnnBackbone small_resnet(int64_t width) {
  auto options = ResNetOptions::for_depth(18);
  options.base_width = width;
  options.in_channels = 1;
  options.stem = ResNetStemOptions{3, 2, false};
  options.output_stride = 8;
  return std::make_shared<ResNetImpl>(options);
}

// conv (no bias) + BN
int64_t cbr(int64_t k, int64_t in, int64_t out) { return k * k * in * out + 2 * out; }

// ASPP (1x1, one 3x3 per rate, pooling 1x1, 1x1 projection of the concatenation), 3x3 refine,
// 1x1 classifier with bias.
int64_t deeplab_head_params(int64_t in, int64_t c, int64_t rates, int64_t classes) {
  return cbr(1, in, c) + rates * cbr(3, in, c) + cbr(1, in, c) + cbr(1, (rates + 2) * c, c) +
         cbr(3, c, c) + c * classes + classes;
}

// 3x3 conv to in/4 + BN, 1x1 classifier with bias.
int64_t fcn_head_params(int64_t in, int64_t classes) {
  return cbr(3, in, in / 4) + (in / 4) * classes + classes;
}

}  // namespace

TEST(DeepLabV3, AtrousRatesScaleWithTheFeatureMap) {
  EXPECT_EQ(aspp_rates_for(64, 8), (std::vector<int64_t>{1, 2, 3}));     // 8x8 map
  EXPECT_EQ(aspp_rates_for(64, 16), (std::vector<int64_t>{1, 2, 3}));    // 4x4 map, floor 1
  EXPECT_EQ(aspp_rates_for(128, 8), (std::vector<int64_t>{2, 4, 6}));    // 16x16 map
  EXPECT_EQ(aspp_rates_for(513, 8), (std::vector<int64_t>{8, 16, 24}));  // 65x65 map
  EXPECT_EQ(aspp_rates_for(512, 16), (std::vector<int64_t>{4, 8, 12}));  // 32x32 map
  EXPECT_THROW(aspp_rates_for(0, 8), ConfigError);
}

TEST(DeepLabV3, HeadParameterCountsMatchClosedForm) {
  for (bool aux : {false, true}) {
    auto backbone = small_resnet(8);
    const int64_t backbone_params = count_parameters(*backbone);
    DeepLabV3Options options;
    options.num_classes = 11;
    options.aspp_channels = 24;
    options.atrous_rates = {1, 2, 3};
    options.aux_head = aux;
    DeepLabV3 model(backbone, options);
    EXPECT_EQ(model->has_aux_head(), aux);
    const int64_t expected = backbone_params + deeplab_head_params(64, 24, 3, 11) +
                             (aux ? fcn_head_params(32, 11) : 0);
    EXPECT_EQ(count_parameters(*model), expected) << "aux " << aux;
  }
}

TEST(DeepLabV3, AtrousBranchAndImagePoolingReachTheExpectedPixels) {
  // d out(0,0) / d in(p): every pixel gets the same image-pooling contribution; the rate-3
  // branch adds to pixels (0,0), (0,3), (3,0), (3,3) only.
  torch::manual_seed(0);
  ASPP aspp(4, 6, std::vector<int64_t>{3}, /*dropout=*/0.0);
  aspp->to(torch::kFloat64);
  aspp->eval();
  auto x = torch::randn({1, 4, 8, 8}, torch::kFloat64).requires_grad_(true);
  aspp->forward(x).select(2, 0).select(2, 0).sum().backward();
  auto g = x.grad().abs().sum(1)[0];  // [8, 8]
  const double pooled_only = g[1][1].item<double>();
  EXPECT_GT(pooled_only, 0.0);
  EXPECT_NEAR(g[5][5].item<double>(), pooled_only, 1e-12);
  EXPECT_NEAR(g[7][2].item<double>(), pooled_only, 1e-12);
  EXPECT_GT(std::abs(g[3][3].item<double>() - pooled_only), 1e-6);
  EXPECT_GT(std::abs(g[0][3].item<double>() - pooled_only), 1e-6);
  EXPECT_NEAR(g[2][2].item<double>(), pooled_only, 1e-12);  // a rate-1 branch would reach it
}

TEST(DeepLabV3, EverySegmentationPresetOn64x64) {
  torch::manual_seed(0);
  struct Expected {
    std::string name;
    std::vector<int64_t> strides;
    double reference_params;  // BENCHMARKS.md where it gives one
  };
  const std::vector<Expected> presets = {{"deeplabv3_resnet50", {4, 8, 8, 8}, 0},
                                         {"deeplabv3_resnet18", {4, 8, 8, 8}, 4.0e6},
                                         {"deeplabv3_resnet18_slim", {4, 8, 8, 8}, 0},
                                         {"deeplabv3_mobilenetv2", {4, 8, 8, 8}, 0.54e6}};
  auto x = torch::randn({2, 1, 64, 64});
  for (const auto& preset : presets) {
    SCOPED_TRACE(preset.name);
    EXPECT_EQ(find_model(preset.name).task, Task::Segmentation);
    ModelOptions options;  // 64x64, 1 channel, 11 classes
    options.aux_head = preset.name == "deeplabv3_resnet18_slim";
    auto model = create_model(preset.name, options);
    EXPECT_EQ(model->task(), Task::Segmentation);
    EXPECT_EQ(model->output_stride(), 8);
    EXPECT_EQ(model->num_classes(), 11);
    if (preset.reference_params > 0)
      EXPECT_NEAR(count_parameters(*model), preset.reference_params,
                  0.05 * preset.reference_params);
    const auto stages = model->stages();
    ASSERT_EQ(stages.size(), 4u);
    model->eval();
    torch::NoGradGuard no_grad;
    auto out = model->forward(x);
    EXPECT_EQ(out.logits.sizes(), torch::IntArrayRef({2, 11, 8, 8}));
    ASSERT_EQ(out.features.size(), 4u);
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(stages[i].stride, preset.strides[i]);
      EXPECT_EQ(out.features[i].size(1), stages[i].channels);
      EXPECT_EQ(out.features[i].size(2), 64 / stages[i].stride);
      EXPECT_EQ(out.features[i].size(3), 64 / stages[i].stride);
    }
    EXPECT_EQ(out.aux_logits.defined(), options.aux_head);
    if (options.aux_head) EXPECT_EQ(out.aux_logits.sizes(), torch::IntArrayRef({2, 11, 8, 8}));
    EXPECT_FALSE(out.embedding.defined());
  }
}

TEST(DeepLabV3, WidthAndOptionsOverrideThePreset) {
  ModelOptions options;
  options.width = 0.125;  // ResNet base width 8, ASPP 32
  options.num_classes = 5;
  options.in_channels = 3;
  options.aux_head = true;
  auto model = create_model("deeplabv3_resnet18", options);
  const std::vector<int64_t> channels = {8, 16, 32, 64};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(model->stages()[i].channels, channels[i]);
  EXPECT_EQ(count_parameters(*model),
            count_parameters(*small_resnet(8)) + 2 * 9 * 8 /* 3-channel stem */ +
                deeplab_head_params(64, 32, 3, 5) + fcn_head_params(32, 5));
  // MobileNetV2 x0.125: the 320-group becomes make_divisible(40) = 40 channels.
  EXPECT_EQ(create_model("deeplabv3_mobilenetv2", options)->stages().back().channels, 40);

  options.width = -1;
  EXPECT_THROW(create_model("deeplabv3_resnet18", options), ConfigError);
  options.width = 0;
  options.num_classes = 0;
  EXPECT_THROW(create_model("deeplabv3_mobilenetv2", options), ConfigError);
}

// head_dropout replaces the ASPP projection's dropout: with 0 two training-mode forwards of the
// same batch agree exactly (BatchNorm uses the batch's own statistics both times); with the
// preset's 0.5 they differ.
TEST(DeepLabV3, HeadDropoutOverridesThePreset) {
  torch::manual_seed(0);
  auto images = torch::randn({4, 1, 64, 64});
  for (const char* name : {"deeplabv3_resnet18_slim", "deeplabv3_mobilenetv2"}) {
    ModelOptions options;
    options.head_dropout = 0;
    auto plain = create_model(name, options);
    plain->train();
    EXPECT_TRUE(torch::equal(plain->forward(images).logits, plain->forward(images).logits)) << name;
    auto preset = create_model(name, ModelOptions{});
    preset->train();
    EXPECT_FALSE(torch::allclose(preset->forward(images).logits, preset->forward(images).logits))
        << name;
  }
}

TEST(DeepLabV3, EveryParameterReceivesGradient) {
  torch::manual_seed(0);
  ModelOptions options;
  options.width = 0.125;
  options.aux_head = true;
  auto model = create_model("deeplabv3_resnet18", options);
  model->train();
  auto out = model->forward(torch::randn({2, 1, 32, 32}));
  (out.logits.pow(2).mean() + out.aux_logits.pow(2).mean()).backward();
  for (const auto& p : model->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_GT(p.value().grad().abs().sum().item<double>(), 0.0) << p.key();
  }
}

TEST(DeepLabV3, ZooListsTheCnnPresets) {
  const std::vector<std::pair<std::string, Task>> expected = {
      {"deeplabv3_resnet50", Task::Segmentation},   {"deeplabv3_resnet18", Task::Segmentation},
      {"deeplabv3_resnet18_slim", Task::Segmentation},
      {"deeplabv3_mobilenetv2", Task::Segmentation},
      {"resnet18_cls", Task::Classification},       {"resnet50_cls", Task::Classification},
      {"mobilenetv2_cls", Task::Classification}};
  for (const auto& [name, task] : expected) {
    EXPECT_EQ(find_model(name).task, task) << name;
    EXPECT_FALSE(find_model(name).description.empty()) << name;
  }
}
