#include "distillery/data/fashion_seg.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <thread>

#include "distillery/core/config.h"
#include "distillery/data/augment.h"
#include "distillery/data/batch.h"

namespace distillery {
namespace {

using CheckFn = std::function<void(bool ok, const std::string& key, const std::string& message)>;

void validate_fields(const FashionSegOptions& o, const CheckFn& check) {
  check(o.canvas >= 8 && o.canvas <= 1024, "canvas", "must be in [8, 1024]");
  check(o.train_scenes >= 1, "train_scenes", "must be positive");
  check(o.val_scenes >= 1, "val_scenes", "must be positive");
  check(o.min_items >= 1, "min_items", "must be at least 1");
  check(o.max_items >= o.min_items, "max_items", fmt::format("must be >= min_items ({})", o.min_items));
  check(o.max_items <= 32, "max_items", "must be at most 32");
  check(o.min_scale >= 0.25, "min_scale", "must be at least 0.25");
  check(o.max_scale >= o.min_scale, "max_scale", fmt::format("must be >= min_scale ({})", o.min_scale));
  // llround of an infinite scale is undefined (it came out as LLONG_MIN and passed).
  check(std::isfinite(o.max_scale) && std::llround(kFashionMnistSide * o.max_scale) <= o.canvas, "max_scale",
        fmt::format("an item of side round(28 * {}) does not fit the {}-pixel canvas", o.max_scale,
                    o.canvas));
  check(o.background == "noise" || o.background == "flat" || o.background == "none", "background",
        fmt::format("'{}' is not one of: noise, flat, none", o.background));
  check(std::isfinite(o.noise_std) && o.noise_std >= 0 && o.noise_std <= 1, "noise_std",
        "must be in [0, 1]");
  check(!o.mnist_dir.empty(), "mnist_dir", "must not be empty");
}

// Bilinear resampling taps (align_corners=false, as torch's interpolate) for one axis.
struct AxisTaps {
  std::vector<int32_t> low, high;
  std::vector<float> weight;
};

AxisTaps resize_taps(int64_t source, int64_t target, bool align_corners) {
  AxisTaps taps;
  taps.low.resize(target), taps.high.resize(target), taps.weight.resize(target);
  for (int64_t i = 0; i < target; ++i) {
    double src = align_corners ? (target > 1 ? double(i) * (source - 1) / (target - 1) : 0.0)
                               : (i + 0.5) * double(source) / target - 0.5;
    src = std::max(0.0, src);
    int64_t low = std::min<int64_t>(static_cast<int64_t>(src), source - 1);
    taps.low[i] = static_cast<int32_t>(low);
    taps.high[i] = static_cast<int32_t>(std::min<int64_t>(low + 1, source - 1));
    taps.weight[i] = static_cast<float>(src - low);
  }
  return taps;
}

// Adds `amplitude` times a bilinearly upsampled grid x grid field of U[-1, 1] values.
void add_smooth_noise(float* canvas, int64_t side, int64_t grid, float amplitude, Rng& rng) {
  std::vector<float> values(static_cast<size_t>(grid * grid));
  for (float& v : values) v = static_cast<float>(rng.uniform(-1.0, 1.0));
  AxisTaps taps = resize_taps(grid, side, /*align_corners=*/true);
  for (int64_t y = 0; y < side; ++y) {
    const float* row_low = &values[taps.low[y] * grid];
    const float* row_high = &values[taps.high[y] * grid];
    float wy = taps.weight[y];
    for (int64_t x = 0; x < side; ++x) {
      float wx = taps.weight[x];
      float top = row_low[taps.low[x]] * (1 - wx) + row_low[taps.high[x]] * wx;
      float bottom = row_high[taps.low[x]] * (1 - wx) + row_high[taps.high[x]] * wx;
      canvas[y * side + x] += amplitude * (top * (1 - wy) + bottom * wy);
    }
  }
}

struct Source {
  const uint8_t* images;  // [count, 28, 28]
  const uint8_t* labels;  // [count]
  int64_t count;
};

// Per-thread buffers, reused across scenes.
struct Scratch {
  std::vector<float> canvas;
  std::vector<int8_t> owner;  // index of the item whose label a pixel shows, -1 for none
  std::vector<float> ink;     // current item, size x size
  // Pixels with ink > kInkIgnoreThreshold: offsets in the item's box and, relative to the box's
  // top-left corner, on the canvas (the box is always fully inside the canvas).
  std::vector<int32_t> footprint, footprint_on_canvas;
  std::vector<AxisTaps> taps_by_size;  // resize taps, cached per item size
  std::vector<int64_t> lost;
};

struct Candidate {
  int64_t source_index = 0, size = 0, labelled = 0;
};

// Scales one Fashion-MNIST image to size x size ink in [0, 1] and records its footprint.
Candidate draw_item(const Source& source, int64_t source_index, int64_t size, int64_t side,
                    Scratch& s) {
  Candidate item{source_index, size, 0};
  const uint8_t* pixels = source.images + source_index * kFashionMnistSide * kFashionMnistSide;
  if (s.taps_by_size.size() <= static_cast<size_t>(size)) s.taps_by_size.resize(size + 1);
  AxisTaps& taps = s.taps_by_size[size];
  if (taps.low.empty()) taps = resize_taps(kFashionMnistSide, size, /*align_corners=*/false);
  s.ink.resize(static_cast<size_t>(size * size));
  s.footprint.clear();
  s.footprint_on_canvas.clear();
  for (int64_t y = 0; y < size; ++y) {
    const uint8_t* row_low = pixels + taps.low[y] * kFashionMnistSide;
    const uint8_t* row_high = pixels + taps.high[y] * kFashionMnistSide;
    float wy = taps.weight[y];
    for (int64_t x = 0; x < size; ++x) {
      float wx = taps.weight[x];
      float top = row_low[taps.low[x]] * (1 - wx) + row_low[taps.high[x]] * wx;
      float bottom = row_high[taps.low[x]] * (1 - wx) + row_high[taps.high[x]] * wx;
      // A true division: 51 / 255 must be exactly 0.2f, on the threshold, not above it.
      float ink = (top * (1 - wy) + bottom * wy) / 255.0f;
      s.ink[y * size + x] = ink;
      if (ink > kInkIgnoreThreshold) {
        s.footprint.push_back(static_cast<int32_t>(y * size + x));
        s.footprint_on_canvas.push_back(static_cast<int32_t>(y * side + x));
      }
      if (ink > kInkLabelThreshold) ++item.labelled;
    }
  }
  return item;
}

constexpr int kItemDraws = 6;       // fresh (image, scale) pairs per item slot
constexpr int kPositionTries = 24;  // positions per (image, scale)

void render_scene(const FashionSegOptions& o, const Source& source, uint64_t scene_seed,
                  uint8_t* image_out, uint8_t* label_out, SceneLayout* layout, Scratch& s) {
  const int64_t side = o.canvas, area = side * side;
  Rng rng(scene_seed);
  s.canvas.assign(static_cast<size_t>(area), 0.f);
  s.owner.assign(static_cast<size_t>(area), -1);
  std::fill(label_out, label_out + area, uint8_t(0));

  // Background: mean and contrast per scene, overlapping the items' intensity range.
  if (o.background != "none") {
    float mean = static_cast<float>(rng.uniform(0.1, 0.7));
    std::fill(s.canvas.begin(), s.canvas.end(), mean);
    if (o.background == "noise") {
      float contrast = static_cast<float>(rng.uniform(0.05, 0.3));
      add_smooth_noise(s.canvas.data(), side, 4, contrast, rng);
      add_smooth_noise(s.canvas.data(), side, 12, 0.5f * contrast, rng);
    }
  }

  SceneLayout items;
  const int64_t wanted = rng.integer(o.min_items, o.max_items);
  for (int64_t k = 0; k < wanted; ++k) {
    bool placed = false;
    Candidate item;
    int64_t best_top = 0, best_left = 0;
    double best_worst = -1;  // best over tries of the worst visible fraction of earlier items
    for (int draw = 0; draw < kItemDraws && !placed; ++draw) {
      int64_t index = rng.integer(0, source.count - 1);
      int64_t size = std::llround(kFashionMnistSide * rng.uniform(o.min_scale, o.max_scale));
      size = std::min(std::max<int64_t>(size, 1), side);
      item = draw_item(source, index, size, side, s);
      if (item.labelled == 0) continue;
      best_worst = -1;
      for (int attempt = 0; attempt < kPositionTries && !placed; ++attempt) {
        int64_t top = rng.integer(0, side - size), left = rng.integer(0, side - size);
        s.lost.assign(items.size(), 0);
        if (!items.empty()) {
          const int8_t* owner = s.owner.data() + top * side + left;
          for (int32_t offset : s.footprint_on_canvas)
            if (owner[offset] >= 0) ++s.lost[owner[offset]];
        }
        double worst = 1.0;
        for (size_t j = 0; j < items.size(); ++j)
          worst = std::min(worst, double(items[j].visible_pixels - s.lost[j]) / items[j].labelled_pixels);
        if (worst > best_worst) best_worst = worst, best_top = top, best_left = left;
        placed = worst >= 0.5;
      }
    }
    // An item that cannot be placed without hiding half of another is dropped, unless the
    // scene still lacks min_items: then the least harmful position of the last draw is used.
    if (!placed && (k >= o.min_items || item.labelled == 0)) continue;

    const int64_t top = best_top, left = best_left, size = item.size;
    const int64_t class_id = source.labels[item.source_index];
    const uint8_t class_label = static_cast<uint8_t>(1 + class_id);
    const int8_t self = static_cast<int8_t>(items.size());
    // Random intensity range per item: ink 0 -> low, ink 1 -> high.
    float low = static_cast<float>(rng.uniform(0.0, 0.5));
    float high = std::min(1.0f, low + static_cast<float>(rng.uniform(0.3, 0.5)));
    for (size_t f = 0; f < s.footprint.size(); ++f) {
      float ink = s.ink[s.footprint[f]];
      int64_t p = top * side + left + s.footprint_on_canvas[f];
      // Opaque where labelled, fading out across the soft edge.
      float alpha = std::min(1.0f, (ink - kInkIgnoreThreshold) / (kInkLabelThreshold - kInkIgnoreThreshold));
      s.canvas[p] = alpha * (low + (high - low) * ink) + (1 - alpha) * s.canvas[p];
      int8_t previous = s.owner[p];
      if (previous >= 0) --items[previous].visible_pixels;
      if (ink > kInkLabelThreshold) {
        label_out[p] = class_label;
        s.owner[p] = self;
      } else {
        label_out[p] = static_cast<uint8_t>(kIgnoreLabel);
        s.owner[p] = -1;
      }
    }
    PlacedItem placed_item;
    placed_item.source_index = item.source_index;
    placed_item.class_id = class_id;
    placed_item.top = top, placed_item.left = left, placed_item.size = size;
    placed_item.labelled_pixels = placed_item.visible_pixels = item.labelled;
    items.push_back(placed_item);
  }

  const float noise_std = static_cast<float>(o.noise_std);
  if (noise_std > 0) {
    for (int64_t p = 0; p + 1 < area; p += 2) {
      float first, second;
      rng.fast_normal_pair(first, second);
      s.canvas[p] += noise_std * first;
      s.canvas[p + 1] += noise_std * second;
    }
    if (area % 2) s.canvas[area - 1] += noise_std * static_cast<float>(rng.normal());
  }
  for (int64_t p = 0; p < area; ++p) {
    float v = std::min(1.0f, std::max(0.0f, s.canvas[p]));
    image_out[p] = static_cast<uint8_t>(v * 255.0f + 0.5f);
  }
  if (layout) *layout = std::move(items);
}

}  // namespace

FashionSegOptions FashionSegOptions::from_config(const ConfigSection& cfg) {
  FashionSegOptions o;
  o.canvas = cfg.get<int64_t>("canvas", o.canvas);
  o.train_scenes = cfg.get<int64_t>("train_scenes", o.train_scenes);
  o.val_scenes = cfg.get<int64_t>("val_scenes", o.val_scenes);
  o.min_items = cfg.get<int64_t>("min_items", o.min_items);
  o.max_items = cfg.get<int64_t>("max_items", o.max_items);
  o.min_scale = cfg.get<double>("min_scale", o.min_scale);
  o.max_scale = cfg.get<double>("max_scale", o.max_scale);
  o.background = cfg.get<std::string>("background", o.background);
  o.noise_std = cfg.get<double>("noise_std", o.noise_std);
  int64_t seed = cfg.get<int64_t>("seed", static_cast<int64_t>(o.seed));
  cfg.check(seed >= 0, "seed", "must be non-negative");
  o.seed = static_cast<uint64_t>(seed);
  o.mnist_dir = cfg.get<std::string>("mnist_dir", o.mnist_dir);
  validate_fields(o, [&](bool ok, const std::string& key, const std::string& message) {
    cfg.check(ok, key, message);
  });
  return o;
}

void FashionSegOptions::validate() const {
  validate_fields(*this, [](bool ok, const std::string& key, const std::string& message) {
    if (!ok) throw ConfigError(fmt::format("fashion-seg option '{}': {}", key, message));
  });
}

std::vector<std::string> fashion_seg_class_names() {
  std::vector<std::string> names{"background"};
  for (const auto& name : fashion_mnist_class_names()) names.push_back(name);
  return names;
}

TensorDataset make_fashion_seg(const FashionSegOptions& options, bool train,
                               std::vector<SceneLayout>* layouts, int64_t threads) {
  options.validate();
  FashionMnistSplit split = read_fashion_mnist_split(options.mnist_dir, train ? "train" : "test");
  Source source{split.images.data_ptr<uint8_t>(), split.labels.data_ptr<uint8_t>(),
                split.images.size(0)};

  const int64_t count = train ? options.train_scenes : options.val_scenes;
  const int64_t side = options.canvas, area = side * side;
  TensorDataset dataset;
  dataset.images = torch::empty({count, 1, side, side}, torch::kUInt8);
  dataset.targets = torch::empty({count, side, side}, torch::kUInt8);
  dataset.num_classes = kFashionMnistClasses + 1;
  dataset.class_names = fashion_seg_class_names();
  dataset.task = Task::Segmentation;
  if (layouts) layouts->assign(static_cast<size_t>(count), SceneLayout{});

  uint8_t* images = dataset.images.data_ptr<uint8_t>();
  uint8_t* labels = dataset.targets.data_ptr<uint8_t>();
  const uint64_t split_tag = train ? 1 : 2;
  auto render_range = [&](int64_t begin, int64_t end) {
    Scratch scratch;
    for (int64_t i = begin; i < end; ++i)
      render_scene(options, source, mix_seed({options.seed, split_tag, static_cast<uint64_t>(i)}),
                   images + i * area, labels + i * area, layouts ? &(*layouts)[i] : nullptr,
                   scratch);
  };

  if (threads <= 0) threads = std::max<int64_t>(1, std::thread::hardware_concurrency());
  threads = std::min<int64_t>({threads, 16, (count + 31) / 32});  // >= 32 scenes per thread
  if (threads <= 1) {
    render_range(0, count);
  } else {
    std::vector<std::thread> workers;
    for (int64_t t = 0; t < threads; ++t)
      workers.emplace_back(render_range, count * t / threads, count * (t + 1) / threads);
    for (auto& worker : workers) worker.join();
  }
  return dataset;
}

}  // namespace distillery
