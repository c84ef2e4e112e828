#include <fmt/format.h>

#include "commands.h"
#include <cmath>

#include "distillery/core/error.h"
#include "distillery/models/zoo.h"
#include "distillery/train/checkpoint.h"
#include "distillery/train/data_setup.h"
#include "distillery/train/evaluate.h"
#include "distillery/train/trainer.h"

namespace distillery::cli {
namespace {

struct RecipeArgs {
  std::string path;
  std::vector<std::string> overrides;
};

void add_recipe_args(CLI::App* cmd, RecipeArgs& args) {
  cmd->add_option("recipe", args.path, "recipe YAML")->required();
  cmd->add_option("--set", args.overrides, "override a recipe key: key.sub=value (repeatable)");
}

void print_per_class(const EvalResult& eval, const std::vector<std::string>& names) {
  for (size_t k = 0; k < eval.per_class_iou.size(); ++k) {
    std::string name = k < names.size() ? names[k] : std::to_string(k);
    double v = eval.per_class_iou[k];
    fmt::print("  {:<20} {}\n", name, std::isnan(v) ? std::string("  n/a") : fmt::format("{:.4f}", v));
  }
}

}  // namespace

void add_train_command(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("train", "train a model (and distil it when the recipe has a teacher)");
  auto args = std::make_shared<RecipeArgs>();
  auto resume = std::make_shared<bool>(false);
  auto stop_after = std::make_shared<int64_t>(0);
  add_recipe_args(cmd, *args);
  cmd->add_flag("--resume", *resume, "continue from <run dir>/latest.ckpt");
  cmd->add_option("--stop-after", *stop_after,
                  "checkpoint and stop after this step (finish later with --resume)")
      ->check(CLI::PositiveNumber);
  cmd->callback([&run, args, resume, stop_after] {
    run = [args, resume, stop_after] {
      Trainer trainer(Recipe::load(args->path, args->overrides));
      TrainResult r = trainer.run(*resume, *stop_after);
      fmt::print("{}: final {} {:.4f}, best {:.4f}, {:.0f} s training, {:.1f} img/s, run dir {}\n",
                 trainer.recipe().name, r.metric_name, r.final_metric, r.best_metric,
                 r.train_seconds, r.images_per_second, r.run_dir);
      return 0;
    };
  });
}

void add_eval_command(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("eval", "evaluate a checkpoint on the recipe's validation split");
  auto args = std::make_shared<RecipeArgs>();
  auto checkpoint = std::make_shared<std::string>();
  add_recipe_args(cmd, *args);
  cmd->add_option("--checkpoint", *checkpoint, "checkpoint file")->required();
  cmd->callback([&run, args, checkpoint] {
    run = [args, checkpoint] {
      Recipe recipe = Recipe::load(args->path, args->overrides);
      // Evaluation reads neither the teacher nor the distillers' keys.
      recipe.config.root().consume_subtree("teacher");
      recipe.config.root().consume_subtree("distillers");
      recipe.config.check_all_consumed();
      CheckpointMeta meta = read_checkpoint_meta(*checkpoint);
      if (meta.model_name != recipe.student.name)
        throw ConfigError(fmt::format("checkpoint '{}' holds a '{}', the recipe names '{}'",
                                      *checkpoint, meta.model_name, recipe.student.name));
      Model model = create_model(recipe.student.name, recipe.student.options);
      load_checkpoint(*checkpoint, CheckpointParts{model.get()});
      DataSplits data = load_data_splits(recipe.data);
      EvalResult eval = evaluate(*model, *data.val, recipe.train.eval_batch_size, true);
      fmt::print("{} {:.4f}  accuracy {:.4f}  (step {})\n", eval.metric_name, eval.metric,
                 eval.pixel_accuracy, meta.step);
      if (data.val->task == Task::Segmentation) print_per_class(eval, data.val->class_names);
      return 0;
    };
  });
}

}  // namespace distillery::cli
