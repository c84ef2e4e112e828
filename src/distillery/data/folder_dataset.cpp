#include "distillery/data/folder_dataset.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>

#include "distillery/core/error.h"

namespace distillery {
namespace fs = std::filesystem;

namespace {

std::string trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t\r");
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(" \t\r") - begin + 1);
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

FolderClasses read_folder_classes(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw DataError(fmt::format("class list '{}' cannot be opened", path));
  FolderClasses classes;
  const auto& defaults = label_palette();
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    line = trim(line);
    if (line.empty()) continue;
    Rgb colour = defaults[classes.names.size() % 255];
    const auto hash = line.rfind(" #");
    if (hash != std::string::npos) {
      const std::string hex = line.substr(hash + 2);
      int digits[6];
      bool ok = hex.size() == 6;
      for (int i = 0; ok && i < 6; ++i) ok = (digits[i] = hex_digit(hex[i])) >= 0;
      if (!ok)
        throw DataError(fmt::format("class list '{}' line {}: colour '#{}' is not #rrggbb", path, number, hex));
      for (int c = 0; c < 3; ++c) colour[c] = static_cast<uint8_t>(digits[2 * c] * 16 + digits[2 * c + 1]);
      line = trim(line.substr(0, hash));
    }
    if (line.empty()) throw DataError(fmt::format("class list '{}' line {}: no class name", path, number));
    classes.names.push_back(line);
    classes.colours.push_back(colour);
  }
  if (classes.names.empty()) throw DataError(fmt::format("class list '{}' names no class", path));
  if (classes.names.size() > 255)
    throw DataError(fmt::format("class list '{}' names {} classes; at most 255 fit a label map with 255 = ignore",
                                path, classes.names.size()));
  return classes;
}

TensorDataset open_folder_dataset(const std::string& root, const std::string& split) {
  FolderClasses classes = read_folder_classes(root + "/classes.txt");
  const std::string image_dir = fmt::format("{}/images/{}", root, split);
  const std::string mask_dir = fmt::format("{}/masks/{}", root, split);
  auto files = std::make_shared<FileDataset>();
  files->description = fmt::format("folder dataset '{}' at {} ({} classes)", split, root, classes.names.size());
  for (const std::string& image : list_files(image_dir, {".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG"},
                                             /*recursive=*/false)) {
    std::string mask = (fs::path(mask_dir) / fs::path(image).stem()).string() + ".png";
    if (!fs::exists(mask)) throw DataError(fmt::format("folder dataset: image '{}' has no mask '{}'", image, mask));
    files->samples.push_back({image, mask});
  }
  if (files->samples.empty()) throw DataError(fmt::format("folder dataset: no images in '{}'", image_dir));
  const auto count = static_cast<int64_t>(classes.names.size());
  files->label_map = identity_label_map(count);
  files->palette = dataset_palette(classes.colours);

  return TensorDataset::on_disk(std::move(files), count, classes.names);
}

}  // namespace distillery
