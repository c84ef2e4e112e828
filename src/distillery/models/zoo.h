// Models by name. Each model family registers its presets in its own file.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "distillery/models/model.h"

namespace distillery {

struct ZooEntry {
  std::string name;
  std::string description;  // one line for `distill models`
  Task task = Task::Segmentation;
  std::function<Model(const ModelOptions&)> build;
};

// All presets, in a stable order (registration order).
const std::vector<ZooEntry>& model_zoo();
// Throws ConfigError naming the unknown model and listing the known ones.
Model create_model(const std::string& name, const ModelOptions& options);
const ZooEntry& find_model(const std::string& name);

// Registration functions, one per model family file (called by zoo.cpp).
void register_cnn_models(std::vector<ZooEntry>& zoo);
void register_transformer_models(std::vector<ZooEntry>& zoo);

}  // namespace distillery
