#include <fmt/format.h>
#include <unistd.h>

#include <climits>

#include "commands.h"
#include "distillery/core/error.h"
#include "distillery/distributed/local_launcher.h"

namespace distillery::cli {
namespace {

// This very binary, so that the ranks run the same build as the launcher.
std::string own_executable() {
  char buffer[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buffer, sizeof(buffer) - 1);
  if (n <= 0) throw Error("distill launch: cannot find its own executable (/proc/self/exe)");
  return std::string(buffer, static_cast<size_t>(n));
}

}  // namespace

void add_launch_command(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand(
      "launch", "run a distill command as N local data-parallel processes (torchrun-style variables)");
  auto options = std::make_shared<LocalLaunchOptions>();
  auto arguments = std::make_shared<std::vector<std::string>>();
  cmd->add_option("--nproc", options->processes, "number of processes")->required()->check(CLI::Range(1, 1024));
  cmd->add_option("--master-addr", options->master_addr, "rendezvous host (rank 0's)")
      ->capture_default_str();
  cmd->add_option("--master-port", options->master_port, "rendezvous port (0: a free one)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("command", *arguments, "the distill arguments after --, e.g. -- --threads 1 train r.yaml")
      ->required();
  cmd->callback([&run, options, arguments] {
    run = [options, arguments] { return launch_local_processes(own_executable(), *arguments, *options); };
  });
}

}  // namespace distillery::cli
