// Random geometric augmentation on uint8 samples, plus the portable random numbers that all
// data generation uses. std:: distributions differ between standard libraries, so values are
// derived from raw std::mt19937_64 output here: the same seed gives the same data everywhere.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <initializer_list>
#include <random>

#include "distillery/models/model.h"

namespace distillery {

class ConfigSection;

// Combines seed parts (e.g. seed, epoch, sample index) into one well-mixed 64-bit seed.
uint64_t mix_seed(std::initializer_list<uint64_t> parts);

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  uint64_t bits() { return engine_(); }
  double uniform();                         // [0, 1)
  double uniform(double low, double high);  // [low, high)
  int64_t integer(int64_t low, int64_t high);  // inclusive range [low, high]
  double normal();                          // standard normal (Box-Muller)
  // Two standard normals from one 64-bit draw by inverse-CDF table lookup (4096 bins, linear
  // interpolation, tails clipped at 4.17 sigma; variance 1.0004): several times faster
  // than normal(), meant for per-pixel noise.
  void fast_normal_pair(float& first, float& second);

 private:
  std::mt19937_64 engine_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

// Fisher-Yates permutation of 0..n-1 with Rng (std::shuffle is implementation-defined).
std::vector<int64_t> random_permutation(int64_t n, Rng& rng);

struct AugmentOptions {
  bool enabled = true;
  bool flip = true;  // horizontal
  // Segmentation: scale by a factor in [min_scale, max_scale] (image bilinear, labels
  // nearest), then crop back to the original size; where the scaled sample is smaller, pad
  // the image with kAugmentPadValue and the labels with the ignore label.
  double min_scale = 0.75;
  double max_scale = 1.25;
  // Classification: pad each side by `pad` (with 0, the Fashion-MNIST background), crop back.
  int64_t pad = 2;

  // Keys: enabled, flip, min_scale, max_scale, pad.
  static AugmentOptions from_config(const ConfigSection& cfg);
  void validate() const;  // ConfigError naming the field
};

// Normalises to about 0 with to_model_input (see loader.h): padding looks like "no signal".
constexpr uint8_t kAugmentPadValue = 128;

// One sample's geometric transform: output pixel (y, x) reads the scaled sample (size
// scaled_height x scaled_width) at (y + top, x' + left), x' = flipped ? width - 1 - x : x.
struct SampleTransform {
  bool flip = false;
  int64_t scaled_height = 0, scaled_width = 0;
  int64_t top = 0, left = 0;
  uint8_t image_fill = kAugmentPadValue;
};

SampleTransform draw_transform(const AugmentOptions& options, Task task, int64_t height,
                               int64_t width, Rng& rng);
SampleTransform identity_transform(int64_t height, int64_t width);

// image, image_out: [channels, height, width]; labels, labels_out: [height, width] or null.
void apply_transform(const SampleTransform& transform, const uint8_t* image, int64_t channels,
                     int64_t height, int64_t width, const uint8_t* labels, uint8_t* image_out,
                     uint8_t* labels_out);

// The loader's per-sample entry point: the transform comes from Rng(sample_seed) alone, so it
// does not depend on which thread prepares the sample or when.
void augment_sample(const AugmentOptions& options, Task task, uint64_t sample_seed,
                    const uint8_t* image, int64_t channels, int64_t height, int64_t width,
                    const uint8_t* labels, uint8_t* image_out, uint8_t* labels_out);

// Tensor convenience (tests, tools): image uint8 [C, H, W], labels uint8 [H, W] or undefined.
std::pair<torch::Tensor, torch::Tensor> apply_transform(const SampleTransform& transform,
                                                        const torch::Tensor& image,
                                                        const torch::Tensor& labels);

}  // namespace distillery
