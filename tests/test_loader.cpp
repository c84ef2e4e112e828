#include <gtest/gtest.h>
#include <torch/torch.h>

#include <atomic>
#include <set>

#include "distillery/core/config.h"
#include "distillery/data/augment.h"
#include "distillery/data/loader.h"

using namespace distillery;

namespace {

// A small random segmentation dataset: labels from {0, 3, 7}, images random.
std::shared_ptr<TensorDataset> synthetic_segmentation(int64_t n, int64_t side = 8) {
  torch::manual_seed(123);
  auto dataset = std::make_shared<TensorDataset>();
  dataset->images = torch::randint(0, 256, {n, 1, side, side}, torch::kUInt8);
  torch::Tensor choice = torch::randint(0, 3, {n, side, side}, torch::kLong);
  dataset->targets = torch::tensor({0, 3, 7}, torch::kUInt8).index_select(0, choice.flatten()).view({n, side, side});
  dataset->num_classes = 11;
  dataset->class_names = std::vector<std::string>(11, "c");
  dataset->task = Task::Segmentation;
  return dataset;
}

std::shared_ptr<TensorDataset> synthetic_classification(int64_t n) {
  torch::manual_seed(321);
  auto dataset = std::make_shared<TensorDataset>();
  dataset->images = torch::randint(0, 256, {n, 1, 6, 6}, torch::kUInt8);
  dataset->targets = torch::randint(0, 10, {n}, torch::kLong);
  dataset->num_classes = 10;
  dataset->class_names = std::vector<std::string>(10, "c");
  dataset->task = Task::Classification;
  return dataset;
}

void expect_same_batch(const Batch& a, const Batch& b, const std::string& where) {
  EXPECT_TRUE(torch::equal(a.index, b.index)) << where;
  EXPECT_TRUE(torch::equal(a.images, b.images)) << where;
  EXPECT_TRUE(torch::equal(a.targets, b.targets)) << where;
}

}  // namespace

TEST(Normalisation, ToModelInputConstants) {
  torch::Tensor pixels = torch::tensor({0, 64, 128, 255}, torch::kUInt8);
  torch::Tensor x = to_model_input(pixels);
  EXPECT_EQ(x.scalar_type(), torch::kFloat);
  std::vector<double> raw{0, 64, 128, 255};
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(x[i].item<double>(), (raw[i] / 255.0 - kInputMean) / kInputStd, 1e-6);
  EXPECT_NEAR(x[0].item<double>(), -2.0, 1e-6);
  EXPECT_NEAR(x[3].item<double>(), 2.0, 1e-6);
  torch::Tensor all = torch::arange(256).to(torch::kUInt8);
  EXPECT_TRUE(torch::equal(from_model_input(to_model_input(all)), all));
}

TEST(Augment, FlipMatchesManualFlip) {
  // Hand-made 2x3 image and labels.
  torch::Tensor image = torch::tensor({10, 20, 30, 40, 50, 60}, torch::kUInt8).view({1, 2, 3});
  torch::Tensor labels = torch::tensor({1, 2, 3, 4, 5, 255}, torch::kUInt8).view({2, 3});
  SampleTransform flip = identity_transform(2, 3);
  flip.flip = true;
  auto [image_out, labels_out] = apply_transform(flip, image, labels);
  torch::Tensor expected_image = torch::tensor({30, 20, 10, 60, 50, 40}, torch::kUInt8).view({1, 2, 3});
  torch::Tensor expected_labels = torch::tensor({3, 2, 1, 255, 5, 4}, torch::kUInt8).view({2, 3});
  EXPECT_TRUE(torch::equal(image_out, expected_image));
  EXPECT_TRUE(torch::equal(labels_out, expected_labels));

  // With scale fixed at 1 the only random choice is the flip: every draw is one of the two.
  AugmentOptions options;
  options.min_scale = options.max_scale = 1.0;
  auto dataset = synthetic_segmentation(1, 8);
  torch::Tensor img = dataset->images[0], lab = dataset->targets[0];
  int flips = 0;
  for (uint64_t seed = 0; seed < 64; ++seed) {
    Rng rng(seed);
    SampleTransform t = draw_transform(options, Task::Segmentation, 8, 8, rng);
    auto [out_image, out_labels] = apply_transform(t, img, lab);
    bool flipped = torch::equal(out_image, img.flip({2})) && torch::equal(out_labels, lab.flip({1}));
    bool same = torch::equal(out_image, img) && torch::equal(out_labels, lab);
    ASSERT_TRUE(flipped != same) << "seed " << seed;
    flips += flipped;
  }
  EXPECT_GT(flips, 16);
  EXPECT_LT(flips, 48);
}

TEST(Augment, UnitScaleWithoutFlipIsIdentity) {
  AugmentOptions options;
  options.flip = false;
  options.min_scale = options.max_scale = 1.0;
  auto dataset = synthetic_segmentation(4, 10);
  for (int64_t i = 0; i < 4; ++i) {
    torch::Tensor image_out = torch::empty({1, 10, 10}, torch::kUInt8);
    torch::Tensor labels_out = torch::empty({10, 10}, torch::kUInt8);
    augment_sample(options, Task::Segmentation, 1000 + i, dataset->images[i].data_ptr<uint8_t>(), 1,
                   10, 10, dataset->targets[i].data_ptr<uint8_t>(), image_out.data_ptr<uint8_t>(),
                   labels_out.data_ptr<uint8_t>());
    EXPECT_TRUE(torch::equal(image_out, dataset->images[i]));
    EXPECT_TRUE(torch::equal(labels_out, dataset->targets[i]));
  }
}

TEST(Augment, UpscaleIsBilinearForImagesAndNearestForLabels) {
  // 4x4 -> scaled 8x8, window at (top 1, left 3).
  torch::Tensor image = torch::arange(16).mul(15).to(torch::kUInt8).view({1, 4, 4});
  torch::Tensor labels = torch::arange(16).to(torch::kUInt8).view({4, 4});
  SampleTransform t = identity_transform(4, 4);
  t.scaled_height = t.scaled_width = 8;
  t.top = 1, t.left = 3;
  auto [image_out, labels_out] = apply_transform(t, image, labels);
  auto in = image.accessor<uint8_t, 3>();
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) {
      // Independent formula: source coordinate (p + 0.5) / 2 - 0.5, clamped at 0.
      double sy = std::max(0.0, (y + 1 + 0.5) / 2 - 0.5), sx = std::max(0.0, (x + 3 + 0.5) / 2 - 0.5);
      int y0 = static_cast<int>(sy), x0 = static_cast<int>(sx);
      int y1 = std::min(y0 + 1, 3), x1 = std::min(x0 + 1, 3);
      double wy = sy - y0, wx = sx - x0;
      double v = (1 - wy) * ((1 - wx) * in[0][y0][x0] + wx * in[0][y0][x1]) +
                 wy * ((1 - wx) * in[0][y1][x0] + wx * in[0][y1][x1]);
      EXPECT_NEAR(image_out[0][y][x].item<double>(), v, 0.5 + 1e-6) << y << "," << x;
      int ny = (y + 1) / 2, nx = (x + 3) / 2;  // nearest: floor((p + 0.5) / 2)
      EXPECT_EQ(labels_out[y][x].item<int64_t>(), ny * 4 + nx) << y << "," << x;
    }
}

TEST(Augment, DownscalePadsImageAndIgnoresLabels) {
  torch::Tensor image = torch::full({1, 8, 8}, 10, torch::kUInt8);
  torch::Tensor labels = torch::full({8, 8}, 4, torch::kUInt8);
  SampleTransform t = identity_transform(8, 8);
  t.scaled_height = t.scaled_width = 6;
  t.top = -2, t.left = -1;  // the 6x6 sample sits at rows 2..7, columns 1..6
  auto [image_out, labels_out] = apply_transform(t, image, labels);
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 8; ++x) {
      bool inside = y >= 2 && x >= 1 && x <= 6;
      EXPECT_EQ(image_out[0][y][x].item<int64_t>(), inside ? 10 : kAugmentPadValue) << y << "," << x;
      EXPECT_EQ(labels_out[y][x].item<int64_t>(), inside ? 4 : 255) << y << "," << x;
    }
}

TEST(Augment, RandomTransformsKeepLabelValuesAndAlignImageWithLabels) {
  AugmentOptions options;  // flip, scale [0.75, 1.25]
  auto dataset = synthetic_segmentation(1, 32);
  // Image derived from labels (value = 30 * label): a geometric transform must keep the pair
  // consistent wherever the image is not interpolated across a label boundary.
  torch::Tensor labels = dataset->targets[0];
  torch::Tensor image = labels.mul(30).unsqueeze(0).to(torch::kUInt8);
  std::set<int64_t> seen;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    Rng rng(seed);
    SampleTransform t = draw_transform(options, Task::Segmentation, 32, 32, rng);
    EXPECT_GE(t.scaled_height, 24);
    EXPECT_LE(t.scaled_height, 40);
    auto [image_out, labels_out] = apply_transform(t, image, labels);
    torch::Tensor values = std::get<0>(at::_unique(labels_out.to(torch::kLong)));
    for (int64_t i = 0; i < values.numel(); ++i) {
      int64_t v = values[i].item<int64_t>();
      ASSERT_TRUE(v == 0 || v == 3 || v == 7 || v == 255) << v;
      seen.insert(v);
    }
    if (t.scaled_height == 32) {  // integral transform: exact correspondence
      torch::Tensor valid = labels_out != 255;
      EXPECT_TRUE(torch::equal(image_out[0].masked_select(valid), labels_out.mul(30).masked_select(valid)));
    }
  }
  EXPECT_EQ(seen.size(), 4u);  // some draws pad (255 appears)
}

TEST(Augment, ClassificationShiftPadsWithZero) {
  torch::Tensor image = torch::arange(1, 17).to(torch::kUInt8).view({1, 4, 4});
  SampleTransform t = identity_transform(4, 4);
  t.image_fill = 0;
  t.top = -1, t.left = 2;
  auto [out, none] = apply_transform(t, image, torch::Tensor());
  EXPECT_FALSE(none.defined());
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) {
      int sy = y - 1, sx = x + 2;
      int expected = (sy >= 0 && sx < 4) ? 1 + sy * 4 + sx : 0;
      EXPECT_EQ(out[0][y][x].item<int64_t>(), expected);
    }
  AugmentOptions options;
  options.pad = 2;
  for (uint64_t seed = 0; seed < 50; ++seed) {
    Rng rng(seed);
    SampleTransform drawn = draw_transform(options, Task::Classification, 4, 4, rng);
    EXPECT_EQ(drawn.scaled_height, 4);
    EXPECT_GE(drawn.top, -2);
    EXPECT_LE(drawn.top, 2);
    EXPECT_GE(drawn.left, -2);
    EXPECT_LE(drawn.left, 2);
  }
}

TEST(Augment, OptionsFromConfigAreValidated) {
  Config config = Config::from_string("augment:\n  enabled: false\n  flip: false\n  min_scale: 0.5\n  max_scale: 2\n  pad: 4\n");
  AugmentOptions o = AugmentOptions::from_config(config.root().section("augment"));
  EXPECT_FALSE(o.enabled);
  EXPECT_FALSE(o.flip);
  EXPECT_DOUBLE_EQ(o.min_scale, 0.5);
  EXPECT_DOUBLE_EQ(o.max_scale, 2.0);
  EXPECT_EQ(o.pad, 4);
  try {
    AugmentOptions::from_config(Config::from_string("augment:\n  min_scale: 1.5\n  max_scale: 1.2\n").root().section("augment"));
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("augment.max_scale"), std::string::npos) << e.what();
  }
  EXPECT_THROW(AugmentOptions::from_config(Config::from_string("augment:\n  pad: -1\n").root().section("augment")),
               ConfigError);
}

TEST(Rng, PortableValues) {
  // Rng is built on std::mt19937_64, whose output the C++ standard fixes: the 10000th
  // value from the default seed 5489 is 9981545732273789042.
  Rng rng(5489);
  for (int i = 0; i < 9999; ++i) rng.bits();
  EXPECT_EQ(rng.bits(), 9981545732273789042ULL);
  Rng a(1), b(1);
  for (int i = 0; i < 100; ++i) {
    double u = a.uniform();
    EXPECT_GE(u, 0.0);
    EXPECT_LT(u, 1.0);
    int64_t k = a.integer(-3, 3);
    EXPECT_GE(k, -3);
    EXPECT_LE(k, 3);
    EXPECT_EQ(b.uniform(), u);
    EXPECT_EQ(b.integer(-3, 3), k);
  }
  EXPECT_NE(mix_seed({1, 2, 3}), mix_seed({1, 3, 2}));
  EXPECT_NE(mix_seed({0, 0}), mix_seed({0}));
  // Normal draws: mean ~0, variance ~1 over many samples.
  Rng n(42);
  double sum = 0, sum_sq = 0;
  for (int i = 0; i < 20000; ++i) {
    double v = n.normal();
    sum += v, sum_sq += v * v;
  }
  EXPECT_NEAR(sum / 20000, 0.0, 0.03);
  EXPECT_NEAR(sum_sq / 20000, 1.0, 0.05);
  // The table-based sampler: moments and the one-sigma mass of a standard normal.
  Rng fast(43);
  double fast_sum = 0, fast_sum_sq = 0, max_abs = 0;
  int64_t within_one = 0;
  const int pairs = 100000;
  for (int i = 0; i < pairs; ++i) {
    float u, v;
    fast.fast_normal_pair(u, v);
    for (double z : {double(u), double(v)}) {
      fast_sum += z, fast_sum_sq += z * z, max_abs = std::max(max_abs, std::abs(z));
      within_one += std::abs(z) < 1;
    }
  }
  EXPECT_NEAR(fast_sum / (2 * pairs), 0.0, 0.01);
  EXPECT_NEAR(fast_sum_sq / (2 * pairs), 1.0, 0.015);
  EXPECT_NEAR(double(within_one) / (2 * pairs), 0.6827, 0.004);
  EXPECT_LE(max_abs, 4.1725);  // the clipped tail: the 1/65536 quantile
  EXPECT_GT(max_abs, 3.0);
  auto permutation = random_permutation(50, a);
  std::vector<int64_t> sorted = permutation;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 50; ++i) EXPECT_EQ(sorted[i], i);
}

TEST(Loader, BatchShapesAndContentsWithoutAugmentation) {
  auto dataset = synthetic_segmentation(20, 8);
  LoaderOptions options;
  options.batch_size = 4;
  options.augment.enabled = false;
  Batch batch = make_train_batch(*dataset, options, 3);
  ASSERT_EQ(batch.images.sizes(), (std::vector<int64_t>{4, 1, 8, 8}));
  ASSERT_EQ(batch.targets.sizes(), (std::vector<int64_t>{4, 8, 8}));
  ASSERT_EQ(batch.index.sizes(), (std::vector<int64_t>{4}));
  EXPECT_EQ(batch.images.scalar_type(), torch::kFloat);
  EXPECT_EQ(batch.targets.scalar_type(), torch::kLong);
  EXPECT_EQ(batch.index.scalar_type(), torch::kLong);
  std::vector<int64_t> order = epoch_order(20, options.seed, 0, true);
  for (int64_t i = 0; i < 4; ++i) {
    int64_t sample = order[12 + i];  // step 3, batch 4: positions 12..15 of epoch 0
    EXPECT_EQ(batch.index[i].item<int64_t>(), sample);
    EXPECT_TRUE(torch::equal(batch.images[i], to_model_input(dataset->images[sample])));
    EXPECT_TRUE(torch::equal(batch.targets[i], dataset->targets[sample].to(torch::kLong)));
  }

  auto classes = synthetic_classification(30);
  Batch cls = make_train_batch(*classes, options, 0);
  ASSERT_EQ(cls.images.sizes(), (std::vector<int64_t>{4, 1, 6, 6}));
  ASSERT_EQ(cls.targets.sizes(), (std::vector<int64_t>{4}));
  EXPECT_EQ(cls.targets.scalar_type(), torch::kLong);
  EXPECT_TRUE(torch::equal(cls.targets, classes->targets.index_select(0, cls.index)));

  options.shuffle = false;
  Batch ordered = make_train_batch(*dataset, options, 6);  // epoch 1 (5 steps per epoch), batch 1
  EXPECT_TRUE(torch::equal(ordered.index, torch::tensor({4, 5, 6, 7}, torch::kLong)));
}

TEST(Loader, EveryEpochCoversEveryIndexOnce) {
  auto dataset = synthetic_segmentation(40, 8);
  LoaderOptions options;
  options.batch_size = 5;
  options.seed = 9;
  TrainStream stream(dataset, options);
  ASSERT_EQ(stream.steps_per_epoch(), 8);
  std::vector<std::vector<int64_t>> epochs;
  for (int epoch = 0; epoch < 3; ++epoch) {
    std::vector<int64_t> seen;
    for (int k = 0; k < 8; ++k) {
      Batch batch = stream.next();
      for (int64_t i = 0; i < 5; ++i) seen.push_back(batch.index[i].item<int64_t>());
    }
    epochs.push_back(seen);
    std::sort(seen.begin(), seen.end());
    for (int64_t i = 0; i < 40; ++i) ASSERT_EQ(seen[i], i) << "epoch " << epoch;
  }
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[1], epochs[2]);
  EXPECT_EQ(stream.step(), 24);
  // drop_last: 43 samples still give 8 steps of 5.
  EXPECT_EQ(TrainStream(synthetic_segmentation(43, 8), options).steps_per_epoch(), 8);
}

TEST(Loader, ResumedStreamEqualsTailOfUninterruptedStream) {
  auto dataset = synthetic_segmentation(37, 12);
  LoaderOptions options;
  options.batch_size = 5;  // 7 steps per epoch, 2 samples dropped each epoch
  options.seed = 4;
  options.prefetch = 3;
  std::vector<Batch> full;
  {
    TrainStream stream(dataset, options, 0);
    for (int i = 0; i < 20; ++i) full.push_back(stream.next());
  }
  // Augmentation is on: resumed batches must match exactly anyway.
  EXPECT_FALSE(torch::equal(full[0].images, to_model_input(dataset->images.index_select(0, full[0].index))));
  for (int64_t start : {1, 7, 9, 13}) {
    TrainStream resumed(dataset, options, start);
    EXPECT_EQ(resumed.step(), start);
    for (int64_t step = start; step < 20; ++step)
      expect_same_batch(resumed.next(), full[step], "start " + std::to_string(start) + " step " + std::to_string(step));
  }
  // No prefetch thread and the stateless function give the same stream.
  LoaderOptions sync = options;
  sync.prefetch = 0;
  TrainStream direct(dataset, sync, 5);
  for (int64_t step = 5; step < 12; ++step) {
    expect_same_batch(direct.next(), full[step], "sync step " + std::to_string(step));
    expect_same_batch(make_train_batch(*dataset, options, step), full[step], "pure step " + std::to_string(step));
  }
}

TEST(Loader, WorkerExceptionIsRethrownAndEarlyDestructionIsClean) {
  auto dataset = synthetic_segmentation(30, 8);
  LoaderOptions options;
  options.batch_size = 3;
  options.prefetch = 2;
  options.batch_hook = [](Batch&, int64_t step) {
    if (step == 2) throw DataError("hook failed at step 2");
  };
  TrainStream stream(dataset, options);
  EXPECT_NO_THROW(stream.next());
  EXPECT_NO_THROW(stream.next());
  EXPECT_THROW(stream.next(), DataError);
  EXPECT_THROW(stream.next(), DataError);  // stays failed, does not hang
  EXPECT_EQ(stream.step(), 2);

  // Destroyed while the worker is filling or blocked on a full queue.
  std::atomic<int> built{0};
  LoaderOptions counting = options;
  counting.batch_hook = [&](Batch&, int64_t) { ++built; };
  for (int i = 0; i < 5; ++i) {
    TrainStream early(dataset, counting);
    if (i % 2) early.next();
  }
  { TrainStream idle(dataset, counting, 1000); }
  EXPECT_GT(built.load(), 0);
}

TEST(Loader, EvalBatchesAreContiguousAndClipped) {
  auto dataset = synthetic_segmentation(10, 8);
  Batch batch = make_eval_batch(*dataset, 6, 8);
  EXPECT_TRUE(torch::equal(batch.index, torch::tensor({6, 7, 8, 9}, torch::kLong)));
  EXPECT_TRUE(torch::equal(batch.images, to_model_input(dataset->images.slice(0, 6, 10))));
  EXPECT_TRUE(torch::equal(batch.targets, dataset->targets.slice(0, 6, 10).to(torch::kLong)));
  EXPECT_THROW(make_eval_batch(*dataset, 10, 1), std::out_of_range);
  LoaderOptions options;
  options.batch_size = 11;
  EXPECT_THROW(TrainStream(dataset, options), ConfigError);
}

TEST(Loader, OptionsFromConfig) {
  Config config = Config::from_string("train:\n  batch_size: 8\n  shuffle: false\n  prefetch: 0\n  augment:\n    flip: false\n");
  LoaderOptions o = LoaderOptions::from_config(config.root().section("train"));
  EXPECT_EQ(o.batch_size, 8);
  EXPECT_FALSE(o.shuffle);
  EXPECT_EQ(o.prefetch, 0);
  EXPECT_FALSE(o.augment.flip);
  EXPECT_TRUE(o.augment.enabled);
  EXPECT_NO_THROW(config.check_all_consumed());
  EXPECT_THROW(LoaderOptions::from_config(Config::from_string("t:\n  batch_size: 0\n").root().section("t")), ConfigError);
}
