// Where this process sits in a multi-process run, read from the variables torchrun sets (and
// `distill launch` sets the same way): RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT.
#pragma once
#include <optional>
#include <string>

namespace distillery {

struct LaunchEnvironment {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;

  // nullopt when WORLD_SIZE is unset or 1 (a plain single-process run). Otherwise every
  // variable must be present and valid: a missing or malformed one throws ConfigError naming it.
  static std::optional<LaunchEnvironment> from_environment();
};

// Seconds from DISTILL_TIMEOUT_S when set (ConfigError when malformed), else `fallback`.
double timeout_from_environment(double fallback);

}  // namespace distillery
