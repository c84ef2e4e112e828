// Process-wide settings: thread count and seeding.
#pragma once
#include <cstdint>

namespace distillery {

// Cores available to this process (affinity mask aware), at least 1.
int available_cores();
// Sets LibTorch's intra-op threads; n <= 0 means available_cores(). Debian's build starts at 1.
void set_thread_count(int n);
// Seeds torch's global generator (initialisation, dropout, stochastic depth).
void seed_everything(uint64_t seed);

}  // namespace distillery
