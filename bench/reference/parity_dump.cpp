// Dumps what parity_check.py compares the Python ports with: every preset's named parameters
// and buffers, a fixed batch, the eval-mode logits and stage features, and the task loss and
// distillation loss terms of the demo distillers on those outputs. Not part of the CMake build
// (bench/*.cpp is globbed non-recursively); compile it by hand against a built libdistillery,
// see docs/performance-reference.md.
//
//   parity_dump OUT_DIR
//
// Files: OUT_DIR/<name>.txt (one line per tensor: name, dtype, shape) + OUT_DIR/<name>.bin
// (the raw tensors in that order, native byte order), for the tensor groups listed in
// OUT_DIR/index.txt; OUT_DIR/losses.txt holds "distiller term value" lines.
#include <torch/torch.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "distillery/core/config.h"
#include "distillery/data/batch.h"
#include "distillery/distill/registry.h"
#include "distillery/models/zoo.h"
#include "distillery/train/task_loss.h"

using namespace distillery;

namespace {

using Named = std::vector<std::pair<std::string, torch::Tensor>>;

void write_group(const std::string& dir, const std::string& group, const Named& tensors,
                 std::ofstream& index) {
  std::ofstream text(dir + "/" + group + ".txt");
  std::ofstream bin(dir + "/" + group + ".bin", std::ios::binary);
  for (const auto& [name, tensor] : tensors) {
    auto t = tensor.detach().contiguous();
    text << name << ' ' << (t.scalar_type() == torch::kLong ? "int64" : "float32");
    for (auto d : t.sizes()) text << ' ' << d;
    text << '\n';
    bin.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  }
  index << group << '\n';
}

Named state_of(torch::nn::Module& module) {
  Named out;
  for (const auto& p : module.named_parameters()) out.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers()) out.emplace_back(b.key(), b.value());
  return out;
}

Named outputs_of(const ModelOutput& out) {
  Named named{{"logits", out.logits}};
  for (size_t i = 0; i < out.features.size(); ++i)
    named.emplace_back("features." + std::to_string(i), out.features[i]);
  return named;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: parity_dump OUT_DIR\n");
    return 1;
  }
  const std::string dir = argv[1];
  std::ofstream index(dir + "/index.txt");
  if (!index) {
    std::fprintf(stderr, "parity_dump: cannot write to %s\n", dir.c_str());
    return 1;
  }
  torch::manual_seed(0);
  auto images = torch::randn({4, 1, 64, 64});
  auto labels = torch::randint(0, 11, {4, 64, 64}, torch::kInt64);
  labels.masked_fill_(torch::rand({4, 64, 64}) < 0.05, 255);
  write_group(dir, "batch", {{"images", images}, {"labels", labels}}, index);

  torch::NoGradGuard no_grad;
  ModelOptions options;
  std::map<std::string, ModelOutput> outputs;
  std::map<std::string, std::vector<StageSpec>> stages;
  for (const std::string name : {"deeplabv3_resnet18", "deeplabv3_resnet18_slim", "segformer_b0",
                                 "segformer_b2"}) {
    Model model = create_model(name, options);
    model->eval();
    write_group(dir, name, state_of(*model), index);
    outputs[name] = model->forward(images);
    stages[name] = model->stages();
    write_group(dir, name + ".out", outputs_of(outputs[name]), index);
  }

  std::ofstream losses(dir + "/losses.txt");
  Batch batch;
  batch.images = images;
  batch.targets = labels;
  const auto& teacher = outputs["deeplabv3_resnet18"];
  for (const std::string student : {"segformer_b0", "deeplabv3_resnet18_slim"}) {
    const auto& out = outputs[student];
    char line[256];
    std::snprintf(line, sizeof line, "%s task ce %.9g\n", student.c_str(),
                  task_loss(out.logits, labels, Task::Segmentation).item<double>());
    losses << line;
    DistillerContext context;
    context.student_stages = stages[student];
    context.teacher_stages = stages["deeplabv3_resnet18"];
    context.num_classes = 11;
    for (const std::string yaml : {"{name: kd, temperature: 1.0}",
                                   "{name: cwd, on: logits, temperature: 4.0}",
                                   "{name: heteroakd, student_stages: [1, 2], teacher_stages: [-2, -1]}"}) {
      auto config = Config::from_string(yaml);
      auto root = config.root();
      const auto method = root.get<std::string>("name", "");
      auto distiller = create_distiller(method, context, root);
      if (!distiller->parameters().empty())
        write_group(dir, student + "." + method, state_of(*distiller), index);
      for (const auto& [term, value] : distiller->forward(out, teacher, batch, StepInfo{}).terms) {
        std::snprintf(line, sizeof line, "%s %s %s %.9g\n", student.c_str(), method.c_str(),
                      term.c_str(), value.item<double>());
        losses << line;
      }
    }
  }
  std::printf("parity_dump: wrote %s\n", dir.c_str());
  return 0;
}
