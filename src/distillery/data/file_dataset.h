// Real segmentation datasets: samples stay on disk and are decoded per batch (Cityscapes alone
// is 11 GB of PNGs). A FileDataset lists the image / label file pairs and how raw label values
// become training ids; the loader crops training samples to `crop_size` and evaluation runs at
// full resolution (train/evaluate.h). Readers per layout: cityscapes.h, pascal_voc.h, ade20k.h,
// folder_dataset.h.
#pragma once
#include <torch/types.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "distillery/data/palette.h"

namespace distillery {

struct FileSample {
  std::string image;  // PNG or JPEG photograph
  std::string label;  // palette or greyscale PNG of raw label values
};

// Raw label value -> training id (0..classes-1, or 255 = ignore); kInvalidLabel marks values
// that must not occur (a DataError naming the file and the value when they do).
constexpr int16_t kInvalidLabel = -1;
using LabelMap = std::array<int16_t, 256>;
// 0..classes-1 kept, 255 kept as ignore, anything else invalid.
LabelMap identity_label_map(int64_t classes);

// How evaluation runs the model on a full-resolution image.
struct InferenceOptions {
  std::string mode = "whole";  // whole: one forward pass; slide: crop x crop windows
  int64_t crop = 512;          // window size (slide)
  int64_t stride = 341;        // window step (slide), <= crop
};

struct FileDataset {
  std::string description;  // e.g. "cityscapes 'val' at /data/cityscapes" (for messages)
  std::vector<FileSample> samples;
  LabelMap label_map{};
  std::vector<Rgb> palette;  // 256 entries: the dataset's class colours, 255 = ignore
  int64_t crop_size = 512;   // training crops (square)
  double resize = 1.0;       // every image is first rescaled by this factor (labels too in training)
  InferenceOptions inference;

  int64_t size() const { return static_cast<int64_t>(samples.size()); }
  // image uint8 [3, H, W] and training ids uint8 [H, W] at the stored resolution. DataError when
  // a file is unreadable, the sizes differ, or a label value is invalid.
  std::pair<torch::Tensor, torch::Tensor> load(int64_t index) const;
  // Training ids of raw labels uint8 [H, W] (`origin` names them in errors).
  torch::Tensor map_labels(const torch::Tensor& raw, const std::string& origin) const;
};

// A full palette: `colours` for the first ids, the default label palette after them, 255 white.
std::vector<Rgb> dataset_palette(const std::vector<Rgb>& colours);

// Sorted regular files directly inside `dir` (recursive: in its subdirectories too) whose names
// end with one of `suffixes`. DataError when `dir` is not a directory.
std::vector<std::string> list_files(const std::string& dir, const std::vector<std::string>& suffixes,
                                    bool recursive);

}  // namespace distillery
