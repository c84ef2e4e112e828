#include "distillery/data/augment.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <array>
#include <cmath>
#include <cstring>
#include <functional>

#include "distillery/core/config.h"
#include "distillery/data/batch.h"

namespace distillery {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Acklam's rational approximation of the standard normal quantile (relative error < 1.2e-9).
double normal_quantile(double p) {
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                             1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01,  -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  constexpr double kLow = 0.02425;
  auto tail = [&](double q) {
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
           ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  };
  if (p < kLow) return tail(std::sqrt(-2 * std::log(p)));
  if (p > 1 - kLow) return -tail(std::sqrt(-2 * std::log(1 - p)));
  double q = p - 0.5, r = q * q;
  return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
         (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

constexpr int kQuantileBins = 4096;  // 12 bits of each 32-bit half pick the bin

const std::array<float, kQuantileBins + 1>& quantile_table() {
  static const std::array<float, kQuantileBins + 1> table = [] {
    std::array<float, kQuantileBins + 1> t{};
    const double edge = 1.0 / 65536;  // the outermost knots stand in for the clipped tails
    for (int k = 0; k <= kQuantileBins; ++k)
      t[k] = static_cast<float>(normal_quantile(std::min(1 - edge, std::max(edge, double(k) / kQuantileBins))));
    return t;
  }();
  return table;
}

}  // namespace

uint64_t mix_seed(std::initializer_list<uint64_t> parts) {
  uint64_t state = 0x6a09e667f3bcc909ULL;
  for (uint64_t part : parts) state = splitmix64(state ^ splitmix64(part));
  return state;
}

double Rng::uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

double Rng::uniform(double low, double high) { return low + (high - low) * uniform(); }

int64_t Rng::integer(int64_t low, int64_t high) {
  if (high <= low) return low;
  uint64_t range = static_cast<uint64_t>(high - low) + 1;
  // Rejection sampling removes the modulo bias.
  uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % range;
  uint64_t value;
  do value = engine_();
  while (value >= limit);
  return low + static_cast<int64_t>(value % range);
}

double Rng::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u1 = 1.0 - uniform();  // (0, 1]: log stays finite
  double u2 = uniform();
  double radius = std::sqrt(-2.0 * std::log(u1));
  double angle = 2.0 * M_PI * u2;
  spare_ = radius * std::sin(angle);
  has_spare_ = true;
  return radius * std::cos(angle);
}

void Rng::fast_normal_pair(float& first, float& second) {
  const auto& table = quantile_table();
  uint64_t bits = engine_();
  auto lookup = [&](uint32_t half) {
    uint32_t bin = half >> 20;
    float fraction = static_cast<float>(half & 0xfffff) * 0x1.0p-20f;
    return table[bin] + (table[bin + 1] - table[bin]) * fraction;
  };
  first = lookup(static_cast<uint32_t>(bits));
  second = lookup(static_cast<uint32_t>(bits >> 32));
}

std::vector<int64_t> random_permutation(int64_t n, Rng& rng) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[rng.integer(0, i)]);
  return order;
}

namespace {

using CheckFn = std::function<void(bool ok, const std::string& key, const std::string& message)>;

void validate_fields(const AugmentOptions& o, const CheckFn& check) {
  check(o.min_scale > 0 && o.min_scale <= 10, "min_scale", "must be in (0, 10]");
  check(o.max_scale >= o.min_scale && o.max_scale <= 10, "max_scale",
        fmt::format("must be >= min_scale ({}) and <= 10", o.min_scale));
  check(o.pad >= 0 && o.pad <= 64, "pad", "must be in [0, 64]");
}

}  // namespace

AugmentOptions AugmentOptions::from_config(const ConfigSection& cfg) {
  AugmentOptions options;
  options.enabled = cfg.get<bool>("enabled", options.enabled);
  options.flip = cfg.get<bool>("flip", options.flip);
  options.min_scale = cfg.get<double>("min_scale", options.min_scale);
  options.max_scale = cfg.get<double>("max_scale", options.max_scale);
  options.pad = cfg.get<int64_t>("pad", options.pad);
  validate_fields(options, [&](bool ok, const std::string& key, const std::string& message) {
    cfg.check(ok, key, message);
  });
  return options;
}

void AugmentOptions::validate() const {
  validate_fields(*this, [](bool ok, const std::string& key, const std::string& message) {
    if (!ok) throw ConfigError(fmt::format("augment option '{}': {}", key, message));
  });
}

SampleTransform identity_transform(int64_t height, int64_t width) {
  SampleTransform transform;
  transform.scaled_height = height;
  transform.scaled_width = width;
  return transform;
}

SampleTransform draw_transform(const AugmentOptions& options, Task task, int64_t height,
                               int64_t width, Rng& rng) {
  SampleTransform transform = identity_transform(height, width);
  if (!options.enabled) return transform;
  // Fixed draw order (flip, scale/shift, offsets) keeps the stream reproducible.
  bool flip = rng.uniform() < 0.5;
  transform.flip = options.flip && flip;
  if (task == Task::Classification) {
    transform.image_fill = 0;
    transform.top = rng.integer(-options.pad, options.pad);
    transform.left = rng.integer(-options.pad, options.pad);
    return transform;
  }
  double scale = rng.uniform(options.min_scale, options.max_scale);
  transform.scaled_height = std::max<int64_t>(1, std::llround(height * scale));
  transform.scaled_width = std::max<int64_t>(1, std::llround(width * scale));
  // Window of the output inside the scaled sample: a crop when larger, a placement when smaller.
  int64_t spare_y = transform.scaled_height - height, spare_x = transform.scaled_width - width;
  transform.top = rng.integer(std::min<int64_t>(0, spare_y), std::max<int64_t>(0, spare_y));
  transform.left = rng.integer(std::min<int64_t>(0, spare_x), std::max<int64_t>(0, spare_x));
  return transform;
}

void apply_transform(const SampleTransform& t, const uint8_t* image, int64_t channels,
                     int64_t height, int64_t width, const uint8_t* labels, uint8_t* image_out,
                     uint8_t* labels_out) {
  const int64_t plane = height * width;
  if (t.scaled_height == height && t.scaled_width == width) {
    // No resampling: a pure shift/flip, done by copying (exact for images and labels).
    for (int64_t y = 0; y < height; ++y) {
      int64_t sy = y + t.top;
      bool row_inside = sy >= 0 && sy < height;
      for (int64_t x = 0; x < width; ++x) {
        int64_t sx = (t.flip ? width - 1 - x : x) + t.left;
        bool inside = row_inside && sx >= 0 && sx < width;
        for (int64_t c = 0; c < channels; ++c)
          image_out[c * plane + y * width + x] = inside ? image[c * plane + sy * width + sx] : t.image_fill;
        if (labels)
          labels_out[y * width + x] = inside ? labels[sy * width + sx] : uint8_t(kIgnoreLabel);
      }
    }
    return;
  }
  // Resampling: for each output column precompute the source taps once (align_corners=false).
  const double ratio_y = double(height) / t.scaled_height, ratio_x = double(width) / t.scaled_width;
  struct Tap {
    bool inside;
    int64_t low, high, nearest;
    float weight;
  };
  auto make_tap = [](int64_t scaled_pos, int64_t scaled_size, double ratio, int64_t size) {
    Tap tap{false, 0, 0, 0, 0.f};
    if (scaled_pos < 0 || scaled_pos >= scaled_size) return tap;
    tap.inside = true;
    double src = (scaled_pos + 0.5) * ratio - 0.5;
    if (src < 0) src = 0;
    tap.low = std::min<int64_t>(static_cast<int64_t>(src), size - 1);
    tap.high = std::min<int64_t>(tap.low + 1, size - 1);
    tap.weight = static_cast<float>(src - tap.low);
    tap.nearest = std::min<int64_t>(static_cast<int64_t>((scaled_pos + 0.5) * ratio), size - 1);
    return tap;
  };
  std::vector<Tap> column_taps(static_cast<size_t>(width));
  for (int64_t x = 0; x < width; ++x)
    column_taps[x] = make_tap((t.flip ? width - 1 - x : x) + t.left, t.scaled_width, ratio_x, width);
  for (int64_t y = 0; y < height; ++y) {
    Tap row = make_tap(y + t.top, t.scaled_height, ratio_y, height);
    for (int64_t x = 0; x < width; ++x) {
      const Tap& col = column_taps[x];
      bool inside = row.inside && col.inside;
      for (int64_t c = 0; c < channels; ++c) {
        uint8_t value = t.image_fill;
        if (inside) {
          const uint8_t* p = image + c * plane;
          float top = p[row.low * width + col.low] * (1 - col.weight) + p[row.low * width + col.high] * col.weight;
          float bottom = p[row.high * width + col.low] * (1 - col.weight) + p[row.high * width + col.high] * col.weight;
          float v = top * (1 - row.weight) + bottom * row.weight;
          value = static_cast<uint8_t>(std::min(255.f, std::max(0.f, v + 0.5f)));
        }
        image_out[c * plane + y * width + x] = value;
      }
      if (labels)
        labels_out[y * width + x] = inside ? labels[row.nearest * width + col.nearest] : uint8_t(kIgnoreLabel);
    }
  }
}

void augment_sample(const AugmentOptions& options, Task task, uint64_t sample_seed,
                    const uint8_t* image, int64_t channels, int64_t height, int64_t width,
                    const uint8_t* labels, uint8_t* image_out, uint8_t* labels_out) {
  Rng rng(sample_seed);
  SampleTransform transform = draw_transform(options, task, height, width, rng);
  apply_transform(transform, image, channels, height, width, labels, image_out, labels_out);
}

std::pair<torch::Tensor, torch::Tensor> apply_transform(const SampleTransform& transform,
                                                        const torch::Tensor& image,
                                                        const torch::Tensor& labels) {
  TORCH_CHECK(image.dim() == 3 && image.scalar_type() == torch::kUInt8,
              "apply_transform: image must be uint8 [C, H, W]");
  torch::Tensor image_in = image.contiguous();
  int64_t channels = image.size(0), height = image.size(1), width = image.size(2);
  torch::Tensor image_out = torch::empty_like(image_in);
  torch::Tensor labels_in, labels_out;
  if (labels.defined()) {
    TORCH_CHECK(labels.dim() == 2 && labels.size(0) == height && labels.size(1) == width &&
                    labels.scalar_type() == torch::kUInt8,
                "apply_transform: labels must be uint8 [H, W] matching the image");
    labels_in = labels.contiguous();
    labels_out = torch::empty_like(labels_in);
  }
  apply_transform(transform, image_in.data_ptr<uint8_t>(), channels, height, width,
                  labels.defined() ? labels_in.data_ptr<uint8_t>() : nullptr,
                  image_out.data_ptr<uint8_t>(),
                  labels.defined() ? labels_out.data_ptr<uint8_t>() : nullptr);
  return {image_out, labels_out};
}

}  // namespace distillery
