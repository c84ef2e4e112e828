#include "distillery/data/ade20k.h"

#include <fmt/format.h>

#include <filesystem>

#include "distillery/core/error.h"

namespace distillery {
namespace fs = std::filesystem;

const std::vector<std::string>& ade20k_class_names() {
  static const std::vector<std::string> names = {
      "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
      "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
      "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug",
      "field", "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub",
      "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter",
      "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs",
      "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
      "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
      "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
      "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
      "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track",
      "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
      "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer",
      "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
      "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave",
      "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
      "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate",
      "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag"};
  return names;
}

LabelMap ade20k_label_map() {
  LabelMap map;
  map.fill(kInvalidLabel);
  map[0] = 255;
  for (int v = 1; v <= 150; ++v) map[v] = static_cast<int16_t>(v - 1);
  map[255] = 255;
  return map;
}

TensorDataset open_ade20k(const std::string& root, const std::string& split) {
  const std::string image_dir = fmt::format("{}/images/{}", root, split);
  const std::string label_dir = fmt::format("{}/annotations/{}", root, split);
  auto files = std::make_shared<FileDataset>();
  files->description = fmt::format("ade20k '{}' at {}", split, root);
  for (const std::string& image : list_files(image_dir, {".jpg", ".jpeg", ".png"}, /*recursive=*/false)) {
    std::string label = (fs::path(label_dir) / fs::path(image).stem()).string() + ".png";
    if (!fs::exists(label))
      throw DataError(fmt::format("ade20k: image '{}' has no annotation '{}'", image, label));
    files->samples.push_back({image, label});
  }
  if (files->samples.empty()) throw DataError(fmt::format("ade20k: no images in '{}'", image_dir));
  files->label_map = ade20k_label_map();
  files->palette = dataset_palette({});

  return TensorDataset::on_disk(std::move(files), 150, ade20k_class_names());
}

}  // namespace distillery
