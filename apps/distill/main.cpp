// distill: the command line over the Distillery library.
#include <fmt/format.h>

#include <cstdio>

#include "commands.h"
#include "distillery/core/error.h"
#include "distillery/core/runtime.h"

int main(int argc, char** argv) {
  CLI::App app{"Distillery: knowledge distillation for segmentation and classification"};
  app.require_subcommand(1);
  app.fallthrough();
  int threads = 0;
  app.add_option("--threads", threads, "intra-op threads (default: all available cores)")
      ->check(CLI::NonNegativeNumber);

  distillery::cli::Runner run;
  distillery::cli::add_train_command(app, run);
  distillery::cli::add_eval_command(app, run);
  distillery::cli::add_models_command(app, run);
  distillery::cli::add_show_data_command(app, run);
  distillery::cli::add_demo_command(app, run);
  distillery::cli::add_predict_command(app, run);
  distillery::cli::add_export_command(app, run);
  distillery::cli::add_cache_teacher_command(app, run);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "distill: %s\n", e.what());
    return 2;
  }
  try {
    distillery::set_thread_count(threads);
    return run ? run() : 2;
  } catch (const distillery::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "\ndistill: error: %s\n", e.what());
    return e.exit_code();
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    std::fprintf(stderr, "\ndistill: torch error: %s\n", what.substr(0, what.find('\n')).c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\ndistill: error: %s\n", e.what());
    return 1;
  }
}
