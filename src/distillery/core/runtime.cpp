#include "distillery/core/runtime.h"

#include <sched.h>
#include <torch/torch.h>

#include <thread>

namespace distillery {

int available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int count = CPU_COUNT(&set);
    if (count > 0) return count;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

void set_thread_count(int n) { torch::set_num_threads(n > 0 ? n : available_cores()); }

void seed_everything(uint64_t seed) { torch::manual_seed(seed); }

}  // namespace distillery
