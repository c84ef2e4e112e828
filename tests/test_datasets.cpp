// Real dataset layouts (Cityscapes, Pascal VOC + SBD lists, ADE20K, folder): fixture trees
// written here, read back pixel for pixel with their label mappings; random scale-crops, the
// on-disk loader path, and whole-image vs sliding-window evaluation.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "distillery/core/error.h"
#include "distillery/core/image_io.h"
#include "distillery/core/png.h"
#include "distillery/data/ade20k.h"
#include "distillery/data/cityscapes.h"
#include "distillery/data/folder_dataset.h"
#include "distillery/data/loader.h"
#include "distillery/data/pascal_voc.h"
#include "distillery/data/scale_crop.h"
#include "distillery/train/data_setup.h"
#include "distillery/train/evaluate.h"
#include "distillery/train/inference.h"
#include "distillery/train/recipe.h"

using namespace distillery;
namespace fs = std::filesystem;

namespace {

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("distillery_datasets_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string str() const { return path_.string(); }
  std::string operator/(const std::string& rel) const {
    fs::path p = path_ / rel;
    fs::create_directories(p.parent_path());
    return p.string();
  }

 private:
  fs::path path_;
  static inline int counter_ = 0;
};

// An RGB image whose pixels encode their position: R = 7x + 3, G = 11y + 5, B = 200.
torch::Tensor coordinate_image(int64_t height, int64_t width) {
  auto image = torch::empty({height, width, 3}, torch::kUInt8);
  auto a = image.accessor<uint8_t, 3>();
  for (int64_t y = 0; y < height; ++y)
    for (int64_t x = 0; x < width; ++x) {
      a[y][x][0] = static_cast<uint8_t>(7 * x + 3);
      a[y][x][1] = static_cast<uint8_t>(11 * y + 5);
      a[y][x][2] = 200;
    }
  return image;
}

// Labels [H, W] cycling through `values` in raster order.
torch::Tensor cycling_labels(int64_t height, int64_t width, const std::vector<int>& values) {
  auto labels = torch::empty({height, width}, torch::kUInt8);
  auto a = labels.accessor<uint8_t, 2>();
  for (int64_t i = 0; i < height * width; ++i) a[i / width][i % width] = static_cast<uint8_t>(values[i % values.size()]);
  return labels;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

}  // namespace

TEST(ImageIo, JpegAndPngDecodeToRgb) {
  TempDir dir;
  // A smooth image survives JPEG nearly unchanged; PNG exactly; greyscale PNG is replicated.
  auto image = torch::empty({16, 24, 3}, torch::kUInt8);
  for (int64_t y = 0; y < 16; ++y)
    for (int64_t x = 0; x < 24; ++x) {
      image[y][x][0] = 100 + 2 * x;
      image[y][x][1] = 60 + 3 * y;
      image[y][x][2] = 150;
    }
  write_jpeg(dir / "a.jpg", image, 100);
  auto jpeg = read_rgb_image(dir / "a.jpg");
  ASSERT_EQ(jpeg.sizes(), image.sizes());
  EXPECT_LE((jpeg.to(torch::kInt) - image.to(torch::kInt)).abs().max().item<int>(), 4);
  write_png(dir / "b.png", image);
  EXPECT_TRUE(torch::equal(read_rgb_image(dir / "b.png"), image));
  auto grey = image.select(2, 0).contiguous();
  write_png(dir / "c.png", grey);
  auto rgb = read_rgb_image(dir / "c.png");
  EXPECT_TRUE(torch::equal(rgb.select(2, 1), grey));
  write_text(dir / "d.jpg", "not an image");
  EXPECT_THROW(read_rgb_image(dir / "d.jpg"), DataError);
  EXPECT_THROW(read_rgb_image(dir / "missing.png"), DataError);
}

TEST(ImageIo, LabelPngsArePaletteIndicesOrGreyValues) {
  TempDir dir;
  auto labels = cycling_labels(5, 7, {0, 3, 255, 17});
  write_png_palette(dir / "p.png", labels, label_palette_list());
  EXPECT_TRUE(torch::equal(read_png_labels(dir / "p.png"), labels));
  write_png(dir / "g.png", labels);
  EXPECT_TRUE(torch::equal(read_png_labels(dir / "g.png"), labels));
  write_png(dir / "rgb.png", coordinate_image(5, 7));
  EXPECT_THROW(read_png_labels(dir / "rgb.png"), DataError);
}

TEST(Cityscapes, LabelIdsMapToTrainIds) {
  TempDir root;
  const std::string image_path = root / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png";
  const std::string label_path = root / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png";
  write_png(image_path, coordinate_image(6, 8));
  // road 7 -> 0, car 26 -> 13, unlabeled 0 -> 255, bicycle 33 -> 18, ego vehicle 1 -> 255,
  // person 24 -> 11, sky 23 -> 10, guard rail 14 (ignored in evaluation) -> 255.
  write_png(label_path, cycling_labels(6, 8, {7, 26, 0, 33, 1, 24, 23, 14}));
  write_png(root / "leftImg8bit/train/bochum/bochum_000000_000313_leftImg8bit.png", coordinate_image(6, 8));
  write_png(root / "gtFine/train/bochum/bochum_000000_000313_gtFine_labelIds.png", cycling_labels(6, 8, {11}));

  TensorDataset data = open_cityscapes(root.str(), "train");
  ASSERT_EQ(data.size(), 2);
  EXPECT_EQ(data.num_classes, 19);
  EXPECT_EQ(data.class_names.front(), "road");
  EXPECT_EQ(data.class_names.back(), "bicycle");
  EXPECT_EQ(data.files->samples[0].label, label_path);  // sorted: aachen before bochum
  auto [image, labels] = data.files->load(0);
  EXPECT_TRUE(torch::equal(image, coordinate_image(6, 8).permute({2, 0, 1})));
  EXPECT_TRUE(torch::equal(labels, cycling_labels(6, 8, {0, 13, 255, 18, 255, 11, 10, 255})));
  EXPECT_TRUE(torch::equal(data.files->load(1).second, cycling_labels(6, 8, {2})));  // building
  EXPECT_EQ(data.files->palette[13], (Rgb{0, 0, 142}));  // car

  fs::remove(label_path);
  try {
    open_cityscapes(root.str(), "train");
    FAIL() << "a missing label map must be reported";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("aachen_000000_000019_gtFine_labelIds.png"), std::string::npos);
  }
  EXPECT_THROW(open_cityscapes(root.str(), "val"), DataError);
}

TEST(PascalVoc, PaletteLabelsKeepBorderAsIgnore) {
  TempDir root;
  auto photo = torch::full({6, 9, 3}, 90, torch::kUInt8);
  write_jpeg(root / "JPEGImages/2007_000032.jpg", photo, 100);
  write_jpeg(root / "JPEGImages/2007_000039.jpg", photo, 100);
  write_png_palette(root / "SegmentationClass/2007_000032.png", cycling_labels(6, 9, {0, 15, 255, 20}), voc_palette());
  write_png_palette(root / "SegmentationClass/2007_000039.png", cycling_labels(6, 9, {1}), voc_palette());
  write_text(root / "ImageSets/Segmentation/train.txt", "2007_000032\n2007_000039\n");

  TensorDataset data = open_pascal_voc(root.str(), "train");
  ASSERT_EQ(data.size(), 2);
  EXPECT_EQ(data.num_classes, 21);
  EXPECT_EQ(data.class_names[15], "person");
  auto [image, labels] = data.files->load(0);
  EXPECT_EQ(image.sizes(), (std::vector<int64_t>{3, 6, 9}));
  EXPECT_LE((image.to(torch::kInt) - 90).abs().max().item<int>(), 2);
  EXPECT_TRUE(torch::equal(labels, cycling_labels(6, 9, {0, 15, 255, 20})));
  EXPECT_EQ(voc_palette()[15], (Rgb{192, 128, 128}));  // person in the VOC colour map
  EXPECT_EQ(voc_palette()[255], (Rgb{224, 224, 192}));

  // SBD-style augmented list: "<image> <label>" lines with greyscale label maps.
  write_png(root / "SegmentationClassAug/2007_000032.png", cycling_labels(6, 9, {3, 4}));
  write_png(root / "SegmentationClassAug/2007_000039.png", cycling_labels(6, 9, {5}));
  write_text(root / "train_aug.txt", "/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png\n");
  TensorDataset aug = open_pascal_voc(root.str(), "train_aug.txt");
  ASSERT_EQ(aug.size(), 1);
  EXPECT_TRUE(torch::equal(aug.files->load(0).second, cycling_labels(6, 9, {3, 4})));
  // Id lists with another label directory.
  TensorDataset ids = open_pascal_voc(root.str(), "ImageSets/Segmentation/train.txt", "SegmentationClassAug");
  EXPECT_EQ(ids.files->samples[0].label, root.str() + "/SegmentationClassAug/2007_000032.png");

  // A value that is neither a class nor 255 is an error naming the file and the value.
  write_png_palette(root / "SegmentationClass/2007_000039.png", cycling_labels(6, 9, {30}), voc_palette());
  try {
    data.files->load(1);
    FAIL() << "label 30 must be refused";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("value 30"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("2007_000039.png"), std::string::npos) << e.what();
  }
  write_text(root / "ImageSets/Segmentation/val.txt", "2007_999999\n");
  EXPECT_THROW(open_pascal_voc(root.str(), "val"), DataError);
}

TEST(Ade20k, ZeroIsIgnoredAndIdsShiftDown) {
  TempDir root;
  write_jpeg(root / "images/training/ADE_train_00000001.jpg", torch::full({4, 5, 3}, 30, torch::kUInt8), 100);
  write_png(root / "annotations/training/ADE_train_00000001.png", cycling_labels(4, 5, {0, 1, 150, 13}));
  TensorDataset data = open_ade20k(root.str(), "training");
  ASSERT_EQ(data.size(), 1);
  ASSERT_EQ(data.class_names.size(), 150u);
  EXPECT_EQ(data.class_names[0], "wall");
  EXPECT_EQ(data.class_names[12], "person");
  EXPECT_EQ(data.class_names[149], "flag");
  EXPECT_TRUE(torch::equal(data.files->load(0).second, cycling_labels(4, 5, {255, 0, 149, 12})));
  write_png(root / "annotations/training/ADE_train_00000001.png", cycling_labels(4, 5, {151}));
  EXPECT_THROW(data.files->load(0), DataError);
}

TEST(FolderDataset, ClassListMasksAndColours) {
  TempDir root;
  write_text(root / "classes.txt", "background\nrust spot #ff8000\n\ncrack\n");
  write_png(root / "images/train/b.png", coordinate_image(5, 6));
  write_png(root / "masks/train/b.png", cycling_labels(5, 6, {0, 1, 2, 255}));
  write_jpeg(root / "images/train/a.jpg", torch::full({5, 6, 3}, 10, torch::kUInt8), 100);
  write_png_palette(root / "masks/train/a.png", cycling_labels(5, 6, {2}), label_palette_list());

  TensorDataset data = open_folder_dataset(root.str(), "train");
  ASSERT_EQ(data.size(), 2);
  EXPECT_EQ(data.num_classes, 3);
  EXPECT_EQ(data.class_names, (std::vector<std::string>{"background", "rust spot", "crack"}));
  EXPECT_EQ(data.files->palette[1], (Rgb{255, 128, 0}));
  EXPECT_EQ(data.files->samples[0].image, root.str() + "/images/train/a.jpg");
  auto [image, labels] = data.files->load(1);
  EXPECT_TRUE(torch::equal(image, coordinate_image(5, 6).permute({2, 0, 1})));
  EXPECT_TRUE(torch::equal(labels, cycling_labels(5, 6, {0, 1, 2, 255})));
  write_png(root / "masks/train/b.png", cycling_labels(5, 6, {3}));
  EXPECT_THROW(data.files->load(1), DataError);
  fs::remove(root / "masks/train/a.png");
  EXPECT_THROW(open_folder_dataset(root.str(), "train"), DataError);
  write_text(root / "classes.txt", "bad #12345z\n");
  EXPECT_THROW(read_folder_classes(root.str() + "/classes.txt"), DataError);
}

TEST(ScaleCrop, UnitScaleCropIsAWindowOfTheOriginal) {
  auto image = coordinate_image(20, 30).permute({2, 0, 1}).contiguous();
  auto labels = cycling_labels(20, 30, {0, 1, 2, 3, 4, 5, 6});
  AugmentOptions augment;
  augment.min_scale = augment.max_scale = 1.0;
  augment.flip = false;
  for (uint64_t seed = 0; seed < 5; ++seed) {
    Rng rng(seed);
    auto [crop, crop_labels] = random_scale_crop(image, labels, 1.0, 12, augment, rng);
    ASSERT_EQ(crop.sizes(), (std::vector<int64_t>{3, 12, 12}));
    // The top-left pixel tells where the window is (R = 7x + 3, G = 11y + 5).
    const int64_t left = (crop[0][0][0].item<int64_t>() - 3) / 7, top = (crop[1][0][0].item<int64_t>() - 5) / 11;
    EXPECT_TRUE(torch::equal(crop, image.narrow(1, top, 12).narrow(2, left, 12)));
    EXPECT_TRUE(torch::equal(crop_labels, labels.narrow(0, top, 12).narrow(1, left, 12)));
  }
  // A crop larger than the image is padded: mid-grey image, ignore labels.
  augment.enabled = false;
  Rng rng(0);
  auto [big, big_labels] = random_scale_crop(image, labels, 1.0, 32, augment, rng);
  EXPECT_EQ(big_labels.sizes(), (std::vector<int64_t>{32, 32}));
  EXPECT_EQ((big_labels == 255).sum().item<int64_t>(), 32 * 32 - 20 * 30);
  EXPECT_EQ(big[0][31][31].item<int>(), kAugmentPadValue);
  // Scale 2 then crop: labels are nearest-neighbour, output (y, x) = source ((y + top) / 2,
  // (x + left) / 2). Labels encoding their position (16 y + x) reveal top and left.
  augment.enabled = true;
  augment.min_scale = augment.max_scale = 2.0;
  auto positions = torch::empty({10, 15}, torch::kUInt8);
  for (int64_t y = 0; y < 10; ++y)
    for (int64_t x = 0; x < 15; ++x) positions[y][x] = static_cast<uint8_t>(16 * y + x);
  for (uint64_t seed = 0; seed < 4; ++seed) {
    Rng rng2(seed);
    auto [zoom, zoom_labels] = random_scale_crop(image.narrow(1, 0, 10).narrow(2, 0, 15), positions, 1.0, 8, augment, rng2);
    ASSERT_EQ(zoom_labels.sizes(), (std::vector<int64_t>{8, 8}));
    bool matches = false;
    for (int64_t top = 0; top + 8 <= 20 && !matches; ++top)
      for (int64_t left = 0; left + 8 <= 30 && !matches; ++left) {
        bool all = true;
        for (int64_t y = 0; y < 8 && all; ++y)
          for (int64_t x = 0; x < 8 && all; ++x)
            all = zoom_labels[y][x].item<int64_t>() == 16 * ((y + top) / 2) + (x + left) / 2;
        matches = all;
      }
    EXPECT_TRUE(matches) << "seed " << seed;
  }
  Rng rng3(0);
  auto [zoom, zoom_labels] = random_scale_crop(image, labels, 1.0, 8, augment, rng3);
  EXPECT_EQ(zoom.sizes(), (std::vector<int64_t>{3, 8, 8}));
}

namespace {

// A per-pixel classifier for the evaluation tests: class 1 where the red channel is bright.
class RedDetectorImpl : public ModelImpl {
 public:
  explicit RedDetectorImpl(int64_t stride) : stride_(stride) {}
  ModelOutput forward(const torch::Tensor& images) override {
    torch::Tensor red = images.select(1, 0).unsqueeze(1);
    if (stride_ > 1) red = torch::avg_pool2d(red, stride_, stride_);
    ModelOutput out;
    out.logits = torch::cat({-red, red}, 1);
    ++calls;
    return out;
  }
  std::vector<StageSpec> stages() const override { return {}; }
  int64_t num_classes() const override { return 2; }
  int64_t output_stride() const override { return stride_; }
  int64_t calls = 0;

 private:
  int64_t stride_;
};

}  // namespace

TEST(Inference, SlidingWindowsMatchWholeImageForPixelwiseModels) {
  RedDetectorImpl model(1);
  torch::Tensor input = torch::randn({1, 3, 37, 50});
  InferenceOptions whole;
  InferenceOptions slide;
  slide.mode = "slide";
  slide.crop = 16;
  slide.stride = 10;
  torch::Tensor a = infer_logits(model, input, whole);
  model.calls = 0;
  torch::Tensor b = infer_logits(model, input, slide);
  EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-6));
  // Rows start at 0, 10, 20 and 21 (flush with 37); columns at 0, 10, 20, 30, 34.
  EXPECT_EQ(model.calls, 4 * 5);
  // An image smaller than the window is padded and cropped back.
  torch::Tensor small = torch::randn({1, 3, 9, 11});
  EXPECT_TRUE(torch::allclose(infer_logits(model, small, slide), infer_logits(model, small, whole), 1e-5, 1e-6));
}

TEST(FolderDataset, RecipeLoaderAndFullResolutionEvaluation) {
  TempDir root;
  write_text(root / "classes.txt", "background\nred\n");
  // Left part red (class 1), the rest dark (class 0): a red detector is perfect.
  for (const std::string split : {"train", "val"})
    for (int i = 0; i < 3; ++i) {
      const int64_t height = 20 + 2 * i, width = 26 + 3 * i, edge = 8 + i;
      auto image = torch::full({height, width, 3}, 20, torch::kUInt8);
      image.narrow(1, 0, edge).select(2, 0).fill_(250);
      auto labels = torch::zeros({height, width}, torch::kUInt8);
      labels.narrow(1, 0, edge).fill_(1);
      write_png(root / ("images/" + split + "/" + std::to_string(i) + ".png"), image);
      write_png(root / ("masks/" + split + "/" + std::to_string(i) + ".png"), labels);
    }
  Config config = Config::from_string(
      "data: {benchmark: folder, root: '" + root.str() + "', crop_size: 16, "
      "augment: {min_scale: 0.5, max_scale: 1.5}, eval: {mode: slide, crop: 16, stride: 8}}\n"
      "model: {name: segformer_b0}\n");
  Recipe recipe = Recipe::parse(config);
  EXPECT_EQ(recipe.student.options.num_classes, 2);
  EXPECT_EQ(recipe.student.options.in_channels, 3);
  EXPECT_EQ(recipe.student.options.input_size, 16);
  EXPECT_EQ(recipe.data.inference.mode, "slide");
  DataSplits splits = load_data_splits(recipe.data);
  ASSERT_EQ(splits.train->size(), 3);
  EXPECT_EQ(splits.val->class_names[1], "red");

  LoaderOptions loader;
  loader.batch_size = 2;
  loader.augment = recipe.data.augment;
  loader.seed = 4;
  Batch a = make_train_batch(*splits.train, loader, 5);
  Batch b = make_train_batch(*splits.train, loader, 5);
  EXPECT_EQ(a.images.sizes(), (std::vector<int64_t>{2, 3, 16, 16}));
  EXPECT_EQ(a.targets.sizes(), (std::vector<int64_t>{2, 16, 16}));
  EXPECT_TRUE(torch::equal(a.images, b.images));  // a pure function of (seed, step)
  EXPECT_TRUE(torch::equal(a.targets, b.targets));
  // Augmented crops keep image and labels aligned: red pixels are exactly the class-1 pixels.
  torch::Tensor red = from_model_input(a.images).select(1, 0) > 128;
  torch::Tensor valid = a.targets != 255;
  EXPECT_TRUE(torch::equal(red.masked_select(valid), (a.targets == 1).masked_select(valid)));
  TrainStream stream(splits.train, loader, 5);
  EXPECT_TRUE(torch::equal(stream.next().images, a.images));

  RedDetectorImpl detector(4);  // logits at stride 4, upsampled to the full-resolution labels
  EvalResult perfect = evaluate(detector, *splits.val, 8);
  EXPECT_GT(perfect.metric, 0.9);
  RedDetectorImpl exact(1);
  EXPECT_DOUBLE_EQ(evaluate(exact, *splits.val, 8).metric, 1.0);

  Config bad = Config::from_string("data: {benchmark: folder, root: '" + root.str() +
                                   "', fashion_seg: {canvas: 32}}\nmodel: {name: segformer_b0}\n");
  Recipe bad_recipe = Recipe::parse(bad);
  EXPECT_THROW(bad_recipe.config.check_all_consumed(), ConfigError);
  EXPECT_THROW(Recipe::parse(Config::from_string("data: {benchmark: voc, root: /nonexistent}\nmodel: {name: segformer_b0}\n")),
               ConfigError);
  EXPECT_THROW(Recipe::parse(Config::from_string("data: {benchmark: folder, root: '" + root.str() +
                                                 "', eval: {mode: tiles}}\nmodel: {name: segformer_b0}\n")),
               ConfigError);
}
