// Subcommands of the `distill` command line. Each registers itself on the CLI11 app and sets
// `run` to the function that executes it after parsing.
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace distillery::cli {

using Runner = std::function<int()>;

void add_train_command(CLI::App& app, Runner& run);
void add_eval_command(CLI::App& app, Runner& run);
void add_models_command(CLI::App& app, Runner& run);
void add_show_data_command(CLI::App& app, Runner& run);
void add_demo_command(CLI::App& app, Runner& run);
void add_predict_command(CLI::App& app, Runner& run);
void add_export_command(CLI::App& app, Runner& run);
void add_cache_teacher_command(CLI::App& app, Runner& run);

}  // namespace distillery::cli
