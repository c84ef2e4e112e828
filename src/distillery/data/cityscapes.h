// Cityscapes (fine annotations): leftImg8bit/<split>/<city>/<id>_leftImg8bit.png with
// gtFine/<split>/<city>/<id>_gtFine_labelIds.png. The 34 label ids map to the 19 training ids of
// the official benchmark (cityscapesscripts' labels.py); every other id becomes 255 (ignore).
#pragma once
#include <string>
#include <vector>

#include "distillery/data/tensor_dataset.h"

namespace distillery {

const std::vector<std::string>& cityscapes_class_names();  // 19 names, training-id order
LabelMap cityscapes_label_map();
std::vector<Rgb> cityscapes_colours();  // 19 colours of the official palette
// split: train | val | test. DataError when the directories are missing, empty, or an image has
// no label map.
TensorDataset open_cityscapes(const std::string& root, const std::string& split);

}  // namespace distillery
