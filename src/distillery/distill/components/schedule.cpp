#include "distillery/distill/components/schedule.h"

#include <algorithm>

namespace distillery {

double linear_warmup_factor(int64_t step, int64_t warmup_steps) {
  if (warmup_steps <= 0) return 1.0;
  return std::min(1.0, static_cast<double>(std::max<int64_t>(step, 0)) / static_cast<double>(warmup_steps));
}

}  // namespace distillery
