#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <set>

#include "distillery/core/config.h"
#include "distillery/data/fashion_seg.h"

using namespace distillery;

namespace {

FashionSegOptions small_options(uint64_t seed = 7) {
  FashionSegOptions options;
  options.train_scenes = 240;
  options.val_scenes = 160;
  options.seed = seed;
  return options;
}

// Expects a ConfigError mentioning `key` when the YAML `data:` block is parsed.
void expect_config_error(const std::string& yaml, const std::string& key) {
  Config config = Config::from_string(yaml);
  try {
    FashionSegOptions::from_config(config.root().section("data"));
    FAIL() << "expected ConfigError for " << yaml;
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("'data." + key + "'"), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(FashionSegOptions, ReadsAndValidatesConfig) {
  Config config = Config::from_string(
      "data:\n  canvas: 48\n  train_scenes: 100\n  val_scenes: 20\n  min_items: 1\n  max_items: 3\n"
      "  min_scale: 0.9\n  max_scale: 1.5\n  background: flat\n  noise_std: 0.01\n  seed: 3\n"
      "  mnist_dir: /tmp/x\n");
  FashionSegOptions o = FashionSegOptions::from_config(config.root().section("data"));
  EXPECT_EQ(o.canvas, 48);
  EXPECT_EQ(o.train_scenes, 100);
  EXPECT_EQ(o.val_scenes, 20);
  EXPECT_EQ(o.min_items, 1);
  EXPECT_EQ(o.max_items, 3);
  EXPECT_DOUBLE_EQ(o.min_scale, 0.9);
  EXPECT_DOUBLE_EQ(o.max_scale, 1.5);
  EXPECT_EQ(o.background, "flat");
  EXPECT_DOUBLE_EQ(o.noise_std, 0.01);
  EXPECT_EQ(o.seed, 3u);
  EXPECT_EQ(o.mnist_dir, "/tmp/x");
  EXPECT_NO_THROW(config.check_all_consumed());

  FashionSegOptions defaults = FashionSegOptions::from_config(Config::from_string("data: {}").root().section("data"));
  EXPECT_EQ(defaults.canvas, 64);
  EXPECT_EQ(defaults.train_scenes, 10000);
  EXPECT_EQ(defaults.val_scenes, 2000);

  expect_config_error("data:\n  canvas: 0\n", "canvas");
  expect_config_error("data:\n  train_scenes: -5\n", "train_scenes");
  expect_config_error("data:\n  val_scenes: 0\n", "val_scenes");
  expect_config_error("data:\n  min_items: 0\n", "min_items");
  expect_config_error("data:\n  min_items: 3\n  max_items: 2\n", "max_items");
  expect_config_error("data:\n  min_scale: 1.2\n  max_scale: 1.1\n", "max_scale");
  expect_config_error("data:\n  min_scale: 0\n", "min_scale");
  // round(28 * 1.6) = 45 does not fit a 40-pixel canvas.
  expect_config_error("data:\n  canvas: 40\n", "max_scale");
  expect_config_error("data:\n  background: stripes\n", "background");
  expect_config_error("data:\n  noise_std: -0.1\n", "noise_std");
  expect_config_error("data:\n  seed: -1\n", "seed");
  expect_config_error("data:\n  canvas: big\n", "canvas");

  FashionSegOptions bad;
  bad.max_items = 1;
  try {
    bad.validate();
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("'max_items'"), std::string::npos) << e.what();
  }
}

TEST(FashionSeg, DeterministicAndSeedDependent) {
  TensorDataset a = make_fashion_seg(small_options(7), /*train=*/false, nullptr, /*threads=*/1);
  TensorDataset b = make_fashion_seg(small_options(7), false, nullptr, /*threads=*/3);
  TensorDataset c = make_fashion_seg(small_options(8), false, nullptr, 2);
  EXPECT_TRUE(torch::equal(a.images, b.images));
  EXPECT_TRUE(torch::equal(a.targets, b.targets));
  EXPECT_FALSE(torch::equal(a.images, c.images));
  EXPECT_FALSE(torch::equal(a.targets, c.targets));
  // A scene depends only on (seed, split, index): a longer run starts with the same scenes.
  FashionSegOptions more = small_options(7);
  more.val_scenes = 200;
  TensorDataset d = make_fashion_seg(more, false);
  EXPECT_TRUE(torch::equal(d.images.slice(0, 0, 160), a.images));
  // Train and validation scenes differ.
  FashionSegOptions same_count = small_options(7);
  same_count.train_scenes = 160;
  TensorDataset train = make_fashion_seg(same_count, true);
  EXPECT_FALSE(torch::equal(train.images, a.images));
}

TEST(FashionSeg, ShapesLabelsAndLayoutsAreConsistent) {
  FashionSegOptions options = small_options(11);
  std::vector<SceneLayout> layouts;
  TensorDataset data = make_fashion_seg(options, true, &layouts);
  const int64_t n = options.train_scenes, side = options.canvas;
  ASSERT_EQ(data.images.sizes(), (std::vector<int64_t>{n, 1, side, side}));
  ASSERT_EQ(data.targets.sizes(), (std::vector<int64_t>{n, side, side}));
  EXPECT_EQ(data.images.scalar_type(), torch::kUInt8);
  EXPECT_EQ(data.targets.scalar_type(), torch::kUInt8);
  EXPECT_EQ(data.num_classes, 11);
  ASSERT_EQ(data.class_names.size(), 11u);
  EXPECT_EQ(data.class_names[0], "background");
  EXPECT_EQ(data.class_names[10], "Ankle boot");
  EXPECT_EQ(data.task, Task::Segmentation);
  ASSERT_EQ(layouts.size(), static_cast<size_t>(n));

  torch::Tensor targets = data.targets.to(torch::kLong);
  torch::Tensor histogram = torch::bincount(targets.flatten(), {}, 256);
  EXPECT_EQ(histogram.slice(0, 11, 255).sum().item<int64_t>(), 0) << "labels outside {0..10, 255}";
  const double total = static_cast<double>(targets.numel());
  double foreground = histogram.slice(0, 1, 11).sum().item<int64_t>() / total;
  double ignore = histogram[255].item<int64_t>() / total;
  EXPECT_GT(foreground, 0.15);
  EXPECT_LT(foreground, 0.6);
  EXPECT_GT(ignore, 0.01);
  EXPECT_LT(ignore, 0.15);
  for (int c = 1; c <= 10; ++c) EXPECT_GT(histogram[c].item<int64_t>(), 0) << "class " << c;

  const int64_t min_side = std::llround(28 * options.min_scale), max_side = std::llround(28 * options.max_scale);
  auto accessor = data.targets.accessor<uint8_t, 3>();
  for (int64_t i = 0; i < n; ++i) {
    const SceneLayout& items = layouts[i];
    ASSERT_GE(static_cast<int64_t>(items.size()), options.min_items) << "scene " << i;
    ASSERT_LE(static_cast<int64_t>(items.size()), options.max_items) << "scene " << i;
    std::vector<int64_t> visible_by_label(11, 0);
    for (const PlacedItem& item : items) {
      EXPECT_GE(item.size, min_side);
      EXPECT_LE(item.size, max_side);
      EXPECT_GE(item.top, 0);
      EXPECT_GE(item.left, 0);
      EXPECT_LE(item.top + item.size, side);
      EXPECT_LE(item.left + item.size, side);
      // The occlusion rule: at least half of every item's labelled pixels stay visible.
      EXPECT_GE(2 * item.visible_pixels, item.labelled_pixels) << "scene " << i;
      visible_by_label[1 + item.class_id] += item.visible_pixels;
    }
    // Every labelled pixel belongs to exactly one visible item, inside that item's box.
    std::vector<int64_t> counted(11, 0);
    for (int64_t y = 0; y < side; ++y)
      for (int64_t x = 0; x < side; ++x) {
        int label = accessor[i][y][x];
        if (label == 0 || label == 255) continue;
        ++counted[label];
        bool inside_some_box = false;
        for (const PlacedItem& item : items)
          inside_some_box |= 1 + item.class_id == label && y >= item.top && y < item.top + item.size &&
                             x >= item.left && x < item.left + item.size;
        ASSERT_TRUE(inside_some_box) << "scene " << i << " pixel " << y << "," << x;
      }
    EXPECT_EQ(counted, visible_by_label) << "scene " << i;
  }
}

TEST(FashionSeg, BackgroundIntensitiesOverlapTheItems) {
  FashionSegOptions options = small_options(5);
  TensorDataset data = make_fashion_seg(options, false);
  torch::Tensor image = data.images.squeeze(1).to(torch::kFloat);
  torch::Tensor labels = data.targets;
  torch::Tensor background = image.masked_select(labels == 0);
  torch::Tensor items = image.masked_select((labels > 0) & (labels < 255));
  // Thresholding cannot separate them: a large share of item pixels lies within the central
  // 80% of background intensities, and vice versa.
  double bg_low = background.quantile(0.1).item<double>(), bg_high = background.quantile(0.9).item<double>();
  double share = ((items >= bg_low) & (items <= bg_high)).to(torch::kFloat).mean().item<double>();
  EXPECT_GT(share, 0.3);
  // Backgrounds vary per scene: their mean intensities spread widely.
  torch::Tensor scene_means = torch::empty({options.val_scenes});
  for (int64_t i = 0; i < options.val_scenes; ++i)
    scene_means[i] = image[i].masked_select(labels[i] == 0).mean();
  EXPECT_GT(scene_means.std().item<double>(), 25.0);
  // Low-frequency: neighbouring background pixels are strongly correlated.
  torch::Tensor both_bg = (labels.slice(2, 1) == 0) & (labels.slice(2, 0, -1) == 0);
  torch::Tensor step = (image.slice(2, 1) - image.slice(2, 0, -1)).abs().masked_select(both_bg);
  EXPECT_LT(step.mean().item<double>(), 0.5 * background.std().item<double>());
}

TEST(FashionSeg, SingleUnscaledItemMatchesThresholdedInk) {
  FashionSegOptions options;
  options.train_scenes = 30;
  options.val_scenes = 30;
  options.min_items = options.max_items = 1;
  options.min_scale = options.max_scale = 1.0;
  options.background = "none";
  options.noise_std = 0.0;
  options.seed = 99;
  std::vector<SceneLayout> layouts;
  TensorDataset data = make_fashion_seg(options, /*train=*/false, &layouts);
  // Validation scenes come from the test split.
  FashionMnistSplit source = read_fashion_mnist_split(kFashionMnistDir, "test");
  for (int64_t i = 0; i < options.val_scenes; ++i) {
    ASSERT_EQ(layouts[i].size(), 1u);
    const PlacedItem& item = layouts[i][0];
    ASSERT_EQ(item.size, 28);
    EXPECT_EQ(item.class_id, source.labels[item.source_index].item<int64_t>());
    torch::Tensor raw_tensor = source.images[item.source_index];
    torch::Tensor label_tensor = data.targets[i], image_tensor = data.images[i][0];
    auto raw = raw_tensor.accessor<uint8_t, 2>();
    auto labels = label_tensor.accessor<uint8_t, 2>();
    auto image = image_tensor.accessor<uint8_t, 2>();
    int64_t labelled = 0;
    std::vector<std::pair<int, int>> ink_and_intensity;
    for (int64_t y = 0; y < 64; ++y)
      for (int64_t x = 0; x < 64; ++x) {
        int64_t sy = y - item.top, sx = x - item.left;
        int pixel = (sy >= 0 && sy < 28 && sx >= 0 && sx < 28) ? raw[sy][sx] : 0;
        // ink = pixel / 255: > 0.2 means pixel >= 52; > 0.05 means pixel >= 13.
        int expected = pixel >= 52 ? 1 + static_cast<int>(item.class_id) : pixel >= 13 ? 255 : 0;
        ASSERT_EQ(labels[y][x], expected) << "scene " << i << " at " << y << "," << x;
        if (pixel < 13) ASSERT_EQ(image[y][x], 0) << "black background, no noise";
        if (pixel >= 52) ++labelled, ink_and_intensity.emplace_back(pixel, image[y][x]);
      }
    EXPECT_EQ(item.labelled_pixels, labelled);
    EXPECT_EQ(item.visible_pixels, labelled);
    // Item intensity is an increasing function of ink.
    std::sort(ink_and_intensity.begin(), ink_and_intensity.end());
    for (size_t k = 1; k < ink_and_intensity.size(); ++k)
      ASSERT_LE(ink_and_intensity[k - 1].second, ink_and_intensity[k].second);
  }
}

TEST(FashionSeg, FlatBackgroundIsConstantWithoutNoise) {
  FashionSegOptions options = small_options(3);
  options.val_scenes = 20;
  options.background = "flat";
  options.noise_std = 0.0;
  TensorDataset data = make_fashion_seg(options, false);
  for (int64_t i = 0; i < 20; ++i) {
    torch::Tensor background = data.images[i][0].masked_select(data.targets[i] == 0);
    // Label 0 means no item drew there (ink <= 0.05 is not drawn): the scene's constant.
    EXPECT_EQ(background.min().item<int64_t>(), background.max().item<int64_t>()) << "scene " << i;
  }
}
