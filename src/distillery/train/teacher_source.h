// Where a distillation run gets the teacher's outputs from. The online source runs a frozen
// teacher; a cached source (precomputed outputs) implements the same interface.
#pragma once
#include <memory>
#include <vector>

#include "distillery/data/batch.h"
#include "distillery/distill/distiller.h"
#include "distillery/models/model.h"
#include "distillery/train/recipe.h"

namespace distillery {

class TeacherSource {
 public:
  virtual ~TeacherSource() = default;
  // Outputs for this batch, detached (no graph back into the teacher).
  virtual ModelOutput outputs(const Batch& batch) = 0;
  virtual std::vector<StageSpec> stages() const = 0;
  virtual int64_t num_classes() const = 0;
  // Throws ConfigError when this source cannot serve `recipe`'s run and distillers (a cache
  // built for another schedule or without an output they read).
  virtual void check_compatible(const Recipe& recipe, const TeacherReads& reads) const {}
};

// A frozen teacher network: eval mode (BatchNorm statistics fixed), no gradients.
class OnlineTeacher : public TeacherSource {
 public:
  explicit OnlineTeacher(Model model);
  ModelOutput outputs(const Batch& batch) override;
  std::vector<StageSpec> stages() const override { return model_->stages(); }
  int64_t num_classes() const override { return model_->num_classes(); }
  const Model& model() const { return model_; }

 private:
  Model model_;
};

// Builds the teacher named by a recipe: a cache (source: cache) or the network, trained first
// (by its own recipe) when the checkpoint is missing, then loaded, refusing a checkpoint made
// for another model.
std::unique_ptr<TeacherSource> make_teacher_source(const TeacherSpec& spec);

}  // namespace distillery
