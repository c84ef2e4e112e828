#include "distillery/train/trainer.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <nlohmann/json.hpp>

#include "distillery/core/error.h"
#include "distillery/core/progress.h"
#include "distillery/core/runtime.h"
#include "distillery/data/augment.h"
#include "distillery/data/loader.h"
#include "distillery/distributed/data_parallel.h"
#include "distillery/models/zoo.h"
#include "distillery/train/checkpoint.h"
#include "distillery/train/optimizer.h"
#include "distillery/train/pretrained.h"
#include "distillery/train/resume.h"
#include "distillery/train/run_log.h"
#include "distillery/train/task_loss.h"

namespace distillery {
namespace fs = std::filesystem;

Trainer::Trainer(Recipe recipe) : recipe_(std::move(recipe)) {
  // First, so that a teacher trained on the fly below shares the rendezvous.
  parallel_ = DataParallel::from_environment(recipe_.train.distributed);
  seed_everything(recipe_.seed);
  // The teacher comes first: when it has to be trained, that run reseeds the generator, and
  // the student's initialisation must not depend on whether it did.
  if (recipe_.teacher.enabled) teacher_ = make_teacher_source(recipe_.teacher);
  seed_everything(recipe_.seed);
  student_ = create_model(recipe_.student.name, recipe_.student.options);
  if (!recipe_.student.pretrained.empty())
    fmt::print("Student {} from {}: {}\n", recipe_.student.name, recipe_.student.pretrained,
               load_pretrained(*student_, recipe_.student.pretrained).summary());
  data_ = load_data_splits(recipe_.data);
  if (data_.train->num_classes != student_->num_classes())
    throw ConfigError(fmt::format("config key 'model.name': '{}' predicts {} classes but the data has {}",
                                  recipe_.student.name, student_->num_classes(),
                                  data_.train->num_classes));
  // Checked here, before run() creates any output file, rather than by the loader.
  if (recipe_.train.batch_size > data_.train->size())
    throw ConfigError(fmt::format("config key 'train.batch_size': {} exceeds the {} training samples",
                                  recipe_.train.batch_size, data_.train->size()));
  if (teacher_ && teacher_->num_classes() != student_->num_classes())
    throw ConfigError(fmt::format("config key 'teacher.model': the teacher predicts {} classes, the student {}",
                                  teacher_->num_classes(), student_->num_classes()));

  std::vector<torch::Tensor> params = student_->parameters();
  if (!recipe_.distillers.empty()) {
    distillers_ = DistillerSet(recipe_.distillers,
                               make_distiller_context(*student_, *teacher_, recipe_, data_.train->size()));
    for (auto& p : distillers_->parameters()) params.push_back(p);
    teacher_->check_compatible(recipe_, distillers_->teacher_reads());
  }
  recipe_.config.check_all_consumed();
  optimizer_ = make_optimizer(recipe_.train.optimizer, params);
  if (parallel_) {
    // Replicas start identical whatever their generators did.
    std::vector<torch::Tensor> state = student_->parameters();
    for (auto& b : student_->buffers()) state.push_back(b);
    if (distillers_) {
      for (auto& p : distillers_->parameters()) state.push_back(p);
      for (auto& b : distillers_->buffers()) state.push_back(b);
    }
    parallel_->broadcast_from_main(state);
  }
}

Trainer::~Trainer() = default;

DistillerContext make_distiller_context(const ModelImpl& student, const TeacherSource& teacher,
                                        const Recipe& recipe, int64_t dataset_size) {
  DistillerContext context;
  context.student_stages = student.stages();
  context.teacher_stages = teacher.stages();
  context.num_classes = student.num_classes();
  context.task = recipe.data.task();
  context.dataset_size = dataset_size;
  return context;
}

void Trainer::save(const std::string& file, int64_t step, double best_metric) {
  if (parallel_ && !parallel_->is_main()) return;
  CheckpointMeta meta;
  meta.step = step;
  meta.best_metric = best_metric;
  meta.model_name = recipe_.student.name;
  meta.num_classes = student_->num_classes();
  meta.config_yaml = recipe_.config.dump();
  meta.threads = torch::get_num_threads();
  CheckpointParts parts{student_.get(), distillers_ ? distillers_.ptr().get() : nullptr,
                        optimizer_.get(), /*rng=*/true};
  // latest.ckpt keeps its predecessor as previous.ckpt, the fallback when it is found damaged.
  save_checkpoint(recipe_.run_dir + "/" + file, meta, parts,
                  file == kLatestCheckpoint ? recipe_.run_dir + "/" + kPreviousCheckpoint : "");
}

void Trainer::log_json(const std::string& line) {
  if (!metrics_log_) return;  // data-parallel ranks other than 0
  *metrics_log_ << line << '\n';
  metrics_log_->flush();
}

TrainResult Trainer::run(bool resume, int64_t stop_after) {
  const TrainOptions& opt = recipe_.train;
  const Task task = recipe_.data.task();
  fs::create_directories(recipe_.run_dir);

  int64_t start_step = 0;
  double best_metric = -1.0;
  if (resume) {
    const std::string from = resume_checkpoint(recipe_.run_dir);
    CheckpointMeta meta = read_checkpoint_meta(from);
    check_resumable(from, meta, recipe_, student_->num_classes());
    load_checkpoint(from, CheckpointParts{student_.get(),
                                          distillers_ ? distillers_.ptr().get() : nullptr,
                                          optimizer_.get(), /*rng=*/true});
    start_step = meta.step;
    best_metric = meta.best_metric;
    // Records past the checkpoint are repeated by this run: drop them so the log reads as if
    // the run had never stopped.
    if (!parallel_ || parallel_->is_main())  // rank 0 alone owns the log
      truncate_run_log(recipe_.run_dir + "/metrics.jsonl", start_step);
  }
  const bool writes_files = !parallel_ || parallel_->is_main();
  if (writes_files) {
    std::ofstream config_out(recipe_.run_dir + "/config.yaml");
    config_out << recipe_.config.dump();
    metrics_log_ = std::make_unique<std::ofstream>(recipe_.run_dir + "/metrics.jsonl",
                                                   resume ? std::ios::app : std::ios::trunc);
  }
  // Each rank draws its own dropout / drop-path / sampling randomness (the checkpoint holds
  // rank 0's generator).
  if (parallel_)
    seed_everything(mix_seed({recipe_.seed, static_cast<uint64_t>(parallel_->rank()),
                              static_cast<uint64_t>(start_step)}));

  LoaderOptions loader = train_loader_options(recipe_);
  if (parallel_) loader.shard = parallel_->rank(), loader.num_shards = parallel_->world_size();
  TrainStream stream(data_.train, loader, start_step);
  const int64_t checkpoint_every = opt.checkpoint_every > 0 ? opt.checkpoint_every : opt.eval_every;

  std::vector<torch::Tensor> clip_params;
  for (auto& group : optimizer_->param_groups())
    for (auto& p : group.params()) clip_params.push_back(p);

  TrainResult result;
  result.run_dir = recipe_.run_dir;
  result.metric_name = task == Task::Classification ? "top1" : "mIoU";
  result.best_metric = best_metric;
  double train_seconds = 0;
  double data_wait_seconds = 0;  // part of train_seconds spent waiting for the loader
  int64_t images = 0;
  std::string last_metric_text;

  student_->train();
  std::optional<ProgressBar> bar;
  if (writes_files) bar.emplace(recipe_.name, opt.steps, start_step);
  const int64_t end_step = stop_after > 0 ? std::min(stop_after, opt.steps) : opt.steps;
  for (int64_t step = start_step; step < end_step; ++step) {
    auto begin = std::chrono::steady_clock::now();
    Batch batch = stream.next();
    data_wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    set_learning_rate(*optimizer_, learning_rate_at(opt.optimizer, step, opt.steps));

    ModelOutput out = student_->forward(batch.images);
    LossTerms terms;
    terms.add("ce", opt.task_weight * task_loss(out.logits, batch.targets, task));
    if (out.aux_logits.defined() && opt.aux_weight > 0)
      terms.add("aux", opt.task_weight * opt.aux_weight * task_loss(out.aux_logits, batch.targets, task));
    // Split-loss optimizers (DOT) back-propagate the task and the distillation terms apart.
    const torch::Tensor task_total = terms.total();
    torch::Tensor distill_total;
    if (distillers_) {
      ModelOutput teacher_out;
      if (distillers_->needs_teacher()) teacher_out = teacher_->outputs(batch);
      StepInfo info{step, opt.steps, stream.steps_per_epoch()};
      for (auto& [name, value] : distillers_->forward(out, teacher_out, batch, info).terms) {
        terms.add(name, value);
        distill_total = distill_total.defined() ? distill_total + value : value;
      }
    }

    std::map<std::string, double> values;
    for (const auto& [name, value] : terms.terms) values[name] = value.item<double>();
    if (parallel_) values = parallel_->average_values(values);  // every rank decides alike
    std::string bad_term;
    for (const auto& [name, v] : values)
      if (!std::isfinite(v) && bad_term.empty()) bad_term = name;
    optimizer_->zero_grad();
    if (!bad_term.empty()) {
      std::string what = fmt::format("loss term '{}' is {} at step {}", bad_term, values[bad_term], step + 1);
      if (!opt.skip_nonfinite)
        throw Error(fmt::format("{}; stopped, last good checkpoint kept in {}", what, recipe_.run_dir));
      log_json(nlohmann::json{{"step", step + 1}, {"skipped", what}}.dump());
      continue;
    }
    torch::Tensor total = terms.total();
    if (auto* split = dynamic_cast<SplitLossOptimizer*>(optimizer_.get())) {
      if (parallel_)
        throw ConfigError("config key 'train.optimizer.type': dot is not supported with several processes yet");
      split->backward_and_step(task_total, distill_total);
    } else {
      total.backward();
      if (parallel_) parallel_->average_gradients(clip_params);
      if (opt.optimizer.grad_clip > 0) torch::nn::utils::clip_grad_norm_(clip_params, opt.optimizer.grad_clip);
      optimizer_->step();
    }

    train_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    images += opt.batch_size;  // the global batch, over all ranks
    const int64_t done = step + 1;
    double loss = total.item<double>();
    if (parallel_) {  // the mean over ranks
      loss = 0;
      for (const auto& entry : values) loss += entry.second;
    }

    if (done % opt.log_every == 0 || done == opt.steps) {
      nlohmann::json record{{"step", done},
                            {"lr", learning_rate_at(opt.optimizer, step, opt.steps)},
                            {"loss", loss},
                            {"terms", values},
                            {"train_seconds", train_seconds}};
      log_json(record.dump());
    }
    if (bar) bar->update(done, fmt::format("loss {:.4f}{}", loss, last_metric_text));

    bool final_step = done == opt.steps;
    if (done % opt.eval_every == 0 || final_step) {
      EvalResult eval = evaluate(*student_, *data_.val, opt.eval_batch_size, false, parallel_.get());
      last_metric_text = fmt::format(" {} {:.4f}", eval.metric_name, eval.metric);
      std::vector<double> iou;
      for (double v : eval.per_class_iou) iou.push_back(std::isnan(v) ? -1.0 : v);
      log_json(nlohmann::json{{"step", done},
                              {"eval", {{eval.metric_name, eval.metric},
                                        {"accuracy", eval.pixel_accuracy},
                                        {"per_class_iou", iou}}}}
                   .dump());
      result.final_metric = eval.metric;
      if (eval.metric > best_metric) {
        best_metric = eval.metric;
        save("best.ckpt", done, best_metric);
      }
      if (bar) bar->update(done, fmt::format("loss {:.4f}{}", loss, last_metric_text));
    }
    if (done % checkpoint_every == 0 || final_step || done == end_step)
      save(kLatestCheckpoint, done, best_metric);
  }
  if (bar) bar->finish();
  if (start_step >= opt.steps) {
    result.final_metric = evaluate(*student_, *data_.val, opt.eval_batch_size, false, parallel_.get()).metric;
  }
  // Nobody reads rank 0's last checkpoint (e.g. a teacher trained on the fly) before it exists.
  if (parallel_) parallel_->barrier();
  result.best_metric = best_metric;
  result.steps = opt.steps;
  result.train_seconds = train_seconds;
  result.images_per_second = train_seconds > 0 ? images / train_seconds : 0;
  nlohmann::json summary{{"summary", {{"final_" + result.metric_name, result.final_metric},
                                      {"best_" + result.metric_name, result.best_metric},
                                      {"train_seconds", train_seconds},
                                      {"data_wait_seconds", data_wait_seconds},
                                      {"images_per_second", result.images_per_second}}}};
  if (parallel_) {
    result.allreduce_seconds = parallel_->gradient_seconds();
    summary["summary"]["processes"] = parallel_->world_size();
    summary["summary"]["allreduce_seconds"] = result.allreduce_seconds;
  }
  log_json(summary.dump());
  return result;
}

}  // namespace distillery
