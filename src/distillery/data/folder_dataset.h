// A generic layout for one's own data:
//   <root>/classes.txt            one class per line, in id order; optionally "name #rrggbb"
//   <root>/images/<split>/*.jpg|*.jpeg|*.png
//   <root>/masks/<split>/<image stem>.png   palette or greyscale PNG of class ids, 255 = ignore
// Mask values that are neither a class id nor 255 are an error (naming file, pixel and value).
#pragma once
#include <string>
#include <vector>

#include "distillery/data/tensor_dataset.h"

namespace distillery {

struct FolderClasses {
  std::vector<std::string> names;
  std::vector<Rgb> colours;  // one per class (the default palette where a line gives none)
};
// DataError (ConfigError-free: the recipe layer rewraps) when missing, empty, above 255
// classes, or a colour is malformed.
FolderClasses read_folder_classes(const std::string& path);

TensorDataset open_folder_dataset(const std::string& root, const std::string& split);

}  // namespace distillery
