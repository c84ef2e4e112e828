// Builds the train and validation splits a recipe's `data:` block names.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "distillery/data/palette.h"

#include "distillery/data/tensor_dataset.h"
#include "distillery/train/recipe.h"

namespace distillery {

struct DataSplits {
  std::shared_ptr<const TensorDataset> train;
  std::shared_ptr<const TensorDataset> val;
};

DataSplits load_data_splits(const DataSpec& spec);

// Class names and the 256-entry label palette of a recipe's data, without listing its files.
std::vector<std::string> class_names_for(const DataSpec& spec);
std::vector<Rgb> palette_for(const DataSpec& spec);

}  // namespace distillery
