#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "distillery/models/batch_norm.h"
#include "distillery/core/error.h"
#include "distillery/models/flops.h"
#include "distillery/models/mobilenetv2.h"
#include "distillery/models/zoo.h"

using namespace distillery;

namespace {

MobileNetV2Options options_for(double width, int64_t in_channels, int64_t output_stride,
                               int64_t last_channels = 1280) {
  MobileNetV2Options options;
  options.width_mult = width;
  options.in_channels = in_channels;
  options.output_stride = output_stride;
  options.last_channels = last_channels;
  return options;
}

// Closed form, from torchvision's table (t, c, n, s): stem conv-BN, then per block an optional
// 1x1 expansion (cin*h + BN), a depthwise 3x3 (9*h + BN), a 1x1 projection (h*cout + BN);
// optional last 1x1 conv. Channels rounded with the divisor-8 rule written out here again.
int64_t mobilenetv2_params(double width, int64_t in_channels, bool last_conv) {
  auto round8 = [](double v) {
    int64_t r = std::max<int64_t>(8, static_cast<int64_t>(v + 4) / 8 * 8);
    return r < 0.9 * v ? r + 8 : r;
  };
  const int64_t table[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2},
                               {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
  int64_t in = round8(32 * width);
  int64_t total = 9 * in_channels * in + 2 * in;
  for (const auto& row : table) {
    const int64_t t = row[0], out = round8(row[1] * width);
    for (int64_t b = 0; b < row[2]; ++b) {
      const int64_t hidden = in * t;
      if (t != 1) total += in * hidden + 2 * hidden;
      total += 9 * hidden + 2 * hidden;
      total += hidden * out + 2 * out;
      in = out;
    }
  }
  if (last_conv) {
    const int64_t last = round8(1280 * std::max(1.0, width));
    total += in * last + 2 * last;
  }
  return total;
}

std::vector<int64_t> strides_of(const std::vector<StageSpec>& stages) {
  std::vector<int64_t> strides;
  for (const auto& s : stages) strides.push_back(s.stride);
  return strides;
}

// The last BatchNorm of a block: the projection's, which a shortcut block adds to its input.
std::shared_ptr<BatchNorm2dImpl> last_norm(torch::nn::Module& block) {
  std::shared_ptr<BatchNorm2dImpl> last;
  for (auto& m : block.modules(false))
    if (auto bn = std::dynamic_pointer_cast<BatchNorm2dImpl>(m)) last = bn;
  return last;
}

}  // namespace

TEST(MobileNetV2, MakeDivisibleFollowsTorchvision) {
  EXPECT_EQ(make_divisible(32 * 0.5), 16);
  EXPECT_EQ(make_divisible(16 * 0.5), 8);
  EXPECT_EQ(make_divisible(24 * 0.5), 16);  // 12 rounds half up to 16
  EXPECT_EQ(make_divisible(24 * 0.75), 24);  // 18 -> 16 is more than 10% down, so 24
  EXPECT_EQ(make_divisible(16 * 0.35), 8);   // never below the divisor
  EXPECT_EQ(make_divisible(96 * 0.5), 48);
  EXPECT_EQ(make_divisible(1280), 1280);
  EXPECT_EQ(make_divisible(10, 4), 12);
}

TEST(MobileNetV2, ParameterCountsMatchTorchvisionAndClosedForm) {
  // torchvision mobilenet_v2(): 3,504,872 parameters, of which the classifier 1280*1000+1000.
  EXPECT_EQ(count_parameters(*MobileNetV2(options_for(1.0, 3, 32))), 3504872 - 1281000);
  EXPECT_EQ(mobilenetv2_params(1.0, 3, true), 3504872 - 1281000);
  EXPECT_EQ(count_parameters(*MobileNetV2(options_for(0.5, 1, 8))),
            mobilenetv2_params(0.5, 1, true));
  EXPECT_EQ(count_parameters(*MobileNetV2(options_for(0.5, 1, 8, 0))),
            mobilenetv2_params(0.5, 1, false));
  EXPECT_EQ(count_parameters(*MobileNetV2(options_for(0.75, 1, 16, 0))),
            mobilenetv2_params(0.75, 1, false));
}

TEST(MobileNetV2, StagesStridesAndOutputStride) {
  torch::manual_seed(0);
  auto x = torch::randn({2, 1, 64, 64});
  for (auto [os, strides] : std::vector<std::pair<int64_t, std::vector<int64_t>>>{
           {32, {4, 8, 16, 32}}, {16, {4, 8, 16, 16}}, {8, {4, 8, 8, 8}}}) {
    MobileNetV2 net(options_for(0.5, 1, os, 0));
    EXPECT_EQ(strides_of(net->stages()), strides);
    auto features = net->forward(x);
    ASSERT_EQ(features.size(), 4u);
    const std::vector<int64_t> channels = {16, 16, 48, 160};  // x0.5: 24, 32, 96, 320 groups
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(features[i].size(1), channels[i]);
      EXPECT_EQ(net->stages()[i].channels, channels[i]);
      EXPECT_EQ(features[i].size(2), 64 / strides[i]) << "output stride " << os;
      EXPECT_EQ(features[i].size(3), 64 / strides[i]);
    }
  }
  EXPECT_EQ(MobileNetV2(options_for(0.5, 1, 8, 1280))->stages().back().channels, 1280);
  EXPECT_THROW(MobileNetV2(options_for(0.5, 1, 4)), ConfigError);
  EXPECT_THROW(MobileNetV2(options_for(0.5, 1, 64)), ConfigError);
}

TEST(MobileNetV2, DilationPatternOfDepthwiseConvs) {
  // Output stride 8 dilates the 64-group (2) and the 160-group (4); the first block of a
  // dilated group keeps the previous dilation.
  MobileNetV2 net(options_for(0.5, 1, 8, 0));
  std::vector<int64_t> dilations, strides;
  for (const auto& m : net->modules(/*include_self=*/false)) {
    if (auto* conv = m->as<torch::nn::Conv2dImpl>()) {
      if (conv->options.groups() == 1) continue;
      dilations.push_back((*conv->options.dilation())[0]);
      strides.push_back((*conv->options.stride())[0]);
    }
  }
  const std::vector<int64_t> expected_dilations = {1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                                   2, 2, 2, 2, 4, 4, 4};
  const std::vector<int64_t> expected_strides = {1, 2, 1, 2, 1, 1, 1, 1, 1, 1,
                                                 1, 1, 1, 1, 1, 1, 1};
  EXPECT_EQ(dilations, expected_dilations);
  EXPECT_EQ(strides, expected_strides);
}

TEST(MobileNetV2, InvertedResidualAddsShortcutOnlyWhenShapeIsKept) {
  torch::manual_seed(0);
  auto x = torch::randn({2, 8, 6, 6});
  auto zero_last_bn = [](torch::nn::Module& block) {
    torch::NoGradGuard no_grad;
    auto last = last_norm(block);
    last->weight.zero_();
    last->bias.zero_();
  };
  InvertedResidual keep(8, 8, 1, 1, 6);
  zero_last_bn(*keep);
  keep->eval();
  // Projection branch silenced: what remains is exactly the identity shortcut.
  EXPECT_TRUE(torch::equal(keep->forward(x), x));
  InvertedResidual widen(8, 16, 1, 1, 6);
  zero_last_bn(*widen);
  widen->eval();
  EXPECT_EQ(widen->forward(x).abs().max().item<float>(), 0.0f);
  InvertedResidual strided(8, 8, 2, 1, 6);
  EXPECT_EQ(strided->forward(x).sizes(), torch::IntArrayRef({2, 8, 3, 3}));
}

TEST(MobileNetV2, InitialisationIsKaimingFanOut) {
  torch::manual_seed(0);
  MobileNetV2 net(options_for(1.0, 1, 32));
  // The last 1x1 conv: 320 -> 1280, fan_out = 1280.
  std::shared_ptr<torch::nn::Conv2dImpl> last;
  for (const auto& m : net->modules(false))
    if (auto conv = std::dynamic_pointer_cast<torch::nn::Conv2dImpl>(m)) last = conv;
  ASSERT_EQ(last->weight.size(0), 1280);
  const double expected_std = std::sqrt(2.0 / 1280);
  EXPECT_NEAR(last->weight.std().item<double>(), expected_std, 0.02 * expected_std);
  for (const auto& m : net->modules(false))
    if (auto* bn = m->as<BatchNorm2dImpl>())
      EXPECT_TRUE(torch::all(bn->weight == 1).item<bool>() &&
                  torch::all(bn->bias == 0).item<bool>());
}

TEST(MobileNetV2, ClassificationPresetOn28x28) {
  torch::manual_seed(0);
  ModelOptions options;
  options.num_classes = 10;
  options.input_size = 28;
  auto model = create_model("mobilenetv2_cls", options);
  EXPECT_EQ(model->task(), Task::Classification);
  EXPECT_EQ(model->output_stride(), 0);
  EXPECT_EQ(strides_of(model->stages()), (std::vector<int64_t>{1, 2, 4, 8}));
  // Backbone x0.5 with the 1280 last conv, plus a 1280 -> 10 classifier.
  EXPECT_EQ(count_parameters(*model), mobilenetv2_params(0.5, 1, true) + 1280 * 10 + 10);
  model->eval();
  torch::NoGradGuard no_grad;
  auto out = model->forward(torch::randn({2, 1, 28, 28}));
  EXPECT_EQ(out.logits.sizes(), torch::IntArrayRef({2, 10}));
  EXPECT_EQ(out.embedding.sizes(), torch::IntArrayRef({2, 1280}));
  const std::vector<int64_t> sizes = {28, 14, 7, 4};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out.features[i].size(2), sizes[i]);
}

TEST(MobileNetV2, ZeroInitResidualMakesEveryShortcutBlockTheIdentity) {
  torch::manual_seed(0);
  auto options = options_for(0.5, 1, 8, 0);
  options.zero_init_residual = true;
  MobileNetV2 net(options);
  net->eval();
  torch::NoGradGuard no_grad;
  int residual = 0, plain = 0;
  for (const auto& m : net->modules(false)) {
    auto block = std::dynamic_pointer_cast<InvertedResidualImpl>(m);
    if (!block) continue;
    auto last = last_norm(*block);
    if (block->has_residual()) {
      ++residual;
      EXPECT_TRUE(torch::all(last->weight == 0).item<bool>());
    } else {
      ++plain;  // shape-changing blocks have no identity to start from: untouched
      EXPECT_TRUE(torch::all(last->weight == 1).item<bool>());
    }
  }
  // torchvision's layout: 17 blocks; the first of each of the 7 groups changes the shape,
  // so the repeats keep it: 0 + 1 + 2 + 3 + 2 + 2 + 0 = 10 blocks.
  EXPECT_EQ(residual, 10);
  EXPECT_EQ(plain, 7);
  // A block that keeps the shape now returns its input exactly.
  auto x = torch::randn({2, 16, 5, 5});
  InvertedResidual keep(16, 16, 1, 2, 6);
  keep->zero_init_last_norm();
  keep->eval();
  EXPECT_TRUE(torch::equal(keep->forward(x), x));
  // The zoo's segmentation preset uses it; the classification preset keeps torchvision's init.
  ModelOptions seg;
  auto count_zero_scales = [](const torch::nn::Module& model) {
    int zero = 0;
    for (const auto& m : model.modules(false))
      if (auto* bn = m->as<BatchNorm2dImpl>()) zero += torch::all(bn->weight == 0).item<bool>();
    return zero;
  };
  EXPECT_EQ(count_zero_scales(*create_model("deeplabv3_mobilenetv2", seg)), 10);
  ModelOptions cls;
  cls.num_classes = 10;
  cls.input_size = 28;
  EXPECT_EQ(count_zero_scales(*create_model("mobilenetv2_cls", cls)), 0);
}
