// Weight schedules for loss terms.
#pragma once
#include <cstdint>

#include "distillery/distill/distiller.h"

namespace distillery {

// Linear warm-up: step / warmup_steps, capped at 1; 1 when warmup_steps is 0.
double linear_warmup_factor(int64_t step, int64_t warmup_steps);

// A constant weight with an optional linear warm-up (warmup_steps = 0: constant).
struct WeightSchedule {
  double weight = 1.0;
  int64_t warmup_steps = 0;
  double at(const StepInfo& step) const { return weight * linear_warmup_factor(step.step, warmup_steps); }
};

}  // namespace distillery
