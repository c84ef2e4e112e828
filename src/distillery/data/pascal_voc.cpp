#include "distillery/data/pascal_voc.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "distillery/core/error.h"

namespace distillery {
namespace fs = std::filesystem;

const std::vector<std::string>& voc_class_names() {
  static const std::vector<std::string> names = {
      "background", "aeroplane", "bicycle", "bird",  "boat",        "bottle", "bus",
      "car",        "cat",       "chair",   "cow",   "diningtable", "dog",    "horse",
      "motorbike",  "person",    "pottedplant", "sheep", "sofa",    "train",  "tvmonitor"};
  return names;
}

std::vector<Rgb> voc_palette() {
  std::vector<Rgb> palette(256);
  for (int id = 0; id < 256; ++id) {
    int r = 0, g = 0, b = 0;
    for (int bit = 7, c = id; bit >= 0; --bit, c >>= 3) {
      r |= ((c >> 0) & 1) << bit;
      g |= ((c >> 1) & 1) << bit;
      b |= ((c >> 2) & 1) << bit;
    }
    palette[id] = {uint8_t(r), uint8_t(g), uint8_t(b)};
  }
  return palette;
}

namespace {

std::string resolve(const std::string& root, std::string path) {
  while (!path.empty() && path.front() == '/' && !fs::exists(path)) path.erase(0, 1);
  return fs::path(path).is_absolute() ? path : (fs::path(root) / path).string();
}

}  // namespace

TensorDataset open_pascal_voc(const std::string& root, const std::string& split,
                              const std::string& label_dir) {
  const bool is_file = split.size() > 4 && split.compare(split.size() - 4, 4, ".txt") == 0;
  const std::string list = is_file ? resolve(root, split)
                                   : fmt::format("{}/ImageSets/Segmentation/{}.txt", root, split);
  std::ifstream in(list);
  if (!in) throw DataError(fmt::format("pascal voc: split list '{}' cannot be opened", list));
  auto files = std::make_shared<FileDataset>();
  files->description = fmt::format("pascal voc '{}' at {}", split, root);
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    std::istringstream fields(line);
    std::string first, second, extra;
    if (!(fields >> first)) continue;  // blank line
    fields >> second;
    if (fields >> extra)
      throw DataError(fmt::format("pascal voc: '{}' line {}: expected '<id>' or '<image> <label>'", list, number));
    FileSample sample;
    if (second.empty()) {
      sample.image = fmt::format("{}/JPEGImages/{}.jpg", root, first);
      sample.label = fmt::format("{}/{}/{}.png", root, label_dir, first);
    } else {
      sample.image = resolve(root, first);
      sample.label = resolve(root, second);
    }
    for (const auto* path : {&sample.image, &sample.label})
      if (!fs::exists(*path))
        throw DataError(fmt::format("pascal voc: '{}' line {} names '{}', which does not exist", list,
                                    number, *path));
    files->samples.push_back(std::move(sample));
  }
  if (files->samples.empty()) throw DataError(fmt::format("pascal voc: split list '{}' is empty", list));
  files->label_map = identity_label_map(21);
  std::vector<Rgb> colours = voc_palette();
  colours.resize(21);
  files->palette = dataset_palette(colours);

  return TensorDataset::on_disk(std::move(files), 21, voc_class_names());
}

}  // namespace distillery
