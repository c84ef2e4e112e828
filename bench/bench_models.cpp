// Training throughput and peak memory of every zoo model (or the ones named on the command
// line): forward + backward + SGD step on random batches, warm-up excluded, median of several
// timed repetitions. Each model runs in its own child process so that its peak resident
// memory (getrusage ru_maxrss) is its own.
//
//   ./build/bench_models [--batch 16] [--steps 10] [--reps 3] [--threads N] [model ...]
#include <sys/resource.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "distillery/core/runtime.h"
#include "distillery/models/flops.h"
#include "distillery/models/zoo.h"
#include "distillery/train/task_loss.h"

using namespace distillery;

namespace {

struct Settings {
  int64_t batch = 16, steps = 10, reps = 3;
  int threads = 0;
};

void bench_one(const ZooEntry& entry, const Settings& s) {
  const bool classification = entry.task == Task::Classification;
  ModelOptions options;
  options.num_classes = classification ? 10 : 11;
  options.input_size = classification ? 28 : 64;
  Model model = entry.build(options);
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  auto images = torch::randn({s.batch, 1, options.input_size, options.input_size});
  auto targets = classification
                     ? torch::randint(0, 10, {s.batch}, torch::kInt64)
                     : torch::randint(0, 11, {s.batch, options.input_size, options.input_size}, torch::kInt64);
  auto step = [&] {
    auto out = model->forward(images);
    auto loss = task_loss(out.logits, targets, entry.task);
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
  };
  for (int i = 0; i < 2; ++i) step();  // warm-up: allocator and oneDNN primitive caches
  std::vector<double> rates;
  for (int64_t r = 0; r < s.reps; ++r) {
    auto begin = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < s.steps; ++i) step();
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    rates.push_back(s.batch * s.steps / seconds);
  }
  std::sort(rates.begin(), rates.end());
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf("%-26s %9.2fM %9.1f %9.1f %9.1f %10.0f\n", entry.name.c_str(),
              count_parameters(*model) / 1e6, rates[rates.size() / 2], rates.front(), rates.back(),
              usage.ru_maxrss / 1024.0);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  std::vector<std::string> names;
  bool child = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::stoll(argv[++i]) : 0; };
    if (a == "--batch") s.batch = next();
    else if (a == "--steps") s.steps = next();
    else if (a == "--reps") s.reps = next();
    else if (a == "--threads") s.threads = static_cast<int>(next());
    else if (a == "--child") child = true;
    else names.push_back(a);
  }
  if (s.batch <= 0 || s.steps <= 0 || s.reps <= 0) {
    std::fprintf(stderr, "bench_models: --batch, --steps and --reps must be positive\n");
    return 2;
  }
  set_thread_count(s.threads);
  try {
    if (child) {
      bench_one(find_model(names.at(0)), s);
      return 0;
    }
    if (names.empty())
      for (const auto& e : model_zoo()) names.push_back(e.name);
    for (const auto& n : names) find_model(n);  // unknown names fail before any work
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_models: %s\n", e.what());
    return 2;
  }
  std::printf("batch %lld, %lld steps x %lld reps, %d threads; img/s median (min, max); peak RSS\n",
              static_cast<long long>(s.batch), static_cast<long long>(s.steps),
              static_cast<long long>(s.reps), torch::get_num_threads());
  std::printf("%-26s %10s %9s %9s %9s %10s\n", "model", "params", "img/s", "min", "max", "peak MiB");
  std::fflush(stdout);
  for (const auto& n : names) {
    std::vector<std::string> args = {argv[0], "--child", "--batch", std::to_string(s.batch), "--steps",
                                     std::to_string(s.steps), "--reps", std::to_string(s.reps),
                                     "--threads", std::to_string(torch::get_num_threads()), n};
    pid_t pid = fork();
    if (pid == 0) {
      std::vector<char*> cargs;
      for (auto& a : args) cargs.push_back(a.data());
      cargs.push_back(nullptr);
      execv("/proc/self/exe", cargs.data());
      _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) std::printf("%-26s failed\n", n.c_str());
  }
  return 0;
}
