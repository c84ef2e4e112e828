// `distill demo`: the main job. On the embedded fashion-seg benchmark it gets a teacher (trains
// it unless a finished checkpoint is cached in the output directory), trains the student alone
// and with pixel KD, CWD and HeteroAKD on a heterogeneous pair, then prints a comparison table
// and writes prediction overlays and training curves.
#include <fmt/format.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "distillery/core/error.h"
#include "distillery/data/loader.h"
#include "distillery/data/plot.h"
#include "distillery/data/render.h"
#include "distillery/core/png.h"
#include "distillery/models/zoo.h"
#include "distillery/train/checkpoint.h"
#include "distillery/train/task_loss.h"
#include "distillery/train/trainer.h"

namespace distillery::cli {
namespace fs = std::filesystem;
namespace {

struct DemoRun {
  std::string name;   // recipe file stem and run directory
  std::string label;  // row label in the table
};
const std::vector<DemoRun> kDemoRuns = {
    {"student", "student alone"}, {"kd", "pixel KD"}, {"cwd", "CWD"}, {"heteroakd", "HeteroAKD"}};

struct RunSummary {
  double metric = 0;
  double train_seconds = 0;
  bool cached = false;
};

// The last summary record a finished run wrote to its metrics log.
std::optional<RunSummary> read_summary(const std::string& run_dir) {
  std::ifstream log(run_dir + "/metrics.jsonl");
  std::optional<RunSummary> summary;
  for (std::string line; std::getline(log, line);) {
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("summary")) {
      RunSummary s;
      s.metric = j["summary"].value("final_mIoU", 0.0);
      s.train_seconds = j["summary"].value("train_seconds", 0.0);
      summary = s;
    }
  }
  return summary;
}

bool run_finished(const std::string& run_dir, int64_t steps) {
  std::string latest = run_dir + "/latest.ckpt";
  if (!fs::exists(latest)) return false;
  try {
    return read_checkpoint_meta(latest).step >= steps && read_summary(run_dir).has_value();
  } catch (const Error&) {
    return false;  // a corrupt checkpoint is retrained, not trusted
  }
}

Recipe load_demo_recipe(const std::string& path, const std::string& out_dir, const std::string& name,
                        const std::vector<std::string>& extra) {
  Config config = Config::load_file(path);
  config.apply_override("output.dir=" + out_dir + "/" + name);
  if (config.node()["teacher"]) config.apply_override("teacher.checkpoint=" + out_dir + "/teacher/latest.ckpt");
  for (const auto& o : extra) config.apply_override(o);
  return Recipe::parse(std::move(config));
}

RunSummary train_or_reuse(Recipe recipe, bool fresh) {
  std::string run_dir = recipe.run_dir;
  int64_t steps = recipe.train.steps;
  if (!fresh && run_finished(run_dir, steps)) {
    RunSummary s = *read_summary(run_dir);
    s.cached = true;
    return s;
  }
  bool resume = !fresh && fs::exists(run_dir + "/latest.ckpt");
  if (resume) {
    try {
      read_checkpoint_meta(run_dir + "/latest.ckpt");
    } catch (const Error&) {
      resume = false;
    }
  }
  Trainer trainer(std::move(recipe));
  TrainResult r = trainer.run(resume);
  return {r.final_metric, r.train_seconds, false};
}

Model load_model(const Recipe& recipe, const std::string& checkpoint) {
  Model model = create_model(recipe.student.name, recipe.student.options);
  load_checkpoint(checkpoint, CheckpointParts{model.get()});
  model->eval();
  return model;
}

// Rows of [image | truth | teacher | student | HeteroAKD student] for the first scenes.
void write_prediction_grid(const std::string& path, const TensorDataset& val,
                           const std::vector<std::pair<std::string, Model>>& models, int64_t scenes) {
  torch::NoGradGuard no_grad;
  Batch batch = make_eval_batch(val, 0, scenes);
  std::vector<torch::Tensor> predictions;
  for (const auto& [name, model] : models)
    predictions.push_back(predict_classes(model->forward(batch.images).logits, batch.targets.sizes(),
                                          Task::Segmentation));
  std::vector<std::string> headers = {"image", "truth"};
  for (const auto& [name, model] : models) headers.push_back(name);
  std::vector<torch::Tensor> tiles;
  for (int64_t i = 0; i < scenes; ++i) {
    torch::Tensor image = val.images[i][0];
    tiles.push_back(image);
    tiles.push_back(overlay(image, batch.targets[i]));
    for (const auto& p : predictions) tiles.push_back(overlay(image, p[i]));
  }
  const int64_t cols = static_cast<int64_t>(headers.size()), scale = 3, pad = 4;
  torch::Tensor grid = tile_grid(tiles, cols, pad, scale);
  const int64_t tile = val.images.size(2) * scale, header = 16;
  torch::Tensor key = legend(val.class_names);
  int64_t width = std::max(grid.size(1), key.size(1));
  torch::Tensor canvas = make_canvas(header + grid.size(0) + key.size(0) + 8, width, {40, 40, 44});
  for (int64_t c = 0; c < cols; ++c)
    draw_text(canvas, pad + c * (tile + pad), 4, headers[c], {230, 230, 230});
  paste(canvas, grid, 0, header);
  paste(canvas, key, pad, header + grid.size(0) + 4);
  write_png(path, canvas);
}

std::vector<Series> read_curves(const std::string& out_dir, const std::string& what) {
  std::vector<Series> series;
  std::vector<std::string> names = {"teacher"};
  for (const auto& r : kDemoRuns) names.push_back(r.name);
  for (const auto& name : names) {
    Series s;
    s.name = name;
    std::ifstream log(out_dir + "/" + name + "/metrics.jsonl");
    double smoothed = std::nan("");
    for (std::string line; std::getline(log, line);) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_object()) continue;
      if (what == "mIoU" && j.contains("eval")) {
        s.x.push_back(j["step"].get<double>());
        s.y.push_back(j["eval"].value("mIoU", 0.0));
      } else if (what == "ce" && j.contains("terms") && j["terms"].contains("ce")) {
        double v = j["terms"]["ce"].get<double>();
        smoothed = std::isnan(smoothed) ? v : 0.9 * smoothed + 0.1 * v;
        s.x.push_back(j["step"].get<double>());
        s.y.push_back(smoothed);
      }
    }
    if (!s.x.empty()) series.push_back(std::move(s));
  }
  return series;
}

std::string find_configs(const std::string& requested) {
  if (fs::exists(requested + "/teacher.yaml")) return requested;
  std::string installed = std::string(DISTILLERY_SOURCE_DIR) + "/configs/demo";
  if (requested == "configs/demo" && fs::exists(installed + "/teacher.yaml")) return installed;
  throw ConfigError(fmt::format("demo recipes not found in '{}' (expected teacher.yaml there)", requested));
}

int run_demo(const std::string& configs_arg, const std::string& out_dir, bool fresh,
             const std::vector<std::string>& overrides) {
  std::string configs = find_configs(configs_arg);
  fs::create_directories(out_dir);
  auto demo_begin = std::chrono::steady_clock::now();

  Recipe teacher_recipe = load_demo_recipe(configs + "/teacher.yaml", out_dir, "teacher", overrides);
  fmt::print("== teacher: {} ==\n", teacher_recipe.student.name);
  RunSummary teacher = train_or_reuse(teacher_recipe, /*fresh=*/false);
  if (teacher.cached) fmt::print("using the cached teacher in {}/teacher\n", out_dir);

  std::vector<RunSummary> results;
  std::vector<Recipe> recipes;
  for (const auto& run : kDemoRuns) {
    Recipe recipe = load_demo_recipe(configs + "/" + run.name + ".yaml", out_dir, run.name, overrides);
    fmt::print("== {}: {} ==\n", run.label, recipe.student.name);
    recipes.push_back(recipe);
    results.push_back(train_or_reuse(std::move(recipe), fresh));
  }

  const double base = results.front().metric;
  std::string table = fmt::format("| {:<16} | {:<22} | {:>6} | {:>7} | {:>10} |\n", "method", "model",
                                  "mIoU", "delta", "train time");
  table += fmt::format("|{:-<18}|{:-<24}|{:->8}|{:->9}|{:->12}|\n", "", "", "", "", "");
  table += fmt::format("| {:<16} | {:<22} | {:>6.2f} | {:>7} | {:>9.0f}s |\n", "teacher",
                       teacher_recipe.student.name, 100 * teacher.metric, "", teacher.train_seconds);
  for (size_t i = 0; i < kDemoRuns.size(); ++i) {
    std::string delta = i == 0 ? "" : fmt::format("{:+.2f}", 100 * (results[i].metric - base));
    table += fmt::format("| {:<16} | {:<22} | {:>6.2f} | {:>7} | {:>9.0f}s |\n", kDemoRuns[i].label,
                         recipes[i].student.name, 100 * results[i].metric, delta,
                         results[i].train_seconds);
  }
  DataSplits data = load_data_splits(recipes.front().data);
  fmt::print("\nfashion-seg validation ({} scenes), mIoU in %:\n{}", data.val->size(), table);
  std::ofstream(out_dir + "/results.md") << table;

  std::vector<std::pair<std::string, Model>> models = {
      {"teacher", load_model(teacher_recipe, out_dir + "/teacher/latest.ckpt")},
      {"student", load_model(recipes.front(), out_dir + "/student/latest.ckpt")},
      {"HeteroAKD", load_model(recipes.back(), out_dir + "/heteroakd/latest.ckpt")}};
  write_prediction_grid(out_dir + "/predictions.png", *data.val, models, 6);
  write_line_plot(out_dir + "/curves_miou.png", "validation mIoU", "step", "mIoU",
                  read_curves(out_dir, "mIoU"));
  write_line_plot(out_dir + "/curves_loss.png", "training cross-entropy (smoothed)", "step", "CE",
                  read_curves(out_dir, "ce"));
  double minutes = std::chrono::duration<double>(std::chrono::steady_clock::now() - demo_begin).count() / 60;
  fmt::print("\nwrote {0}/results.md, {0}/predictions.png, {0}/curves_miou.png, {0}/curves_loss.png "
             "({1:.1f} min)\n", out_dir, minutes);
  return 0;
}

}  // namespace

void add_demo_command(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("demo", "teacher, student alone, pixel KD, CWD and HeteroAKD on fashion-seg");
  struct Args {
    std::string configs = "configs/demo", out = "runs/demo";
    bool fresh = false;
    std::vector<std::string> overrides;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--configs", args->configs, "directory of the demo recipes");
  cmd->add_option("--out", args->out, "output directory (the teacher is cached there)");
  cmd->add_flag("--fresh", args->fresh, "retrain the students even when finished runs are cached");
  cmd->add_option("--set", args->overrides, "override a key in every demo recipe: key.sub=value");
  cmd->callback([&run, args] {
    run = [args] { return run_demo(args->configs, args->out, args->fresh, args->overrides); };
  });
}

}  // namespace distillery::cli
