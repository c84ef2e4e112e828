#include <gtest/gtest.h>
#include <torch/torch.h>

#include "distillery/models/flops.h"
#include "distillery/models/zoo.h"

using namespace distillery;

namespace {

// Output size of a convolution along one axis.
int64_t conv_out(int64_t in, int64_t kernel, int64_t stride, int64_t padding,
                 int64_t dilation = 1) {
  return (in + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1;
}

int64_t flops_without_grad(const std::function<void()>& run) {
  torch::NoGradGuard no_grad;
  return count_flops_of(run);
}

}  // namespace

TEST(Flops, SingleConvolutionMatchesClosedForm) {
  torch::manual_seed(0);
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(3, 8, 3).stride(2).padding(1));
  auto x = torch::randn({2, 3, 17, 17});
  const int64_t out = conv_out(17, 3, 2, 1);  // 9
  ASSERT_EQ(out, 9);
  const int64_t expected = 2 * (2 * 8 * out * out) * (3 * 3 * 3);
  EXPECT_EQ(flops_without_grad([&] { conv(x); }), expected);
}

TEST(Flops, GroupedDilatedAndTransposedConvolutions) {
  torch::manual_seed(0);
  // Depthwise-style grouped conv with dilation: each output element costs (in/groups) * k * k.
  torch::nn::Conv2d grouped(
      torch::nn::Conv2dOptions(8, 16, 3).groups(4).dilation(2).padding(2).bias(false));
  auto x = torch::randn({1, 8, 10, 12});
  const int64_t h = conv_out(10, 3, 1, 2, 2), w = conv_out(12, 3, 1, 2, 2);
  EXPECT_EQ(flops_without_grad([&] { grouped(x); }), 2 * (16 * h * w) * (2 * 3 * 3));

  // Transposed conv: each input element is spread over out_channels * k * k outputs.
  torch::nn::ConvTranspose2d up(torch::nn::ConvTranspose2dOptions(4, 6, 2).stride(2));
  auto y = torch::randn({3, 4, 5, 5});
  EXPECT_EQ(flops_without_grad([&] { up(y); }), 2 * (3 * 4 * 5 * 5) * (6 * 2 * 2));
}

TEST(Flops, LinearCountedOnceWhateverItLowersTo) {
  torch::manual_seed(0);
  torch::nn::Linear linear(20, 7);
  auto x2 = torch::randn({5, 20});  // -> addmm
  EXPECT_EQ(flops_without_grad([&] { linear(x2); }), 2 * 5 * 20 * 7);
  auto x3 = torch::randn({2, 4, 20});  // -> matmul / mm on a folded view
  EXPECT_EQ(flops_without_grad([&] { linear(x3); }), 2 * 2 * 4 * 20 * 7);
  torch::nn::Linear no_bias(torch::nn::LinearOptions(20, 7).bias(false));
  EXPECT_EQ(flops_without_grad([&] { no_bias(x2); }), 2 * 5 * 20 * 7);
}

TEST(Flops, MatrixProducts) {
  torch::NoGradGuard no_grad;
  auto a = torch::randn({2, 3, 4, 5}), b = torch::randn({5, 6});
  EXPECT_EQ(count_flops_of([&] { torch::matmul(a, b); }), 2 * 2 * 3 * 4 * 5 * 6);
  auto p = torch::randn({3, 4, 5}), q = torch::randn({3, 5, 2});
  EXPECT_EQ(count_flops_of([&] { torch::bmm(p, q); }), 2 * 3 * 4 * 5 * 2);
  EXPECT_EQ(count_flops_of([&] { torch::matmul(p, q); }), 2 * 3 * 4 * 5 * 2);
  auto m = torch::randn({4, 5}), n = torch::randn({5, 3}), c = torch::randn({4, 3});
  EXPECT_EQ(count_flops_of([&] { torch::addmm(c, m, n); }), 2 * 4 * 5 * 3);
  EXPECT_EQ(count_flops_of([&] { torch::mm(m, n); }), 2 * 4 * 5 * 3);
  auto v = torch::randn({5});
  EXPECT_EQ(count_flops_of([&] { torch::mv(m, v); }), 2 * 4 * 5);
  EXPECT_EQ(count_flops_of([&] { torch::dot(v, v); }), 2 * 5);
  // Element-wise work is not counted; nothing is left installed after a count.
  EXPECT_EQ(count_flops_of([&] { torch::relu(m + 1).sum(); }), 0);
  EXPECT_EQ(count_flops_of([] {}), 0);
}

TEST(Flops, SmallResNetMatchesHandSumOfConvolutionsAndLinear) {
  torch::manual_seed(0);
  const int64_t w = 8, classes = 10, size = 28;
  ModelOptions options;
  options.num_classes = classes;
  options.input_size = size;
  options.width = w / 64.0;  // ResNet-18 layout, base width 8, 3x3 stride-1 stem
  auto model = create_model("resnet18_cls", options);

  // Hand sum of multiply-accumulates: stem, 4 stages of 2 BasicBlocks, classifier.
  int64_t macs = 0;
  int64_t hw = size, in = w;
  macs += hw * hw * 9 * 1 * w;  // stem 3x3, 1 -> w, stride 1
  for (int stage = 0; stage < 4; ++stage) {
    const int64_t planes = w << stage, stride = stage == 0 ? 1 : 2;
    for (int block = 0; block < 2; ++block) {
      const int64_t s = block == 0 ? stride : 1;
      const int64_t out_hw = conv_out(hw, 3, s, 1);
      macs += out_hw * out_hw * 9 * in * planes;      // conv1
      macs += out_hw * out_hw * 9 * planes * planes;  // conv2
      if (s != 1 || in != planes) macs += out_hw * out_hw * in * planes;  // 1x1 shortcut
      hw = out_hw;
      in = planes;
    }
  }
  macs += in * classes;  // linear on the pooled vector
  const int64_t expected = 2 * macs;

  model->train();
  const int64_t counted = count_forward_flops(*model, {1, 1, size, size});
  EXPECT_NEAR(static_cast<double>(counted), static_cast<double>(expected), 0.01 * expected);
  EXPECT_EQ(counted, expected);  // the convention is exact: only convs and the linear count
  EXPECT_TRUE(model->is_training()) << "training mode must be restored";
  // Linear in the batch: a batch of 3 costs 3 times as much.
  EXPECT_EQ(count_forward_flops(*model, {3, 1, size, size}), 3 * expected);
}

TEST(Flops, CountParametersExcludesBuffers) {
  torch::nn::Linear linear(20, 7);
  EXPECT_EQ(count_parameters(*linear), 20 * 7 + 7);
  torch::nn::BatchNorm2d bn(4);  // weight + bias; running mean / var are buffers
  EXPECT_EQ(count_parameters(*bn), 8);
  torch::nn::Sequential both(torch::nn::Linear(20, 7), torch::nn::BatchNorm2d(4));
  EXPECT_EQ(count_parameters(*both), 147 + 8);
}
