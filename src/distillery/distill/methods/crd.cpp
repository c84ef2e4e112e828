#include "distillery/distill/methods/crd.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <cmath>

#include "distillery/core/error.h"

namespace distillery {
namespace {

namespace F = torch::nn::functional;

constexpr double kNceEps = 1e-7;

torch::Tensor unit_rows(const torch::Tensor& x) {
  return F::normalize(x, F::NormalizeFuncOptions().dim(1));
}

}  // namespace

torch::Tensor crd_nce_loss(const torch::Tensor& scores, int64_t dataset_size) {
  const int64_t B = scores.size(0), K = scores.size(1) - 1;
  const double noise = static_cast<double>(K) / static_cast<double>(dataset_size);
  auto positive = scores.select(1, 0);
  auto negatives = scores.narrow(1, 1, K);
  auto log_d1 = (positive / (positive + noise + kNceEps)).log();
  auto log_d0 = (noise / (negatives + noise + kNceEps)).log();
  return -(log_d1.sum() + log_d0.sum()) / static_cast<double>(B);
}

CrdImpl::CrdImpl(const DistillerContext& context, const CrdOptions& options)
    : options_(options), dataset_size_(context.dataset_size) {
  TORCH_CHECK(!context.student_stages.empty() && !context.teacher_stages.empty(),
              "crd needs the networks' stage specs");
  student_head = register_module(
      "student_head", torch::nn::Linear(context.student_stages.back().channels, options_.feat_dim));
  teacher_head = register_module(
      "teacher_head", torch::nn::Linear(context.teacher_stages.back().channels, options_.feat_dim));
  // CRD's initialisation: uniform in [-stdv, stdv], stdv = 1 / sqrt(feat_dim / 3).
  const double stdv = 1.0 / std::sqrt(options_.feat_dim / 3.0);
  student_memory = register_buffer("student_memory",
                                   torch::rand({dataset_size_, options_.feat_dim}) * (2 * stdv) - stdv);
  teacher_memory = register_buffer("teacher_memory",
                                   torch::rand({dataset_size_, options_.feat_dim}) * (2 * stdv) - stdv);
  normaliser = register_buffer("normaliser", torch::full({2}, -1.0));
}

torch::Tensor CrdImpl::compute(const torch::Tensor& student_embedding,
                               const torch::Tensor& teacher_embedding, const torch::Tensor& index,
                               const torch::Tensor& rows) {
  auto v_s = unit_rows(student_head->forward(student_embedding));
  auto v_t = unit_rows(teacher_head->forward(teacher_embedding));
  const int64_t B = v_s.size(0), D = options_.feat_dim;
  auto flat = rows.reshape({-1});
  // Student anchor against the teacher bank, teacher anchor against the student bank.
  auto teacher_rows = teacher_memory.index_select(0, flat).view({B, -1, D});
  auto student_rows = student_memory.index_select(0, flat).view({B, -1, D});
  auto scores_s = torch::bmm(teacher_rows, v_s.unsqueeze(2)).squeeze(2).div(options_.temperature).exp();
  auto scores_t = torch::bmm(student_rows, v_t.unsqueeze(2)).squeeze(2).div(options_.temperature).exp();
  {
    torch::NoGradGuard no_grad;
    const double N = static_cast<double>(dataset_size_);
    if (normaliser[0].item<double>() < 0) normaliser.select(0, 0).fill_(scores_s.mean() * N);
    if (normaliser[1].item<double>() < 0) normaliser.select(0, 1).fill_(scores_t.mean() * N);
  }
  auto loss = crd_nce_loss(scores_s / normaliser[0], dataset_size_) +
              crd_nce_loss(scores_t / normaliser[1], dataset_size_);
  {
    torch::NoGradGuard no_grad;
    const double m = options_.momentum;
    auto update = [&](torch::Tensor& memory, const torch::Tensor& v) {
      auto mixed = memory.index_select(0, index) * m + v.detach() * (1 - m);
      memory.index_copy_(0, index, unit_rows(mixed));
    };
    update(student_memory, v_s);
    update(teacher_memory, v_t);
  }
  return loss;
}

TeacherReads CrdImpl::teacher_reads() const {
  TeacherReads reads;
  reads.embedding = true;
  return reads;
}

LossTerms CrdImpl::forward(const ModelOutput& student, const ModelOutput& teacher, const Batch& batch,
                           const StepInfo&) {
  if (!student.embedding.defined() || !teacher.embedding.defined())
    throw Error("crd reads the pooled embeddings, which only classification models return");
  if (!batch.index.defined() || batch.index.size(0) != student.embedding.size(0))
    throw Error("crd needs the batch's sample indices");
  const auto index = batch.index.to(torch::kLong);
  if (index.min().item<int64_t>() < 0 || index.max().item<int64_t>() >= dataset_size_)
    throw Error(fmt::format("crd: sample index out of the memory bank's range [0, {})", dataset_size_));
  // Uniform negatives from torch's generator (seeded, and checkpointed with the run).
  auto rows = torch::randint(0, dataset_size_, {index.size(0), options_.negatives + 1}, torch::kLong);
  rows.select(1, 0).copy_(index);
  LossTerms out;
  out.add("crd", compute(student.embedding, teacher.embedding.detach(), index, rows));
  return out;
}

Distiller make_crd_distiller(const DistillerContext& context, const ConfigSection& params) {
  params.check(context.task == Task::Classification, "name",
               "crd contrasts per-image embeddings and needs a classification task");
  params.check(context.dataset_size > 0, "name", "crd needs the training set size for its memory bank");
  CrdOptions o;
  o.feat_dim = params.get<int64_t>("feat_dim", o.feat_dim);
  o.negatives = params.get<int64_t>("negatives", o.negatives);
  o.temperature = params.get<double>("temperature", o.temperature);
  o.momentum = params.get<double>("momentum", o.momentum);
  params.check(o.feat_dim > 0, "feat_dim", "must be > 0");
  params.check(o.negatives > 0, "negatives", "must be > 0");
  params.check(o.temperature > 0, "temperature", "must be positive");
  params.check(o.momentum >= 0 && o.momentum < 1, "momentum", "must be in [0, 1)");
  return std::make_shared<CrdImpl>(context, o);
}

}  // namespace distillery
