// Builds the train and validation splits a recipe's `data:` block names.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "distillery/data/palette.h"

#include "distillery/data/loader.h"
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

// The training batch stream of a recipe (batch size, augmentation, seed, prefetch): the trainer
// and the teacher-cache builder must see the very same batches.
LoaderOptions train_loader_options(const Recipe& recipe);

}  // namespace distillery
