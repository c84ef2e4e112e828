// Builds the train and validation splits a recipe's `data:` block names.
#pragma once
#include <memory>

#include "distillery/data/tensor_dataset.h"
#include "distillery/train/recipe.h"

namespace distillery {

struct DataSplits {
  std::shared_ptr<const TensorDataset> train;
  std::shared_ptr<const TensorDataset> val;
};

DataSplits load_data_splits(const DataSpec& spec);

}  // namespace distillery
