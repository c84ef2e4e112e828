// fashion-seg: semantic segmentation scenes composed from Fashion-MNIST items (see
// BENCHMARKS.md). 11 classes: 0 background, 1 + Fashion-MNIST class; 255 = ignore.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "distillery/data/fashion_mnist.h"
#include "distillery/data/tensor_dataset.h"

namespace distillery {

class ConfigSection;

struct FashionSegOptions {
  int64_t canvas = 64;
  int64_t train_scenes = 10000;
  int64_t val_scenes = 2000;
  int64_t min_items = 2;
  int64_t max_items = 4;
  double min_scale = 0.8;  // item side = round(28 * scale)
  double max_scale = 1.6;
  std::string background = "noise";  // "noise" (low-frequency), "flat" or "none" (black)
  double noise_std = 0.03;           // Gaussian pixel noise, in units of full intensity
  uint64_t seed = 0;
  std::string mnist_dir = kFashionMnistDir;

  // Keys: the field names above. Every value is validated (ConfigError naming the key).
  static FashionSegOptions from_config(const ConfigSection& cfg);
  void validate() const;  // ConfigError naming the field
};

// Ink (pixel / 255 after scaling) above this is labelled 1 + class; between the two
// thresholds it is the soft edge, labelled 255 (ignore).
constexpr float kInkLabelThreshold = 0.2f;
constexpr float kInkIgnoreThreshold = 0.05f;

// Where one item of a scene came from and how much of it is left visible.
struct PlacedItem {
  int64_t source_index = 0;  // into the Fashion-MNIST split the scene was built from
  int64_t class_id = 0;      // Fashion-MNIST class 0..9 (the label is 1 + class_id)
  int64_t top = 0, left = 0, size = 0;  // the item's square box on the canvas
  int64_t labelled_pixels = 0;  // ink > kInkLabelThreshold when drawn
  int64_t visible_pixels = 0;   // of those, still carrying this item's label at the end
};
using SceneLayout = std::vector<PlacedItem>;

// "background" followed by the ten Fashion-MNIST names.
std::vector<std::string> fashion_seg_class_names();

// train: options.train_scenes scenes from the Fashion-MNIST train split; otherwise
// options.val_scenes scenes from the test split. images uint8 [N, 1, canvas, canvas], targets
// uint8 [N, canvas, canvas]. Deterministic in (seed, train, scene index), whatever `threads`
// (0: hardware concurrency). `layouts`, if given, receives each scene's items in draw order.
TensorDataset make_fashion_seg(const FashionSegOptions& options, bool train,
                               std::vector<SceneLayout>* layouts = nullptr, int64_t threads = 0);

}  // namespace distillery
