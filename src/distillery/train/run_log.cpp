#include "distillery/train/run_log.h"

#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "distillery/core/error.h"

namespace distillery {

int64_t truncate_run_log(const std::string& path, int64_t step) {
  if (!std::filesystem::exists(path)) return 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("metrics log '{}': cannot be read", path));
  std::string kept;
  int64_t dropped = 0;
  for (std::string line; std::getline(in, line);) {
    nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    bool keep = record.is_object() && record.contains("step") && record["step"].is_number_integer() &&
                record["step"].get<int64_t>() <= step;
    if (keep) {
      kept += line;
      kept += '\n';
    } else {
      ++dropped;
    }
  }
  if (dropped == 0) return 0;
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << kept;
    out.flush();
    if (!out) throw Error(fmt::format("metrics log '{}': cannot be rewritten", path));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw Error(fmt::format("metrics log '{}': cannot be replaced", path));
  return dropped;
}

}  // namespace distillery
