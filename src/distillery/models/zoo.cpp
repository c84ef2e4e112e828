#include "distillery/models/zoo.h"

#include <fmt/format.h>

#include "distillery/core/error.h"

namespace distillery {

const std::vector<ZooEntry>& model_zoo() {
  static const std::vector<ZooEntry> zoo = [] {
    std::vector<ZooEntry> entries;
    register_cnn_models(entries);
    register_transformer_models(entries);
    return entries;
  }();
  return zoo;
}

const ZooEntry& find_model(const std::string& name) {
  for (const auto& entry : model_zoo())
    if (entry.name == name) return entry;
  std::string known;
  for (const auto& entry : model_zoo()) known += (known.empty() ? "" : ", ") + entry.name;
  throw ConfigError(fmt::format("unknown model '{}' (known: {})", name, known));
}

Model create_model(const std::string& name, const ModelOptions& options) {
  return find_model(name).build(options);
}

}  // namespace distillery
