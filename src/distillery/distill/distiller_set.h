// The distillers of one run, each with its weight and optional linear warm-up, behind one call.
#pragma once
#include <string>
#include <vector>

#include <torch/nn/pimpl.h>

#include "distillery/distill/distiller.h"

namespace distillery {

class DistillerSetImpl : public torch::nn::Module {
 public:
  // Reads a recipe's `distillers:` list: [{name: heteroakd, weight: 1.0, warmup_steps: 0, ...}].
  DistillerSetImpl(const std::vector<ConfigSection>& entries, const DistillerContext& context);

  // Terms are prefixed with the distiller's name when they would collide ("kd", "cwd",
  // "heteroakd.mix"...); each term is already multiplied by its weight and warm-up factor.
  LossTerms forward(const ModelOutput& student, const ModelOutput& teacher, const Batch& batch,
                    const StepInfo& step);
  bool empty() const { return members_.empty(); }
  bool needs_teacher() const;
  TeacherReads teacher_reads() const;  // the union over the members
  std::vector<std::string> names() const;

 private:
  struct Member {
    std::string name;
    Distiller distiller;
    double weight = 1.0;
    int64_t warmup_steps = 0;
  };
  std::vector<Member> members_;
};
TORCH_MODULE(DistillerSet);

}  // namespace distillery
