// ADE20K scene parsing (ADEChallengeData2016): images/<split>/*.jpg with annotations/<split>/*.png
// (greyscale). Raw value 0 ("other") becomes 255 (ignore) and 1..150 become 0..149, as in the
// benchmark's evaluation.
#pragma once
#include <string>
#include <vector>

#include "distillery/data/tensor_dataset.h"

namespace distillery {

const std::vector<std::string>& ade20k_class_names();  // 150 names
LabelMap ade20k_label_map();
// root: the ADEChallengeData2016 directory; split: training | validation.
TensorDataset open_ade20k(const std::string& root, const std::string& split);

}  // namespace distillery
