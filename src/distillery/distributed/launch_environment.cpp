#include "distillery/distributed/launch_environment.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>

#include "distillery/core/error.h"

namespace distillery {
namespace {

std::optional<std::string> read_variable(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

long parse_integer(const char* name, const std::string& text, long low, long high) {
  errno = 0;
  char* end = nullptr;
  long value = std::strtol(text.c_str(), &end, 10);
  if (errno != 0 || end == text.c_str() || *end != '\0' || value < low || value > high)
    throw ConfigError(fmt::format("environment variable {}='{}': expected an integer in [{}, {}]",
                                  name, text, low, high));
  return value;
}

std::string require_variable(const char* name) {
  auto text = read_variable(name);
  if (!text)
    throw ConfigError(fmt::format("environment variable {} is not set (WORLD_SIZE > 1 needs RANK, "
                                  "MASTER_ADDR and MASTER_PORT too)", name));
  return *text;
}

}  // namespace

std::optional<LaunchEnvironment> LaunchEnvironment::from_environment() {
  auto world_text = read_variable("WORLD_SIZE");
  if (!world_text) return std::nullopt;
  LaunchEnvironment env;
  env.world_size = static_cast<int>(parse_integer("WORLD_SIZE", *world_text, 1, 65536));
  if (env.world_size == 1) return std::nullopt;
  env.rank = static_cast<int>(parse_integer("RANK", require_variable("RANK"), 0, env.world_size - 1));
  // LOCAL_RANK only matters for picking a GPU; torchrun always sets it, plain scripts may not.
  auto local = read_variable("LOCAL_RANK");
  env.local_rank = local ? static_cast<int>(parse_integer("LOCAL_RANK", *local, 0, env.world_size - 1)) : 0;
  env.master_addr = require_variable("MASTER_ADDR");
  env.master_port = static_cast<int>(parse_integer("MASTER_PORT", require_variable("MASTER_PORT"), 1, 65535));
  return env;
}

double timeout_from_environment(double fallback) {
  auto text = read_variable("DISTILL_TIMEOUT_S");
  if (!text) return fallback;
  errno = 0;
  char* end = nullptr;
  double value = std::strtod(text->c_str(), &end);
  if (errno != 0 || end == text->c_str() || *end != '\0' || !(value > 0))
    throw ConfigError(fmt::format("environment variable DISTILL_TIMEOUT_S='{}': expected seconds > 0",
                                  *text));
  return value;
}

}  // namespace distillery
