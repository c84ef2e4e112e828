// Training-step cost of distillation: the student alone, with an online teacher and each of the
// demo's distillers, with a cached teacher, and the teacher trained alone; plus the machine's
// matrix-multiply peak and the data loader's cost per batch. One configuration per process, so
// that the peak resident memory is that configuration's own. bench/reference/train_step.py is
// the PyTorch-Python twin with the same options and output; bench/compare.py runs both.
//
//   ./build/bench_distill --config heteroakd [--batch 16] [--threads 2] [--warmup 3] [--steps 20]
//                         [--student segformer_b0] [--teacher deeplabv3_resnet18] [--json out.json]
//   --config: student | kd | cwd | heteroakd | heteroakd_cached | teacher | peak | loader
#include <sys/resource.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "distillery/core/config.h"
#include "distillery/core/runtime.h"
#include "distillery/data/fashion_seg.h"
#include "distillery/data/loader.h"
#include "distillery/distill/distiller_set.h"
#include "distillery/models/flops.h"
#include "distillery/models/zoo.h"
#include "distillery/train/optimizer.h"
#include "distillery/train/task_loss.h"
#include "distillery/train/teacher_cache.h"

using namespace distillery;
using Clock = std::chrono::steady_clock;

namespace {

struct Settings {
  std::string config = "student", student = "segformer_b0", teacher = "deeplabv3_resnet18", json;
  int64_t batch = 16, warmup = 3, steps = 20;
  int threads = 0;
};

// The demo's distiller blocks (configs/demo/*.yaml).
const std::map<std::string, std::string> kDistillers = {
    {"kd", "{name: kd, temperature: 1.0}"},
    {"cwd", "{name: cwd, on: logits, temperature: 4.0}"},
    {"heteroakd", "{name: heteroakd, student_stages: [1, 2], teacher_stages: [-2, -1]}"},
    {"heteroakd_cached", "{name: heteroakd, student_stages: [1, 2], teacher_stages: [-2, -1]}"},
};

bool is_transformer(const std::string& model) { return model.rfind("segformer", 0) == 0 || model.rfind("vit", 0) == 0; }

// The demo recipes' optimizers: AdamW for Transformers, SGD with momentum for CNNs.
OptimizerOptions optimizer_for(const std::string& model) {
  OptimizerOptions o;
  if (is_transformer(model)) {
    o.type = "adamw";
    o.lr = 1e-3;
    o.weight_decay = 0.01;
  } else {
    o.type = "sgd";
    o.lr = 0.02;
    o.momentum = 0.9;
    o.weight_decay = 1e-4;
  }
  return o;
}

double seconds_since(Clock::time_point begin) {
  return std::chrono::duration<double>(Clock::now() - begin).count();
}

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;
}

nlohmann::json summarise(std::vector<double> times, int64_t batch) {
  std::sort(times.begin(), times.end());
  double median = times[times.size() / 2];
  return {{"step_seconds", times}, {"median", median}, {"min", times.front()}, {"max", times.back()},
          {"images_per_second", batch / median}};
}

// The machine's reachable fp32 peak with the current thread count, as the best of two kernels
// LibTorch dispatches to: a 1024^2 matrix product (BLAS: OpenBLAS in Debian's build) and a
// 3x3 convolution shaped like the models' deepest stage (oneDNN). On AVX-512 machines oneDNN's
// convolution is several times faster than OpenBLAS's sgemm, so a matmul-only "peak" would put
// conv-heavy training steps above 100%.
struct PeakGflops {
  double matmul = 0;
  double conv = 0;
};

template <typename Kernel>
double best_gflops(double flops, Kernel&& kernel) {
  double best = 0;
  for (int rep = 0; rep < 8; ++rep) {
    auto begin = Clock::now();
    kernel();
    best = std::max(best, flops / seconds_since(begin) / 1e9);
  }
  return best;
}

PeakGflops measure_peak_gflops() {
  torch::NoGradGuard no_grad;
  PeakGflops peak;
  const int64_t n = 1024;
  auto a = torch::randn({n, n}), b = torch::randn({n, n}), c = torch::empty({n, n});
  peak.matmul = best_gflops(2.0 * n * n * n, [&] { torch::mm_out(c, a, b); });
  const int64_t batch = 16, channels = 256, size = 16;
  auto x = torch::randn({batch, channels, size, size});
  auto w = torch::randn({channels, channels, 3, 3});
  const double conv_flops = 2.0 * batch * channels * channels * 9 * size * size;
  peak.conv = best_gflops(conv_flops, [&] { torch::conv2d(x, w, {}, 1, 1); });
  return peak;
}

// Time to build one augmented fashion-seg batch on one thread (what the prefetch thread does).
nlohmann::json bench_loader(const Settings& s) {
  FashionSegOptions options;
  options.train_scenes = 2000;
  auto data = std::make_shared<const TensorDataset>(make_fashion_seg(options, /*train=*/true));
  LoaderOptions loader;
  loader.batch_size = s.batch;
  std::vector<double> times;
  for (int64_t i = 0; i < s.warmup + s.steps; ++i) {
    auto begin = Clock::now();
    Batch batch = make_train_batch(*data, loader, i);
    if (i >= s.warmup) times.push_back(seconds_since(begin));
  }
  auto out = summarise(times, s.batch);
  out["config"] = "loader";
  return out;
}

nlohmann::json bench_training(const Settings& s) {
  const bool teacher_only = s.config == "teacher";
  const std::string student_name = teacher_only ? s.teacher : s.student;
  torch::manual_seed(0);
  ModelOptions model_options;  // 11 classes, 1 channel, 64x64
  Model student = create_model(student_name, model_options);
  student->train();
  Model teacher;
  if (!teacher_only && s.config != "student") {
    teacher = create_model(s.teacher, model_options);
    teacher->eval();
    for (auto& p : teacher->parameters()) p.set_requires_grad(false);
  }

  // A fixed batch: random images, random labels with ~5% ignore pixels.
  Batch batch;
  batch.images = torch::randn({s.batch, 1, 64, 64});
  batch.targets = torch::randint(0, 11, {s.batch, 64, 64}, torch::kInt64);
  batch.targets.masked_fill_(torch::rand({s.batch, 64, 64}) < 0.05, kIgnoreLabel);
  batch.index = torch::arange(s.batch, torch::kInt64);

  DistillerSet distillers{nullptr};
  std::vector<torch::Tensor> params = student->parameters();
  std::unique_ptr<TeacherSource> cache;
  std::string cache_path;
  if (teacher) {
    DistillerContext context;
    context.student_stages = student->stages();
    context.teacher_stages = teacher->stages();
    context.num_classes = student->num_classes();
    Config config = Config::from_string("distillers: [" + kDistillers.at(s.config) + "]", "bench");
    distillers = DistillerSet(config.root().section_list("distillers"), context);
    for (auto& p : distillers->parameters()) params.push_back(p);
    if (s.config == "heteroakd_cached") {
      // Precompute the teacher's outputs for every step (all the same batch here) into a real
      // cache file, then train from its memory map, as `teacher: {source: cache}` does.
      cache_path = (std::filesystem::temp_directory_path() /
                    ("bench_distill_" + std::to_string(::getpid()) + ".cache")).string();
      TeacherCacheHeader header;
      header.teacher_model = s.teacher;
      header.num_classes = teacher->num_classes();
      header.stages = teacher->stages();
      header.batch_size = s.batch;
      header.steps = s.warmup + s.steps;
      header.train_size = s.batch;
      TeacherCacheWriter writer(cache_path, header, distillers->teacher_reads());
      for (int64_t i = 0; i < header.steps; ++i) {
        torch::NoGradGuard no_grad;
        batch.step = i;
        writer.append(batch, teacher->forward(batch.images));
      }
      writer.commit();
      cache = std::make_unique<CachedTeacher>(cache_path);
      teacher = nullptr;  // the network is not needed any more
    }
  }
  auto optimizer = make_optimizer(optimizer_for(student_name), params);

  // Where a step's time goes: the phases are timed separately (CPU execution is synchronous).
  const std::vector<std::string> phase_names = {"student_forward", "teacher", "distill", "backward", "optimizer"};
  std::vector<double> phase_totals(phase_names.size(), 0.0);
  std::vector<double> times;
  for (int64_t i = 0; i < s.warmup + s.steps; ++i) {
    batch.step = i;
    const bool timed = i >= s.warmup;
    auto begin = Clock::now(), mark = begin;
    auto phase = [&](size_t k) {
      auto now = Clock::now();
      if (timed) phase_totals[k] += std::chrono::duration<double>(now - mark).count();
      mark = now;
    };
    ModelOutput out = student->forward(batch.images);
    LossTerms terms;
    terms.add("ce", task_loss(out.logits, batch.targets, Task::Segmentation));
    phase(0);
    if (distillers) {
      ModelOutput t;
      if (cache) {
        t = cache->outputs(batch);
      } else {
        torch::NoGradGuard no_grad;
        t = teacher->forward(batch.images);
      }
      phase(1);
      for (auto& [name, value] : distillers->forward(out, t, batch, StepInfo{i, s.warmup + s.steps, 1}).terms)
        terms.add(name, value);
      phase(2);
    }
    for (auto& [name, value] : terms.terms) value.item<double>();  // the trainer logs each term
    optimizer->zero_grad();
    terms.total().backward();
    phase(3);
    optimizer->step();
    phase(4);
    if (timed) times.push_back(seconds_since(begin));
  }
  nlohmann::json phases;
  for (size_t k = 0; k < phase_names.size(); ++k) phases[phase_names[k]] = phase_totals[k] / s.steps;
  if (!cache_path.empty()) std::filesystem::remove(cache_path);

  // Training FLOPs per step: 3x the student's forward (forward + backward), plus the teacher's
  // forward when it runs online (distiller ops are not counted).
  const int64_t student_flops = count_forward_flops(*student, {s.batch, 1, 64, 64});
  int64_t teacher_flops = 0;
  int64_t teacher_params = 0;
  if (s.config != "student" && !teacher_only) {
    Model t = create_model(s.teacher, model_options);
    teacher_params = count_parameters(*t);
    if (s.config != "heteroakd_cached") teacher_flops = count_forward_flops(*t, {s.batch, 1, 64, 64});
  }
  auto out = summarise(times, s.batch);
  // As the Python reference reports them: the teacher trained alone is the "teacher".
  out["config"] = s.config;
  out["student"] = teacher_only ? nlohmann::json(nullptr) : nlohmann::json(student_name);
  out["teacher"] = s.config == "student" ? nlohmann::json(nullptr) : nlohmann::json(s.teacher);
  out["batch"] = s.batch;
  out["threads"] = torch::get_num_threads();
  out["params_student"] = teacher_only ? 0 : count_parameters(*student);
  out["params_teacher"] = teacher_only ? count_parameters(*student) : teacher_params;
  out["params_distiller"] = distillers ? count_parameters(*distillers) : 0;
  out["train_gflop_per_step"] = (3.0 * student_flops + teacher_flops) / 1e9;
  out["phase_seconds"] = phases;  // mean per step
  out["achieved_gflops"] = (3.0 * student_flops + teacher_flops) / 1e9 / out["median"].get<double>();
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_distill: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    try {
      if (a == "--config") s.config = value();
      else if (a == "--student") s.student = value();
      else if (a == "--teacher") s.teacher = value();
      else if (a == "--json") s.json = value();
      else if (a == "--batch") s.batch = std::stoll(value());
      else if (a == "--warmup") s.warmup = std::stoll(value());
      else if (a == "--steps") s.steps = std::stoll(value());
      else if (a == "--threads") s.threads = std::stoi(value());
      else {
        std::fprintf(stderr, "bench_distill: unknown argument '%s'\n", a.c_str());
        return 2;
      }
    } catch (const std::exception&) {
      std::fprintf(stderr, "bench_distill: %s needs a number\n", a.c_str());
      return 2;
    }
  }
  const std::vector<std::string> configs = {"student", "kd", "cwd", "heteroakd", "heteroakd_cached",
                                            "teacher", "peak", "loader"};
  if (std::find(configs.begin(), configs.end(), s.config) == configs.end() || s.batch <= 0 ||
      s.steps <= 0 || s.warmup < 0) {
    std::fprintf(stderr, "bench_distill: --config is one of student, kd, cwd, heteroakd, "
                         "heteroakd_cached, teacher, peak, loader; --batch and --steps positive\n");
    return 2;
  }
  set_thread_count(s.threads);
  try {
    nlohmann::json out;
    if (s.config == "peak") {
      const PeakGflops peak = measure_peak_gflops();
      out = {{"config", "peak"},
             {"threads", torch::get_num_threads()},
             {"matmul_gflops", peak.matmul},
             {"conv_gflops", peak.conv},
             {"peak_gflops", std::max(peak.matmul, peak.conv)}};
    } else if (s.config == "loader") {
      out = bench_loader(s);
    } else {
      out = bench_training(s);
    }
    out["peak_rss_mib"] = peak_rss_mib();
    out["implementation"] = "cpp";
    std::printf("%s\n", out.dump().c_str());
    if (!s.json.empty()) std::ofstream(s.json) << out.dump(2) << "\n";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_distill: %s\n", e.what());
    return 1;
  }
  return 0;
}
