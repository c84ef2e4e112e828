// The distiller contract (DESIGN.md): student and teacher outputs in, named loss terms out.
// A distiller owns its learnable parts (projectors, aligners) as registered submodules; the
// trainer hands its parameters to the optimizer together with the student's.
#pragma once
#include <torch/nn/module.h>
#include <torch/types.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "distillery/core/config.h"
#include "distillery/data/batch.h"
#include "distillery/models/model.h"

namespace distillery {

struct StepInfo {
  int64_t step = 0;         // 0-based optimizer step
  int64_t total_steps = 1;
  int64_t steps_per_epoch = 1;
};

// Named scalar losses; the trainer sums them for backward and logs each.
struct LossTerms {
  std::map<std::string, torch::Tensor> terms;
  void add(const std::string& name, const torch::Tensor& value);  // accumulates same names
  torch::Tensor total() const;                                      // sum of all terms
};

// Which teacher outputs a distiller reads, so that a teacher-output cache stores only those.
struct TeacherReads {
  bool logits = false;
  bool aux_logits = false;
  bool embedding = false;
  bool all_stages = false;
  std::set<int64_t> stages;  // resolved, 0-based

  static TeacherReads everything();
  static TeacherReads logits_only();
  void merge(const TeacherReads& other);
  bool reads_stage(int64_t stage) const { return all_stages || stages.count(stage) > 0; }
};

// What a distiller may inspect while it builds its projectors.
struct DistillerContext {
  std::vector<StageSpec> student_stages;
  std::vector<StageSpec> teacher_stages;
  int64_t num_classes = 0;
  Task task = Task::Segmentation;
  int64_t dataset_size = 0;  // for memory banks indexed by sample
};

class DistillerImpl : public torch::nn::Module {
 public:
  virtual LossTerms forward(const ModelOutput& student, const ModelOutput& teacher,
                            const Batch& batch, const StepInfo& step) = 0;
  // A distiller that reads only the student (self-distillation) may skip the teacher.
  virtual bool needs_teacher() const { return true; }
  // The teacher outputs forward() reads; the default (everything) is always safe, a narrower
  // answer makes teacher caches smaller.
  virtual TeacherReads teacher_reads() const { return TeacherReads::everything(); }
};
using Distiller = std::shared_ptr<DistillerImpl>;

}  // namespace distillery
