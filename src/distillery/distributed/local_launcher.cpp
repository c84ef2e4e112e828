#include "distillery/distributed/local_launcher.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <utility>

#include "distillery/core/error.h"

extern char** environ;

namespace distillery {
namespace {

volatile std::sig_atomic_t forwarded_signal = 0;

void remember_signal(int signal_number) { forwarded_signal = signal_number; }

int exit_status_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) return fmt::format("was killed by signal {} ({})", WTERMSIG(status),
                                              strsignal(WTERMSIG(status)));
  return fmt::format("exited with code {}", WEXITSTATUS(status));
}

// The environment of one rank: ours, with the job's variables replaced. Built before fork(),
// so that the child only calls execve (fork in a threaded process allows little else).
std::vector<std::string> rank_environment(const LocalLaunchOptions& options, int rank, int port) {
  const std::vector<std::pair<std::string, std::string>> job{
      {"RANK", std::to_string(rank)},
      {"LOCAL_RANK", std::to_string(rank)},
      {"WORLD_SIZE", std::to_string(options.processes)},
      {"LOCAL_WORLD_SIZE", std::to_string(options.processes)},
      {"MASTER_ADDR", options.master_addr},
      {"MASTER_PORT", std::to_string(port)}};
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string text = *entry;
    std::string name = text.substr(0, text.find('='));
    bool replaced = false;
    for (const auto& [key, value] : job) replaced = replaced || key == name;
    if (!replaced) env.push_back(text);
  }
  for (const auto& [key, value] : job) env.push_back(key + "=" + value);
  return env;
}

std::vector<char*> pointers_to(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

int find_free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error(fmt::format("distill launch: socket(): {}", std::strerror(errno)));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_ANY);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    int error = errno;
    close(fd);
    throw Error(fmt::format("distill launch: cannot find a free port: {}", std::strerror(error)));
  }
  close(fd);
  return ntohs(address.sin_port);
}

int launch_local_processes(const std::string& program, const std::vector<std::string>& arguments,
                           const LocalLaunchOptions& options) {
  if (options.processes < 1)
    throw ConfigError(fmt::format("distill launch: --nproc must be >= 1, got {}", options.processes));
  if (arguments.empty()) throw ConfigError("distill launch: no command given (distill launch --nproc N -- train ...)");
  const int port = options.master_port > 0 ? options.master_port : find_free_port();

  struct sigaction action {};
  action.sa_handler = remember_signal;
  sigemptyset(&action.sa_mask);
  struct sigaction old_int {}, old_term {};
  sigaction(SIGINT, &action, &old_int);
  sigaction(SIGTERM, &action, &old_term);

  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<pid_t> pids(static_cast<size_t>(options.processes), -1);
  std::vector<bool> running(pids.size(), false);
  std::vector<std::string> argv_strings{program};
  argv_strings.insert(argv_strings.end(), arguments.begin(), arguments.end());
  for (int rank = 0; rank < options.processes; ++rank) {
    std::vector<std::string> env_strings = rank_environment(options, rank, port);
    std::vector<char*> argv = pointers_to(argv_strings), envp = pointers_to(env_strings);
    pid_t pid = fork();
    if (pid < 0) {
      for (size_t r = 0; r < pids.size(); ++r)
        if (running[r]) kill(-pids[r], SIGTERM);
      throw Error(fmt::format("distill launch: fork failed: {}", std::strerror(errno)));
    }
    if (pid == 0) {
      // Its own process group: stopping a rank also stops whatever it started.
      setpgid(0, 0);
      sigaction(SIGINT, &old_int, nullptr);
      sigaction(SIGTERM, &old_term, nullptr);
      execve(program.c_str(), argv.data(), envp.data());
      static const char message[] = "distill launch: cannot execute the program\n";
      (void)!write(STDERR_FILENO, message, sizeof(message) - 1);
      _exit(127);
    }
    setpgid(pid, pid);  // also here: whichever of parent and child runs first
    pids[rank] = pid;
    running[rank] = true;
  }

  int result = 0;
  bool stopping = false;
  auto kill_deadline = std::chrono::steady_clock::time_point::max();
  auto stop_others = [&](int signal_number) {
    for (size_t r = 0; r < pids.size(); ++r)
      if (running[r]) kill(-pids[r], signal_number);
    if (!stopping) {
      stopping = true;
      kill_deadline = std::chrono::steady_clock::now() +
                      std::chrono::milliseconds(static_cast<int64_t>(options.grace_seconds * 1000));
    }
  };
  int alive = options.processes;
  while (alive > 0) {
    if (forwarded_signal != 0) {
      int signal_number = forwarded_signal;
      forwarded_signal = 0;
      if (result == 0) result = 128 + signal_number;
      stop_others(signal_number);
    }
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (size_t r = 0; r < pids.size(); ++r) {
        if (pids[r] != pid || !running[r]) continue;
        running[r] = false;
        --alive;
        int code = exit_status_of(status);
        if (code != 0 && result == 0) {
          result = code;
          std::fprintf(stderr, "distill launch: rank %zu (pid %d) %s; stopping the other ranks\n", r,
                       static_cast<int>(pid), describe_status(status).c_str());
          stop_others(SIGTERM);
        }
      }
      continue;
    }
    if (pid < 0 && errno != EINTR) break;  // no children left
    if (stopping && std::chrono::steady_clock::now() >= kill_deadline) {
      for (size_t r = 0; r < pids.size(); ++r)
        if (running[r]) kill(-pids[r], SIGKILL);
      kill_deadline = std::chrono::steady_clock::time_point::max();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

}  // namespace distillery
