#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "distillery/models/batch_norm.h"
#include "distillery/core/error.h"
#include "distillery/models/flops.h"
#include "distillery/models/resnet.h"
#include "distillery/models/zoo.h"

using namespace distillery;

namespace {

ResNetOptions small_options(int64_t depth, int64_t width, ResNetStemOptions stem,
                            int64_t output_stride) {
  auto options = ResNetOptions::for_depth(depth);
  options.base_width = width;
  options.in_channels = 1;
  options.stem = stem;
  options.output_stride = output_stride;
  return options;
}

const ResNetStemOptions kImageNetStem{7, 2, true};
const ResNetStemOptions kSmallStem{3, 2, false};

int64_t conv_params(int64_t k, int64_t in, int64_t out) { return k * k * in * out; }
int64_t bn_params(int64_t c) { return 2 * c; }

// Closed form: stem conv + BN, then per block its convs + BNs (+ 1x1 projection shortcut when
// the block changes stride or width).
int64_t resnet_params(bool bottleneck, const std::vector<int64_t>& layers, int64_t w,
                      int64_t in_channels, int64_t stem_kernel) {
  int64_t total = conv_params(stem_kernel, in_channels, w) + bn_params(w);
  int64_t in = w;
  for (int stage = 0; stage < 4; ++stage) {
    const int64_t planes = w << stage;
    const int64_t out = bottleneck ? 4 * planes : planes;
    for (int64_t block = 0; block < layers[stage]; ++block) {
      const bool strided = block == 0 && stage > 0;
      if (bottleneck) {
        total += conv_params(1, in, planes) + bn_params(planes);
        total += conv_params(3, planes, planes) + bn_params(planes);
        total += conv_params(1, planes, out) + bn_params(out);
      } else {
        total += conv_params(3, in, planes) + bn_params(planes);
        total += conv_params(3, planes, planes) + bn_params(planes);
      }
      if (strided || in != out) total += conv_params(1, in, out) + bn_params(out);
      in = out;
    }
  }
  return total;
}

std::vector<int64_t> spatial_sizes(const std::vector<torch::Tensor>& features) {
  std::vector<int64_t> sizes;
  for (const auto& f : features) sizes.push_back(f.size(2));
  return sizes;
}

std::vector<int64_t> strides_of(const std::vector<StageSpec>& stages) {
  std::vector<int64_t> strides;
  for (const auto& s : stages) strides.push_back(s.stride);
  return strides;
}

}  // namespace

TEST(ResNet, TorchvisionParameterCountsWithoutClassifier) {
  // torchvision resnet18 / 34 / 50 have 11,689,512 / 21,797,672 / 25,557,032 parameters; their
  // fc layers 512*1000+1000 and 2048*1000+1000.
  for (auto [depth, expected] : std::vector<std::pair<int64_t, int64_t>>{
           {18, 11689512 - 513000}, {34, 21797672 - 513000}, {50, 25557032 - 2049000}}) {
    auto options = ResNetOptions::for_depth(depth);
    options.in_channels = 3;
    ResNet net(options);
    EXPECT_EQ(count_parameters(*net), expected) << "depth " << depth;
  }
}

TEST(ResNet, ParameterCountsMatchClosedForm) {
  ResNet basic(small_options(18, 8, kSmallStem, 8));
  EXPECT_EQ(count_parameters(*basic), resnet_params(false, {2, 2, 2, 2}, 8, 1, 3));
  ResNet bottleneck(small_options(50, 4, kImageNetStem, 32));
  EXPECT_EQ(count_parameters(*bottleneck), resnet_params(true, {3, 4, 6, 3}, 4, 1, 7));
  auto custom = small_options(50, 4, kSmallStem, 16);
  custom.layers = {1, 1, 2, 1};
  EXPECT_EQ(count_parameters(*ResNet(custom)), resnet_params(true, {1, 1, 2, 1}, 4, 1, 3));
}

TEST(ResNet, StageStridesAndShapesForStemsAndOutputStrides) {
  torch::manual_seed(0);
  struct Case {
    ResNetStemOptions stem;
    int64_t output_stride;
    std::vector<int64_t> strides;
  };
  const std::vector<Case> cases = {{kImageNetStem, 32, {4, 8, 16, 32}},
                                   {kImageNetStem, 16, {4, 8, 16, 16}},
                                   {kImageNetStem, 8, {4, 8, 8, 8}},
                                   {kSmallStem, 16, {2, 4, 8, 16}},
                                   {kSmallStem, 8, {2, 4, 8, 8}},
                                   {ResNetStemOptions{3, 1, false}, 8, {1, 2, 4, 8}}};
  auto x = torch::randn({2, 1, 64, 64});
  for (const auto& c : cases) {
    ResNet net(small_options(18, 4, c.stem, c.output_stride));
    EXPECT_EQ(strides_of(net->stages()), c.strides);
    auto features = net->forward(x);
    ASSERT_EQ(features.size(), 4u);
    std::vector<int64_t> expected_sizes;
    for (int64_t s : c.strides) expected_sizes.push_back(64 / s);
    EXPECT_EQ(spatial_sizes(features), expected_sizes) << "output stride " << c.output_stride;
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(features[i].size(1), 4 << i);
      EXPECT_EQ(net->stages()[i].channels, 4 << i);
    }
  }
}

TEST(ResNet, DilationFollowsTorchvisionReplaceStrideWithDilation) {
  // Output stride 8 with the ImageNet stem dilates layer3 (2) and layer4 (4); the first block of
  // each dilated stage keeps the previous stage's dilation.
  ResNet net(small_options(50, 4, kImageNetStem, 8));
  std::map<std::string, int64_t> dilation;
  for (const auto& item : net->named_modules()) {
    if (auto* conv = item.value()->as<torch::nn::Conv2dImpl>())
      dilation[item.key()] = (*conv->options.dilation())[0];
  }
  EXPECT_EQ(dilation.at("layer2.0.conv2"), 1);
  EXPECT_EQ(dilation.at("layer3.0.conv2"), 1);
  for (int b = 1; b < 6; ++b) EXPECT_EQ(dilation.at(fmt::format("layer3.{}.conv2", b)), 2);
  EXPECT_EQ(dilation.at("layer4.0.conv2"), 2);
  for (int b = 1; b < 3; ++b) EXPECT_EQ(dilation.at(fmt::format("layer4.{}.conv2", b)), 4);
  EXPECT_EQ(dilation.at("layer4.0.downsample.0"), 1);
}

TEST(ResNet, RejectsBadDepthAndUnreachableOutputStride) {
  EXPECT_THROW(ResNetOptions::for_depth(20), ConfigError);
  EXPECT_THROW(ResNet(small_options(18, 4, kSmallStem, 32)), ConfigError);  // max is 16
  EXPECT_THROW(ResNet(small_options(18, 4, kSmallStem, 12)), ConfigError);
  EXPECT_THROW(ResNet(small_options(18, 4, kImageNetStem, 2)), ConfigError);  // min is 4
}

TEST(ResNet, BasicBlockMatchesExplicitComputation) {
  torch::manual_seed(0);
  BasicBlock block(3, 5, /*stride=*/2, /*first_dilation=*/1, /*dilation=*/1);
  // Non-trivial BatchNorm statistics and affine parameters, evaluated in eval mode.
  {
    torch::NoGradGuard no_grad;
    for (auto& b : block->named_buffers())
      if (b.key().find("running_var") != std::string::npos) b.value().uniform_(0.5, 2.0);
      else if (b.key().find("running_mean") != std::string::npos) b.value().normal_(0, 0.3);
    for (auto& p : block->named_parameters())
      if (p.key().find("bn") != std::string::npos ||
          p.key().find("downsample.1") != std::string::npos)
        p.value().normal_(1.0, 0.2);
  }
  block->eval();
  auto x = torch::randn({2, 3, 9, 9});
  auto p = block->named_parameters();
  auto b = block->named_buffers();
  auto bn = [&](const torch::Tensor& t, const std::string& name) {
    auto shape = std::vector<int64_t>{1, -1, 1, 1};
    auto mean = b[name + ".running_mean"].view(shape), var = b[name + ".running_var"].view(shape);
    return (t - mean) / torch::sqrt(var + 1e-5) * p[name + ".weight"].view(shape) +
           p[name + ".bias"].view(shape);
  };
  auto h = torch::relu(bn(torch::conv2d(x, p["conv1.weight"], {}, 2, 1), "bn1"));
  h = bn(torch::conv2d(h, p["conv2.weight"], {}, 1, 1), "bn2");
  auto shortcut = bn(torch::conv2d(x, p["downsample.0.weight"], {}, 2), "downsample.1");
  auto expected = torch::relu(h + shortcut);
  torch::NoGradGuard no_grad;
  auto actual = block->forward(x);
  ASSERT_EQ(actual.sizes(), torch::IntArrayRef({2, 5, 5, 5}));
  EXPECT_TRUE(torch::allclose(actual, expected, 1e-4, 1e-5));
}

TEST(ResNet, InitialisationIsKaimingFanOutAndUnitBatchNorm) {
  torch::manual_seed(0);
  ResNet net(small_options(18, 32, kSmallStem, 8));
  int bn_count = 0;
  for (const auto& item : net->named_modules()) {
    if (auto* bn = item.value()->as<BatchNorm2dImpl>()) {
      EXPECT_TRUE(torch::all(bn->weight == 1).item<bool>()) << item.key();
      EXPECT_TRUE(torch::all(bn->bias == 0).item<bool>()) << item.key();
      ++bn_count;
    }
  }
  EXPECT_EQ(bn_count, 1 + 4 * 4 + 3);  // stem, 2 per block, 3 shortcut projections
  // layer4 convs: 256 x 256 x 3 x 3; fan_out = 256 * 9.
  for (const std::string name : {"layer4.1.conv1", "layer4.1.conv2"}) {
    auto weight = net->named_parameters()[name + ".weight"];
    const double expected_std = std::sqrt(2.0 / (256 * 9));
    EXPECT_NEAR(weight.std().item<double>(), expected_std, 0.02 * expected_std) << name;
    EXPECT_NEAR(weight.mean().item<double>(), 0.0, 0.02 * expected_std) << name;
  }
}

TEST(ResNet, ClassificationPresetsOn28x28) {
  torch::manual_seed(0);
  ModelOptions options;
  options.num_classes = 10;
  options.input_size = 28;
  auto x = torch::randn({2, 1, 28, 28});
  // Base width 32: stage channels 32..256 (BasicBlock) and 128..1024 (Bottleneck).
  for (auto [name, expansion] : std::vector<std::pair<std::string, int64_t>>{
           {"resnet18_cls", 1}, {"resnet50_cls", 4}}) {
    auto model = create_model(name, options);
    EXPECT_EQ(model->task(), Task::Classification);
    EXPECT_EQ(model->output_stride(), 0);
    EXPECT_EQ(model->num_classes(), 10);
    EXPECT_EQ(strides_of(model->stages()), (std::vector<int64_t>{1, 2, 4, 8}));
    model->eval();
    torch::NoGradGuard no_grad;
    auto out = model->forward(x);
    EXPECT_EQ(out.logits.sizes(), torch::IntArrayRef({2, 10})) << name;
    EXPECT_EQ(out.embedding.sizes(), torch::IntArrayRef({2, 256 * expansion})) << name;
    EXPECT_EQ(spatial_sizes(out.features), (std::vector<int64_t>{28, 14, 7, 4})) << name;
    for (int i = 0; i < 4; ++i)
      EXPECT_EQ(out.features[i].size(1), model->stages()[i].channels);
    EXPECT_FALSE(out.aux_logits.defined());
    // The embedding is the pooled last stage, and the logits a linear map of it.
    EXPECT_TRUE(torch::allclose(out.embedding, out.features[3].mean({2, 3}), 1e-5, 1e-6));
  }
}
