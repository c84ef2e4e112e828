// distill inspect: what a checkpoint holds, after its integrity checks. With --tensors, one
// line per stored tensor or value with a CRC-32 of its bytes, so that two checkpoints can be
// compared for bit-exact equality (scripts/crash_resume.py does).
#include <fmt/format.h>

#include "commands.h"
#include "distillery/train/checkpoint.h"

namespace distillery::cli {

void add_inspect_command(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("inspect", "check a checkpoint and show what it holds");
  auto path = std::make_shared<std::string>();
  auto tensors = std::make_shared<bool>(false);
  auto recipe = std::make_shared<bool>(false);
  cmd->add_option("checkpoint", *path, "checkpoint file")->required();
  cmd->add_flag("--tensors", *tensors, "list every stored tensor and value with a CRC-32 of its bytes");
  cmd->add_flag("--recipe", *recipe, "print the recipe the checkpoint was trained with");
  cmd->callback([&run, path, tensors, recipe] {
    run = [path, tensors, recipe] {
      CheckpointMeta meta = read_checkpoint_meta(*path);
      std::vector<CheckpointEntry> entries = checkpoint_contents(*path);
      fmt::print("{}: step {}, model {} ({} classes), best metric {}, {} stored values\n", *path,
                 meta.step, meta.model_name, meta.num_classes, meta.best_metric, entries.size());
      if (*tensors)
        for (const auto& entry : entries) fmt::print("{} {}\n", entry.name, entry.summary);
      if (*recipe) fmt::print("{}", meta.config_yaml);
      return 0;
    };
  });
}

}  // namespace distillery::cli
