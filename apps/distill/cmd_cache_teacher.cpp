#include <fmt/format.h>

#include <filesystem>

#include "commands.h"
#include "distillery/train/teacher_cache.h"

namespace distillery::cli {

void add_cache_teacher_command(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand(
      "cache-teacher", "precompute the teacher's outputs for a recipe's training schedule");
  struct Args {
    std::string recipe, out;
    std::vector<std::string> overrides;
    int64_t steps = 0;
    bool everything = false;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("recipe", args->recipe, "a distillation recipe (its teacher, data, seed, batch size)")
      ->required();
  cmd->add_option("--set", args->overrides, "override a recipe key: key.sub=value (repeatable)");
  cmd->add_option("--out", args->out, "cache file (default: <run dir>/teacher.cache)");
  cmd->add_option("--steps", args->steps, "steps to cache (default: the recipe's train.steps)")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--all", args->everything,
                "cache every teacher output, not only what the recipe's distillers read");
  cmd->callback([&run, args] {
    run = [args] {
      Recipe recipe = Recipe::load(args->recipe, args->overrides);
      std::string out = args->out.empty() ? recipe.run_dir + "/teacher.cache" : args->out;
      auto parent = std::filesystem::path(out).parent_path();
      if (!parent.empty()) std::filesystem::create_directories(parent);
      int64_t steps = args->steps > 0 ? args->steps : recipe.train.steps;
      build_teacher_cache(recipe, out, steps, args->everything);
      fmt::print("teacher cache: {} ({:.1f} MiB, {} steps of {}); train with --set teacher.source=cache "
                 "--set teacher.path={}\n",
                 out, std::filesystem::file_size(out) / 1048576.0, steps, recipe.train.batch_size, out);
      return 0;
    };
  });
}

}  // namespace distillery::cli
