#include <fmt/format.h>

#include "commands.h"
#include "distillery/models/flops.h"
#include "distillery/models/zoo.h"

namespace distillery::cli {

void add_models_command(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("models", "list the model zoo with parameters and forward FLOPs");
  auto size = std::make_shared<int64_t>(0);
  cmd->add_option("--size", *size, "input size (default: 64 for segmentation, 28 for classification)")
      ->check(CLI::PositiveNumber);
  cmd->callback([&run, size] {
    run = [size] {
      fmt::print("{:<26} {:<6} {:>10} {:>12} {:>6}  {}\n", "name", "task", "params", "GFLOPs", "input",
                 "description");
      for (const ZooEntry& entry : model_zoo()) {
        bool classification = entry.task == Task::Classification;
        ModelOptions options;
        options.num_classes = classification ? 10 : 11;
        options.input_size = *size > 0 ? *size : (classification ? 28 : 64);
        Model model = entry.build(options);
        int64_t flops = count_forward_flops(*model, {1, options.in_channels, options.input_size,
                                                     options.input_size});
        fmt::print("{:<26} {:<6} {:>9.2f}M {:>12.3f} {:>6}  {}\n", entry.name,
                   classification ? "cls" : "seg", count_parameters(*model) / 1e6, flops / 1e9,
                   fmt::format("{}x{}", options.input_size, options.input_size), entry.description);
      }
      return 0;
    };
  });
}

}  // namespace distillery::cli
