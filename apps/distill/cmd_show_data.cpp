#include <fmt/format.h>
#include <torch/torch.h>

#include "commands.h"
#include "distillery/data/render.h"
#include "distillery/data/scale_crop.h"
#include "distillery/train/data_setup.h"

namespace distillery::cli {

void add_show_data_command(CLI::App& app, Runner& run) {
  auto* cmd = app.add_subcommand("show-data", "write a PNG grid of scenes with label overlays");
  struct Args {
    std::string recipe, out = "scenes.png", split = "train";
    int64_t count = 12, cols = 4;
    std::vector<std::string> overrides;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("recipe", args->recipe, "recipe YAML (its data: block is used)")->required();
  cmd->add_option("--out", args->out, "output PNG");
  cmd->add_option("--split", args->split, "train or val")->check(CLI::IsMember({"train", "val"}));
  cmd->add_option("--count", args->count, "number of scenes")->check(CLI::PositiveNumber);
  cmd->add_option("--cols", args->cols, "scenes per row")->check(CLI::PositiveNumber);
  cmd->add_option("--set", args->overrides, "override a recipe key: key.sub=value");
  cmd->callback([&run, args] {
    run = [args] {
      Config config = Config::load_file(args->recipe);
      for (const auto& o : args->overrides) config.apply_override(o);
      Recipe recipe = Recipe::parse(std::move(config));
      DataSplits data = load_data_splits(recipe.data);
      TensorDataset split = args->split == "train" ? *data.train : *data.val;
      if (split.files) {
        // On-disk datasets: the first samples' centre crops, as the model sees them.
        std::vector<torch::Tensor> images, labels;
        AugmentOptions none;
        none.enabled = false;
        for (int64_t i = 0; i < std::min(args->count, split.size()); ++i) {
          auto [image, label] = split.files->load(i);
          Rng rng(0);
          auto crop = random_scale_crop(image, label, split.files->resize, split.files->crop_size, none, rng);
          images.push_back(crop.first);
          labels.push_back(crop.second);
        }
        split.images = torch::stack(images);
        split.targets = torch::stack(labels);
        split.files = nullptr;
      }
      write_scene_grid(args->out, split, std::min(args->count, split.size()), args->cols);
      fmt::print("wrote {} scenes of the {} split to {}\n", std::min(args->count, split.size()),
                 args->split, args->out);
      return 0;
    };
  });
}

}  // namespace distillery::cli
