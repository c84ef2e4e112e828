// Fuzzes the config system the way `distill train` uses it: YAML text, `--set` overrides,
// Recipe::parse (every section's typed reads and checks) and the unknown-key check. Lines at
// the top starting with "--set " are overrides; the rest is the recipe. Only distillery::Error
// may leave the parser: anything else (a yaml-cpp exception, std::out_of_range, ...) is a bug.
#include <sstream>
#include <string>

#include "distillery/core/config.h"
#include "distillery/core/error.h"
#include "distillery/train/recipe.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> overrides;
  size_t offset = 0;
  while (text.compare(offset, 6, "--set ") == 0) {
    size_t end = text.find('\n', offset);
    if (end == std::string::npos) end = text.size();
    overrides.push_back(text.substr(offset + 6, end - offset - 6));
    offset = std::min(end + 1, text.size());
  }
  try {
    distillery::Config config = distillery::Config::from_string(text.substr(offset), "fuzz.yaml");
    for (const auto& o : overrides) config.apply_override(o);
    distillery::Recipe recipe = distillery::Recipe::parse(config);
    recipe.config.root().consume_subtree("distillers");
    recipe.config.check_all_consumed();
    (void)recipe.config.dump();
  } catch (const distillery::Error&) {
  }
  return 0;
}
