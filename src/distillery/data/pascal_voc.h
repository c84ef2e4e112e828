// Pascal VOC 2012 segmentation: JPEGImages/<id>.jpg with SegmentationClass/<id>.png (palette PNGs
// whose indices are the 21 class ids; 255 marks object borders and is kept as ignore), split by
// ImageSets/Segmentation/<split>.txt. SBD-style augmented sets ("trainaug": 10,582 images) come
// as another list file and label directory (e.g. SegmentationClassAug, greyscale PNGs); list
// lines are either an id or "<image path> <label path>" relative to the root.
#pragma once
#include <string>
#include <vector>

#include "distillery/data/tensor_dataset.h"

namespace distillery {

const std::vector<std::string>& voc_class_names();  // 21 names, background first
// The VOC colour map (bit-interleaved class ids), entry 255 = (224, 224, 192) as in the files.
std::vector<Rgb> voc_palette();

// split: a name under ImageSets/Segmentation ("train", "val", "trainval") or a list file path
// (ending in .txt; relative to the root unless absolute). label_dir: relative to the root.
TensorDataset open_pascal_voc(const std::string& root, const std::string& split,
                              const std::string& label_dir = "SegmentationClass");

}  // namespace distillery
