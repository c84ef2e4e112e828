#include "distillery/train/teacher_source.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <filesystem>

#include "distillery/core/error.h"
#include "distillery/models/zoo.h"
#include "distillery/train/checkpoint.h"
#include "distillery/train/pretrained.h"
#include "distillery/train/teacher_cache.h"
#include "distillery/train/trainer.h"

namespace distillery {

OnlineTeacher::OnlineTeacher(Model model) : model_(std::move(model)) {
  model_->eval();
  for (auto& p : model_->parameters()) p.set_requires_grad(false);
}

ModelOutput OnlineTeacher::outputs(const Batch& batch) {
  torch::NoGradGuard no_grad;
  return model_->forward(batch.images);
}

std::unique_ptr<TeacherSource> make_teacher_source(const TeacherSpec& spec) {
  namespace fs = std::filesystem;
  if (spec.source == "cache") {
    auto cache = std::make_unique<CachedTeacher>(spec.cache_path);
    if (!spec.model.name.empty() && spec.model.name != cache->header().teacher_model)
      throw ConfigError(fmt::format("config key 'teacher.path': cache '{}' holds a '{}' teacher, not "
                                    "the '{}' named by teacher.model", spec.cache_path,
                                    cache->header().teacher_model, spec.model.name));
    return cache;
  }
  if (spec.checkpoint.empty()) {  // weights from elsewhere (Recipe::parse requires model.pretrained)
    Model model = create_model(spec.model.name, spec.model.options);
    fmt::print("Teacher {} from {}: {}\n", spec.model.name, spec.model.pretrained,
               load_pretrained(*model, spec.model.pretrained).summary());
    return std::make_unique<OnlineTeacher>(std::move(model));
  }
  if (!fs::exists(spec.checkpoint)) {
    std::string run_dir = fs::path(spec.checkpoint).parent_path().string();
    std::string file = fs::path(spec.checkpoint).filename().string();
    if (file != "latest.ckpt" && file != "best.ckpt")
      throw ConfigError(fmt::format(
          "config key 'teacher.checkpoint': '{}' is missing; to train it from teacher.recipe it "
          "must be named latest.ckpt or best.ckpt", spec.checkpoint));
    fmt::print("Teacher checkpoint {} not found: training the teacher from {}\n", spec.checkpoint,
               spec.recipe);
    Recipe teacher_recipe = Recipe::load(spec.recipe, {"output.dir=" + run_dir});
    if (teacher_recipe.student.name != spec.model.name)
      throw ConfigError(fmt::format("config key 'teacher.recipe': trains '{}' but teacher.model is '{}'",
                                    teacher_recipe.student.name, spec.model.name));
    Trainer(std::move(teacher_recipe)).run(/*resume=*/fs::exists(run_dir + "/latest.ckpt"));
  }
  CheckpointMeta meta = read_checkpoint_meta(spec.checkpoint);
  if (meta.model_name != spec.model.name)
    throw ConfigError(fmt::format("config key 'teacher.checkpoint': '{}' holds a '{}', not the '{}' "
                                  "named by teacher.model", spec.checkpoint, meta.model_name,
                                  spec.model.name));
  Model model = create_model(spec.model.name, spec.model.options);
  load_checkpoint(spec.checkpoint, CheckpointParts{model.get()});
  return std::make_unique<OnlineTeacher>(std::move(model));
}

}  // namespace distillery
