#include "distillery/data/file_dataset.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>

#include "distillery/core/error.h"
#include "distillery/core/image_io.h"
#include "distillery/core/png.h"

namespace distillery {
namespace fs = std::filesystem;

LabelMap identity_label_map(int64_t classes) {
  LabelMap map;
  map.fill(kInvalidLabel);
  for (int64_t v = 0; v < std::min<int64_t>(classes, 255); ++v) map[v] = static_cast<int16_t>(v);
  map[255] = 255;
  return map;
}

std::vector<Rgb> dataset_palette(const std::vector<Rgb>& colours) {
  std::vector<Rgb> palette = label_palette_list();
  for (size_t i = 0; i < colours.size() && i < 255; ++i) palette[i] = colours[i];
  palette[255] = {255, 255, 255};
  return palette;
}

torch::Tensor FileDataset::map_labels(const torch::Tensor& raw, const std::string& origin) const {
  torch::Tensor labels = raw.contiguous();
  torch::Tensor out = torch::empty_like(labels);
  const uint8_t* in = labels.data_ptr<uint8_t>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  const int64_t n = labels.numel();
  for (int64_t i = 0; i < n; ++i) {
    const int16_t id = label_map[in[i]];
    if (id == kInvalidLabel)
      throw DataError(fmt::format("label map '{}': value {} at pixel ({}, {}) is not a label of {}",
                                  origin, in[i], i / labels.size(1), i % labels.size(1), description));
    dst[i] = static_cast<uint8_t>(id);
  }
  return out;
}

std::pair<torch::Tensor, torch::Tensor> FileDataset::load(int64_t index) const {
  TORCH_CHECK(index >= 0 && index < size(), "FileDataset::load: index out of range");
  const FileSample& sample = samples[static_cast<size_t>(index)];
  torch::Tensor image = read_rgb_image(sample.image).permute({2, 0, 1}).contiguous();
  torch::Tensor raw = read_png_labels(sample.label);
  if (raw.size(0) != image.size(1) || raw.size(1) != image.size(2))
    throw DataError(fmt::format("label map '{}' is {}x{} but its image '{}' is {}x{}", sample.label,
                                raw.size(1), raw.size(0), sample.image, image.size(2), image.size(1)));
  return {image, map_labels(raw, sample.label)};
}

std::vector<std::string> list_files(const std::string& dir, const std::vector<std::string>& suffixes,
                                    bool recursive) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw DataError(fmt::format("dataset directory '{}' does not exist", dir));
  std::vector<std::string> files;
  auto consider = [&](const fs::directory_entry& entry) {
    if (!entry.is_regular_file()) return;
    const std::string name = entry.path().filename().string();
    for (const auto& suffix : suffixes)
      if (name.size() >= suffix.size() &&
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
        files.push_back(entry.path().string());
        return;
      }
  };
  if (recursive)
    for (const auto& entry : fs::recursive_directory_iterator(dir)) consider(entry);
  else
    for (const auto& entry : fs::directory_iterator(dir)) consider(entry);
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace distillery
