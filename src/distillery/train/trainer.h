// The training loop shared by plain training and distillation: the student's task loss, plus
// the terms of the recipe's distillers when a teacher is present. Methods plug in through
// DistillerSet; nothing here knows about any particular method.
#pragma once
#include <memory>
#include <string>

#include "distillery/distill/distiller_set.h"
#include "distillery/train/data_setup.h"
#include "distillery/train/evaluate.h"
#include "distillery/train/recipe.h"
#include "distillery/train/teacher_source.h"

namespace distillery {

struct TrainResult {
  std::string run_dir;
  std::string metric_name;
  double final_metric = 0;
  double best_metric = 0;
  int64_t steps = 0;
  double train_seconds = 0;  // optimisation only: evaluation and checkpoints excluded
  double images_per_second = 0;
};

// What the recipe's distillers may inspect while they build their projectors.
DistillerContext make_distiller_context(const ModelImpl& student, const TeacherSource& teacher,
                                        const Recipe& recipe, int64_t dataset_size);

class Trainer {
 public:
  explicit Trainer(Recipe recipe);
  ~Trainer();

  // resume: continue from <run_dir>/latest.ckpt exactly as if the run had not stopped.
  // stop_after > 0: checkpoint and return after that many steps of the schedule (time-boxed
  // sessions; a later --resume finishes the run).
  TrainResult run(bool resume = false, int64_t stop_after = 0);

  const Model& student() const { return student_; }
  TeacherSource* teacher() const { return teacher_.get(); }
  const Recipe& recipe() const { return recipe_; }
  const DataSplits& data() const { return data_; }

 private:
  void save(const std::string& file, int64_t step, double best_metric);
  void log_json(const std::string& line);

  Recipe recipe_;
  DataSplits data_;
  Model student_;
  std::unique_ptr<TeacherSource> teacher_;
  DistillerSet distillers_{nullptr};
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::unique_ptr<std::ofstream> metrics_log_;
};

}  // namespace distillery
