#include "distillery/data/cityscapes.h"

#include <fmt/format.h>

#include <filesystem>

#include "distillery/core/error.h"

namespace distillery {
namespace fs = std::filesystem;

namespace {

struct CityscapesClass {
  int label_id;
  const char* name;
  Rgb colour;
};
// Training id = position in this table.
const CityscapesClass kClasses[] = {
    {7, "road", {128, 64, 128}},       {8, "sidewalk", {244, 35, 232}},
    {11, "building", {70, 70, 70}},    {12, "wall", {102, 102, 156}},
    {13, "fence", {190, 153, 153}},    {17, "pole", {153, 153, 153}},
    {19, "traffic light", {250, 170, 30}}, {20, "traffic sign", {220, 220, 0}},
    {21, "vegetation", {107, 142, 35}}, {22, "terrain", {152, 251, 152}},
    {23, "sky", {70, 130, 180}},       {24, "person", {220, 20, 60}},
    {25, "rider", {255, 0, 0}},        {26, "car", {0, 0, 142}},
    {27, "truck", {0, 0, 70}},         {28, "bus", {0, 60, 100}},
    {31, "train", {0, 80, 100}},       {32, "motorcycle", {0, 0, 230}},
    {33, "bicycle", {119, 11, 32}}};

const std::string kImageSuffix = "_leftImg8bit.png";
const std::string kLabelSuffix = "_gtFine_labelIds.png";

}  // namespace

const std::vector<std::string>& cityscapes_class_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& c : kClasses) out.push_back(c.name);
    return out;
  }();
  return names;
}

LabelMap cityscapes_label_map() {
  LabelMap map;
  map.fill(255);  // void, unlabeled, license plate, ... and any value the tools never write
  for (size_t train_id = 0; train_id < std::size(kClasses); ++train_id)
    map[kClasses[train_id].label_id] = static_cast<int16_t>(train_id);
  return map;
}

std::vector<Rgb> cityscapes_colours() {
  std::vector<Rgb> colours;
  for (const auto& c : kClasses) colours.push_back(c.colour);
  return colours;
}

TensorDataset open_cityscapes(const std::string& root, const std::string& split) {
  const std::string image_dir = fmt::format("{}/leftImg8bit/{}", root, split);
  const std::string label_dir = fmt::format("{}/gtFine/{}", root, split);
  auto files = std::make_shared<FileDataset>();
  files->description = fmt::format("cityscapes '{}' at {}", split, root);
  for (const std::string& image : list_files(image_dir, {kImageSuffix}, /*recursive=*/true)) {
    // <image_dir>/<city>/<id>_leftImg8bit.png -> <label_dir>/<city>/<id>_gtFine_labelIds.png
    fs::path relative = fs::path(image).lexically_relative(image_dir);
    std::string name = relative.filename().string();
    name = name.substr(0, name.size() - kImageSuffix.size()) + kLabelSuffix;
    std::string label = (fs::path(label_dir) / relative.parent_path() / name).string();
    if (!fs::exists(label))
      throw DataError(fmt::format("cityscapes: image '{}' has no label map '{}'", image, label));
    files->samples.push_back({image, label});
  }
  if (files->samples.empty())
    throw DataError(fmt::format("cityscapes: no *{} images under '{}'", kImageSuffix, image_dir));
  files->label_map = cityscapes_label_map();
  files->palette = dataset_palette(cityscapes_colours());

  return TensorDataset::on_disk(std::move(files), static_cast<int64_t>(std::size(kClasses)), cityscapes_class_names());
}

}  // namespace distillery
