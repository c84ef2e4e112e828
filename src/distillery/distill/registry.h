// Distillers by name. Adding a method = its own file under methods/ + one line in registry.cpp.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "distillery/distill/distiller.h"

namespace distillery {

// `params` is the recipe's block for this distiller (its `name`/`weight`/`warmup_steps` keys
// are read by DistillerSet); the factory reads its own keys with defaults from METHODS.md.
using DistillerFactory = std::function<Distiller(const DistillerContext&, const ConfigSection& params)>;

struct DistillerEntry {
  std::string name;
  std::string description;  // one line for `distill methods`
  DistillerFactory build;
};

const std::vector<DistillerEntry>& distiller_registry();
// Throws ConfigError naming the unknown method and listing the known ones.
Distiller create_distiller(const std::string& name, const DistillerContext& context,
                           const ConfigSection& params);

}  // namespace distillery
