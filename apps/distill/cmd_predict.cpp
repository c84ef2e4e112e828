// `distill predict`: label maps and colour overlays for photographs; `distill export`: a trained
// model as safetensors with names a PyTorch user can load (docs/interop.md).
#include <fmt/format.h>
#include <torch/torch.h>

#include <filesystem>

#include "commands.h"
#include "distillery/core/error.h"
#include "distillery/core/image_io.h"
#include "distillery/core/png.h"
#include "distillery/core/safetensors.h"
#include "distillery/models/zoo.h"
#include "distillery/train/checkpoint.h"
#include "distillery/train/data_setup.h"
#include "distillery/train/inference.h"
#include "distillery/train/pretrained.h"
#include "distillery/train/recipe.h"

namespace distillery::cli {
namespace {

struct ModelArgs {
  std::string recipe;
  std::vector<std::string> overrides;
  std::string checkpoint;
};

void add_model_args(CLI::App* cmd, ModelArgs& args) {
  cmd->add_option("recipe", args.recipe, "recipe YAML (model and data blocks)")->required();
  cmd->add_option("--set", args.overrides, "override a recipe key: key.sub=value (repeatable)");
  cmd->add_option("--checkpoint", args.checkpoint, "checkpoint file")->required();
}

// The recipe's student with the checkpoint's weights, in eval mode.
std::pair<Recipe, Model> load_model(const ModelArgs& args) {
  Recipe recipe = Recipe::load(args.recipe, args.overrides);
  recipe.config.root().consume_subtree("teacher");
  recipe.config.root().consume_subtree("distillers");
  recipe.config.check_all_consumed();
  CheckpointMeta meta = read_checkpoint_meta(args.checkpoint);
  if (meta.model_name != recipe.student.name)
    throw ConfigError(fmt::format("checkpoint '{}' holds a '{}', the recipe names '{}'", args.checkpoint,
                                  meta.model_name, recipe.student.name));
  Model model = create_model(recipe.student.name, recipe.student.options);
  load_checkpoint(args.checkpoint, CheckpointParts{model.get()});
  model->eval();
  return {std::move(recipe), std::move(model)};
}

}  // namespace

void add_predict_command(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("predict", "segment images: <stem>_labels.png (class ids, palette PNG) "
                                            "and <stem>_overlay.png");
  auto args = std::make_shared<ModelArgs>();
  auto images = std::make_shared<std::vector<std::string>>();
  auto out_dir = std::make_shared<std::string>("predictions");
  add_model_args(cmd, *args);
  cmd->add_option("images", *images, "PNG or JPEG files")->required();
  cmd->add_option("--out", *out_dir, "output directory (default: predictions)");
  cmd->callback([&run, args, images, out_dir] {
    run = [args, images, out_dir] {
      auto [recipe, model] = load_model(*args);
      if (recipe.data.task() != Task::Segmentation)
        throw ConfigError(fmt::format("predict: recipe '{}' is a classification recipe", args->recipe));
      const DataSpec& data = recipe.data;
      InferenceOptions inference = data.on_disk() ? data.inference : InferenceOptions{};
      const double resize = data.on_disk() ? data.resize : 1.0;
      const std::vector<Rgb> palette = palette_for(data);
      const std::vector<std::string> names = class_names_for(data);
      std::filesystem::create_directories(*out_dir);
      torch::Tensor table = torch::empty({256, 3}, torch::kUInt8);
      for (int i = 0; i < 256; ++i)
        for (int c = 0; c < 3; ++c) table[i][c] = palette[i][c];
      for (const std::string& path : *images) {
        torch::Tensor photo = read_rgb_image(path);  // [H, W, 3]
        torch::Tensor input = photo.permute({2, 0, 1}).contiguous();
        // Single-channel models (the embedded benchmarks) see the grey level.
        if (recipe.student.options.in_channels == 1)
          input = input.to(torch::kFloat).mean(0, true).round().to(torch::kUInt8);
        torch::Tensor labels = predict_label_map(*model, input, resize, inference, photo.size(0), photo.size(1))
                                   .to(torch::kUInt8);
        const std::string stem = (std::filesystem::path(*out_dir) / std::filesystem::path(path).stem()).string();
        write_png_palette(stem + "_labels.png", labels, palette);
        torch::Tensor colours = table.index_select(0, labels.flatten().to(torch::kLong)).view(photo.sizes());
        torch::Tensor overlay = (photo.to(torch::kFloat) * 0.5 + colours.to(torch::kFloat) * 0.5).round().to(torch::kUInt8);
        write_png(stem + "_overlay.png", overlay);
        // The classes present, largest first.
        torch::Tensor counts = torch::bincount(labels.flatten().to(torch::kLong), {}, 256);
        auto order = counts.argsort(0, /*descending=*/true);
        std::string summary;
        for (int64_t k = 0; k < 3; ++k) {
          int64_t id = order[k].item<int64_t>();
          if (counts[id].item<int64_t>() == 0) break;
          summary += fmt::format("{}{} {:.0f}%", k ? ", " : "",
                                 id < static_cast<int64_t>(names.size()) ? names[id] : std::to_string(id),
                                 100.0 * counts[id].item<double>() / labels.numel());
        }
        fmt::print("{} -> {}_labels.png, {}_overlay.png ({})\n", path, stem, stem, summary);
      }
      return 0;
    };
  });
}

void add_export_command(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("export", "write a checkpoint's model as safetensors for PyTorch users");
  auto args = std::make_shared<ModelArgs>();
  auto out = std::make_shared<std::string>();
  auto names = std::make_shared<std::string>("distillery");
  add_model_args(cmd, *args);
  cmd->add_option("--out", *out, "output .safetensors file")->required();
  cmd->add_option("--names", *names, "tensor names: distillery (module paths), torchvision (ResNet/"
                                     "MobileNetV2 backbones), mit (SegFormer reference), hf (transformers)")
      ->check(CLI::IsMember({"distillery", "torchvision", "mit", "hf"}));
  cmd->callback([&run, args, out, names] {
    run = [args, out, names] {
      auto [recipe, model] = load_model(*args);
      WeightNaming naming = *parse_naming(*names);
      std::map<std::string, torch::Tensor> tensors = export_state_dict(*model, naming);
      const ModelOptions& o = recipe.student.options;
      write_safetensors(*out, tensors,
                        {{"format", "pt"},
                         {"distillery_model", recipe.student.name},
                         {"num_classes", std::to_string(o.num_classes)},
                         {"in_channels", std::to_string(o.in_channels)},
                         {"input_size", std::to_string(o.input_size)},
                         {"names", naming_name(naming)}});
      fmt::print("{}: {} tensors ({} names) -> {}\n", recipe.student.name, tensors.size(), naming_name(naming), *out);
      return 0;
    };
  });
}

}  // namespace distillery::cli
