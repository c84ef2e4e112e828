// `distill launch`: runs N copies of a command on this host as one data-parallel job, with the
// variables torchrun would set (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT).
#pragma once
#include <string>
#include <vector>

namespace distillery {

struct LocalLaunchOptions {
  int processes = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;        // 0: a free port of this host
  double grace_seconds = 5;   // after SIGTERM, before SIGKILL
};

// Starts the processes (program + arguments, exec'd as they are) and waits for them. When one
// exits with an error or is killed, the others get SIGTERM (then SIGKILL after the grace
// period) and its exit status is returned (128 + signal for a signal); 0 when all succeed.
// SIGINT and SIGTERM sent to the launcher are passed on to the processes.
int launch_local_processes(const std::string& program, const std::vector<std::string>& arguments,
                           const LocalLaunchOptions& options);

// A TCP port nobody listens on right now (bound and released; another program could take it
// before the job does, which then fails its rendezvous with a clear error).
int find_free_port();

}  // namespace distillery
