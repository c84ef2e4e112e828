#include "distillery/distill/methods/cirkd.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>

#include "distillery/distill/components/losses.h"

namespace distillery {

namespace F = torch::nn::functional;

namespace {

// Stands in for -inf in masked softmaxes (exp gives exactly 0; 0 * log p stays finite).
constexpr double kMaskedLogit = -1e4;

// Rows of p_t * (log p_t - log p_s) summed over the last axis, from logits.
torch::Tensor row_kl(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits) {
  auto log_p_s = torch::log_softmax(student_logits, -1);
  auto log_p_t = torch::log_softmax(teacher_logits, -1);
  return (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1);
}

int64_t read_count(const torch::Tensor& scalar) { return scalar.item().toLong(); }

// FIFO write of `embeddings` [n, D] / `labels` [n] into a circular bank.
void push_fifo(torch::Tensor& bank, torch::Tensor& bank_labels, torch::Tensor& ptr_buffer,
               torch::Tensor& count_buffer, torch::Tensor embeddings, torch::Tensor labels) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(embeddings.dim() == 2 && embeddings.size(1) == bank.size(1),
              "memory bank: expected [n, ", bank.size(1), "] embeddings, got ", embeddings.sizes());
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == embeddings.size(0),
              "memory bank: one label per embedding expected");
  const int64_t size = bank.size(0);
  int64_t n = embeddings.size(0);
  if (n == 0) return;
  int64_t ptr = read_count(ptr_buffer);
  if (n > size) {  // only the last `size` entries would survive; they continue the FIFO order
    ptr = (ptr + n - size) % size;
    embeddings = embeddings.slice(0, n - size);
    labels = labels.slice(0, n - size);
    n = size;
  }
  auto slots = (torch::arange(n, torch::kLong) + ptr).remainder(size).to(bank.device());
  bank.index_copy_(0, slots, embeddings.detach().to(bank.options()));
  bank_labels.index_copy_(0, slots, labels.to(bank_labels.options()));
  ptr_buffer.fill_((ptr + n) % size);
  count_buffer.fill_(std::min(read_count(count_buffer) + n, size));
}

// Rows of an NCHW map at the valid pixels: [n, D].
torch::Tensor valid_rows(const torch::Tensor& map, const torch::Tensor& valid) {
  auto rows = map.permute({0, 2, 3, 1}).reshape({-1, map.size(1)});
  return rows.index_select(0, valid.reshape({-1}).nonzero().squeeze(1));
}

}  // namespace

CIRKDOptions CIRKDOptions::from_config(const ConfigSection& cfg, const DistillerContext& context) {
  CIRKDOptions o;
  auto resolve = [&](const std::string& key, int64_t& stage, size_t count_size) {
    const auto count = static_cast<int64_t>(count_size);
    stage = cfg.get<int64_t>(key, stage);
    cfg.check(stage >= -count && stage < count, key,
              fmt::format("stage index {} is out of range for a network with {} stages", stage, count));
    if (stage < 0) stage += count;
  };
  resolve("student_stage", o.student_stage, context.student_stages.size());
  resolve("teacher_stage", o.teacher_stage, context.teacher_stages.size());
  o.projector = cfg.get_choice("projector", o.projector, {"mlp", "none"});
  if (o.projector == "none") {
    cfg.check(context.student_stages[o.student_stage].channels ==
                  context.teacher_stages[o.teacher_stage].channels,
              "projector", "'none' needs a student stage with as many channels as the teacher's");
  }
  o.contrast_temperature = cfg.get<double>("contrast_temperature", o.contrast_temperature);
  o.minibatch_pool = cfg.get<int64_t>("minibatch_pool", o.minibatch_pool);
  o.pixel_memory_size = cfg.get<int64_t>("pixel_memory_size", o.pixel_memory_size);
  o.region_memory_size = cfg.get<int64_t>("region_memory_size", o.region_memory_size);
  o.pixels_per_image = cfg.get<int64_t>("pixels_per_image", o.pixels_per_image);
  o.lambda_minibatch = cfg.get<double>("lambda_minibatch", o.lambda_minibatch);
  o.lambda_memory = cfg.get<double>("lambda_memory", o.lambda_memory);
  o.lambda_region = cfg.get<double>("lambda_region", o.lambda_region);
  o.lambda_kd = cfg.get<double>("lambda_kd", o.lambda_kd);
  o.kd_temperature = cfg.get<double>("kd_temperature", o.kd_temperature);
  cfg.check(o.contrast_temperature > 0, "contrast_temperature", "must be > 0");
  cfg.check(o.kd_temperature > 0, "kd_temperature", "must be > 0");
  cfg.check(o.minibatch_pool >= 1, "minibatch_pool", "must be >= 1");
  cfg.check(o.pixel_memory_size >= 1, "pixel_memory_size", "must be >= 1");
  cfg.check(o.region_memory_size >= 1, "region_memory_size", "must be >= 1");
  cfg.check(o.pixels_per_image >= 1, "pixels_per_image", "must be >= 1");
  for (const auto& [key, value] : {std::pair<const char*, double>{"lambda_minibatch", o.lambda_minibatch},
                                   {"lambda_memory", o.lambda_memory},
                                   {"lambda_region", o.lambda_region},
                                   {"lambda_kd", o.lambda_kd}}) {
    cfg.check(value >= 0, key, "must be >= 0");
  }
  return o;
}

torch::Tensor cirkd_minibatch_loss(const torch::Tensor& s_embed, const torch::Tensor& t_embed,
                                   const torch::Tensor& valid, int64_t pool, double temperature) {
  TORCH_CHECK(s_embed.size(0) == t_embed.size(0) && s_embed.size(2) == t_embed.size(2) &&
                  s_embed.size(3) == t_embed.size(3),
              "cirkd_minibatch_loss: student ", s_embed.sizes(), " and teacher ", t_embed.sizes(),
              " differ in batch or spatial size");
  auto s = s_embed;
  auto t = t_embed;
  auto cells = valid.to(s.scalar_type()).unsqueeze(1);
  if (pool > 1) {
    auto options = F::MaxPool2dFuncOptions(pool).stride(pool).ceil_mode(true);
    s = F::max_pool2d(s, options);
    t = F::max_pool2d(t, options);
    cells = F::max_pool2d(cells, options);
  }
  const int64_t B = s.size(0);
  auto unit = [&](const torch::Tensor& x) {  // [B, N, D]
    return F::normalize(x, F::NormalizeFuncOptions().dim(1)).reshape({B, x.size(1), -1}).transpose(1, 2);
  };
  auto s_unit = unit(s);
  auto t_unit = unit(t);
  auto cell_valid = cells.reshape({B, -1}) > 0.5;  // [B, N]

  // sim[i, j, n, m] = x_i,n . x_j,m
  auto similarity = [&](const torch::Tensor& x) {
    return torch::matmul(x.unsqueeze(1), x.transpose(1, 2).unsqueeze(0)) / temperature;
  };
  auto column_out = cell_valid.logical_not().reshape({1, B, 1, -1});
  auto s_sim = similarity(s_unit).masked_fill(column_out, kMaskedLogit);
  auto t_sim = similarity(t_unit).masked_fill(column_out, kMaskedLogit);
  auto kl = row_kl(s_sim, t_sim.detach());  // [B, B, N]
  auto row_weight = cell_valid.unsqueeze(1).to(kl.scalar_type()) *
                    cell_valid.any(1).reshape({1, B, 1}).to(kl.scalar_type());
  return (kl * row_weight).sum() / row_weight.sum().clamp_min(1.0);
}

torch::Tensor cirkd_memory_loss(const torch::Tensor& queries_s, const torch::Tensor& queries_t,
                                const torch::Tensor& bank, double temperature) {
  if (queries_s.size(0) == 0 || bank.size(0) == 0) return queries_s.sum() * 0.0;
  // A copy: the bank is overwritten in place after the loss, before backward needs the keys.
  auto keys = bank.detach().to(queries_s.scalar_type(), /*non_blocking=*/false, /*copy=*/true).t();
  auto s_logits = torch::matmul(queries_s, keys) / temperature;
  auto t_logits = torch::matmul(queries_t.detach(), keys) / temperature;
  return row_kl(s_logits, t_logits).mean();
}

CIRKDImpl::CIRKDImpl(const DistillerContext& context, CIRKDOptions options)
    : options_(std::move(options)), num_classes_(context.num_classes) {
  const int64_t s_channels = context.student_stages.at(options_.student_stage).channels;
  const int64_t t_channels = context.teacher_stages.at(options_.teacher_stage).channels;
  if (options_.projector == "mlp") {
    namespace nn = torch::nn;
    // CIRKD's project_head: 1x1 conv - BN - ReLU - 1x1 conv, bias-free.
    projector_ = register_module(
        "projector",
        nn::Sequential(nn::Conv2d(nn::Conv2dOptions(s_channels, t_channels, 1).bias(false)),
                       nn::BatchNorm2d(t_channels), nn::ReLU(),
                       nn::Conv2d(nn::Conv2dOptions(t_channels, t_channels, 1).bias(false))));
  }
  auto empty_labels = [](int64_t n) { return torch::full({n}, -1, torch::kLong); };
  pixel_queue_ = register_buffer("pixel_queue", torch::zeros({options_.pixel_memory_size, t_channels}));
  pixel_queue_labels_ = register_buffer("pixel_queue_labels", empty_labels(options_.pixel_memory_size));
  pixel_queue_ptr_ = register_buffer("pixel_queue_ptr", torch::zeros({}, torch::kLong));
  pixel_queue_count_ = register_buffer("pixel_queue_count", torch::zeros({}, torch::kLong));
  region_queue_ = register_buffer("region_queue", torch::zeros({options_.region_memory_size, t_channels}));
  region_queue_labels_ = register_buffer("region_queue_labels", empty_labels(options_.region_memory_size));
  region_queue_ptr_ = register_buffer("region_queue_ptr", torch::zeros({}, torch::kLong));
  region_queue_count_ = register_buffer("region_queue_count", torch::zeros({}, torch::kLong));
}

int64_t CIRKDImpl::pixel_queue_ptr() const { return read_count(pixel_queue_ptr_); }
int64_t CIRKDImpl::pixel_queue_count() const { return read_count(pixel_queue_count_); }
int64_t CIRKDImpl::region_queue_ptr() const { return read_count(region_queue_ptr_); }
int64_t CIRKDImpl::region_queue_count() const { return read_count(region_queue_count_); }

void CIRKDImpl::enqueue_pixels(const torch::Tensor& embeddings, const torch::Tensor& labels) {
  push_fifo(pixel_queue_, pixel_queue_labels_, pixel_queue_ptr_, pixel_queue_count_, embeddings, labels);
}

void CIRKDImpl::enqueue_regions(const torch::Tensor& embeddings, const torch::Tensor& labels) {
  push_fifo(region_queue_, region_queue_labels_, region_queue_ptr_, region_queue_count_, embeddings,
            labels);
}

void CIRKDImpl::update_memory(const torch::Tensor& t_unit, const torch::Tensor& labels) {
  torch::NoGradGuard no_grad;
  const int64_t B = t_unit.size(0), D = t_unit.size(1);
  std::vector<torch::Tensor> pixels, pixel_labels, regions, region_labels;
  for (int64_t b = 0; b < B; ++b) {
    auto rows = t_unit[b].reshape({D, -1}).t();  // [h*w, D]
    auto label_row = labels[b].reshape({-1});
    auto valid_index = (label_row != kIgnoreLabel).nonzero().squeeze(1);
    const int64_t n = valid_index.size(0);
    if (n == 0) continue;
    auto valid_labels = label_row.index_select(0, valid_index);
    TORCH_CHECK(valid_labels.min().item<int64_t>() >= 0 &&
                    valid_labels.max().item<int64_t>() < num_classes_,
                "cirkd: labels must lie in [0, ", num_classes_, ") or be ", kIgnoreLabel);
    auto valid_rows_b = rows.index_select(0, valid_index);

    auto pick = torch::randperm(n, torch::kLong).slice(0, 0, std::min(n, options_.pixels_per_image));
    pick = pick.to(valid_index.device());
    pixels.push_back(valid_rows_b.index_select(0, pick));
    pixel_labels.push_back(valid_labels.index_select(0, pick));

    // Class means of this image's valid pixels, in class order.
    auto sums = torch::zeros({num_classes_, D}, rows.options()).index_add_(0, valid_labels, valid_rows_b);
    auto counts = torch::bincount(valid_labels, {}, num_classes_);
    auto present = (counts > 0).nonzero().squeeze(1);
    auto means = sums.index_select(0, present) /
                 counts.index_select(0, present).to(rows.scalar_type()).unsqueeze(1);
    regions.push_back(F::normalize(means, F::NormalizeFuncOptions().dim(1)));
    region_labels.push_back(present);
  }
  if (pixels.empty()) return;
  enqueue_pixels(torch::cat(pixels), torch::cat(pixel_labels));
  enqueue_regions(torch::cat(regions), torch::cat(region_labels));
}

TeacherReads CIRKDImpl::teacher_reads() const {
  TeacherReads reads;
  reads.stages.insert(options_.teacher_stage);
  reads.logits = options_.lambda_kd > 0;
  return reads;
}

LossTerms CIRKDImpl::forward(const ModelOutput& student, const ModelOutput& teacher,
                             const Batch& batch, const StepInfo& step) {
  const auto& o = options_;
  const auto& f_s = student.features.at(o.student_stage);
  auto f_t = teacher.features.at(o.teacher_stage).detach();
  auto s_embed = projector_ ? projector_->forward(f_s) : f_s;
  const std::vector<int64_t> size{s_embed.size(2), s_embed.size(3)};
  // Teacher maps come to the student's resolution (METHODS.md).
  auto t_embed = resize_to(f_t, size);
  if (s_embed.size(1) != t_embed.size(1))
    throw Error(fmt::format("cirkd: student embeddings have {} channels, the teacher's {}",
                            s_embed.size(1), t_embed.size(1)));
  auto labels = resize_labels(batch.targets, size);
  auto valid = labels != kIgnoreLabel;

  LossTerms terms;
  if (o.lambda_minibatch > 0)
    terms.add("cirkd.minibatch", o.lambda_minibatch * cirkd_minibatch_loss(s_embed, t_embed, valid,
                                                                           o.minibatch_pool,
                                                                           o.contrast_temperature));
  auto unit_options = F::NormalizeFuncOptions().dim(1);
  auto t_unit = F::normalize(t_embed, unit_options);
  const bool use_memory = o.lambda_memory > 0 || o.lambda_region > 0;
  if (use_memory) {
    auto q_s = valid_rows(F::normalize(s_embed, unit_options), valid);
    auto q_t = valid_rows(t_unit, valid);
    if (o.lambda_memory > 0)
      terms.add("cirkd.memory",
                o.lambda_memory * cirkd_memory_loss(q_s, q_t, pixel_queue_.slice(0, 0, pixel_queue_count()),
                                                    o.contrast_temperature));
    if (o.lambda_region > 0)
      terms.add("cirkd.region",
                o.lambda_region * cirkd_memory_loss(q_s, q_t, region_queue_.slice(0, 0, region_queue_count()),
                                                    o.contrast_temperature));
  }
  if (o.lambda_kd > 0) {
    if (!student.logits.defined() || !teacher.logits.defined())
      throw Error("cirkd: lambda_kd > 0 needs the student's and the teacher's logits");
    const std::vector<int64_t> logit_size{student.logits.size(2), student.logits.size(3)};
    auto t_logits = resize_to(teacher.logits.detach(), logit_size);
    terms.add("cirkd.kd", o.lambda_kd * pixel_kl(student.logits, t_logits, o.kd_temperature,
                                                 valid_pixel_mask(batch.targets, logit_size)));
  }
  // The banks learn from this batch only after its loss is computed.
  if (use_memory && is_training()) update_memory(t_unit.detach(), labels);
  return terms;
}

Distiller make_cirkd_distiller(const DistillerContext& context, const ConfigSection& params) {
  params.check(context.task == Task::Segmentation, "name", "cirkd needs a segmentation task");
  return std::make_shared<CIRKDImpl>(context, CIRKDOptions::from_config(params, context));
}

}  // namespace distillery
