#include "distillery/distill/methods/heteroakd.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <limits>

#include "distillery/distill/components/losses.h"
#include "distillery/distill/components/projector.h"

namespace distillery {

namespace F = torch::nn::functional;

namespace {

// Resolves possibly negative stage indices against a network with `count` stages.
void resolve_stages(const ConfigSection& cfg, const std::string& key, std::vector<int64_t>& stages,
                    int64_t count) {
  cfg.check(!stages.empty(), key, "must list at least one stage");
  for (auto& stage : stages) {
    cfg.check(stage >= -count && stage < count, key,
              fmt::format("stage index {} is out of range for a network with {} stages", stage, count));
    if (stage < 0) stage += count;
  }
}

}  // namespace

HeteroAKDOptions HeteroAKDOptions::from_config(const ConfigSection& cfg,
                                               const DistillerContext& context) {
  HeteroAKDOptions o;
  o.student_stages = cfg.get<std::vector<int64_t>>("student_stages", o.student_stages);
  o.teacher_stages = cfg.get<std::vector<int64_t>>("teacher_stages", o.teacher_stages);
  resolve_stages(cfg, "student_stages", o.student_stages,
                 static_cast<int64_t>(context.student_stages.size()));
  resolve_stages(cfg, "teacher_stages", o.teacher_stages,
                 static_cast<int64_t>(context.teacher_stages.size()));
  cfg.check(o.student_stages.size() == o.teacher_stages.size(), "teacher_stages",
            fmt::format("lists {} stages but student_stages lists {}; they pair one to one",
                        o.teacher_stages.size(), o.student_stages.size()));
  // "conv_bn_relu" is the components' name for the same projector.
  o.projector = cfg.get_choice("projector", o.projector, {"linear", "conv", "conv_bn_relu"});
  if (o.projector == "conv_bn_relu") o.projector = "conv";
  o.reliability = cfg.get_choice("reliability", o.reliability, {"ce", "bce"});
  o.kmm = cfg.get<bool>("kmm", o.kmm);
  o.tau = cfg.get<double>("tau", o.tau);
  o.kem = cfg.get<bool>("kem", o.kem);
  o.kem_axis = cfg.get_choice("kem_axis", o.kem_axis, {"pixels", "classes"});
  o.temperature = cfg.get<double>("temperature", o.temperature);
  o.lambda_proj = cfg.get<double>("lambda_proj", o.lambda_proj);
  o.lambda_mix = cfg.get<double>("lambda_mix", o.lambda_mix);
  o.lambda_kd = cfg.get<double>("lambda_kd", o.lambda_kd);
  o.kd_temperature = cfg.get<double>("kd_temperature", o.kd_temperature);
  o.lambda_feat = cfg.get<double>("lambda_feat", o.lambda_feat);
  cfg.check(o.tau > 0, "tau", "must be > 0");
  cfg.check(o.temperature > 0, "temperature", "must be > 0");
  cfg.check(o.kd_temperature > 0, "kd_temperature", "must be > 0");
  for (const auto& [key, value] : {std::pair<const char*, double>{"lambda_proj", o.lambda_proj},
                                   {"lambda_mix", o.lambda_mix},
                                   {"lambda_kd", o.lambda_kd},
                                   {"lambda_feat", o.lambda_feat}}) {
    cfg.check(value >= 0, key, "must be >= 0");
  }
  return o;
}

torch::Tensor heteroakd_reliability(const torch::Tensor& z, const torch::Tensor& labels,
                                    const std::string& kind) {
  if (kind == "ce") return pixel_cross_entropy_map(z, labels);
  TORCH_CHECK(kind == "bce", "heteroakd_reliability: unknown kind '", kind, "'");
  auto valid = labels != kIgnoreLabel;
  auto one_hot = torch::one_hot(labels.masked_fill(valid.logical_not(), 0), z.size(1))
                     .permute({0, 3, 1, 2})
                     .to(z.scalar_type());
  auto bce = F::binary_cross_entropy_with_logits(
                 z, one_hot, F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone))
                 .sum(1);
  return torch::where(valid, bce, torch::zeros_like(bce));
}

KnowledgeMix heteroakd_mix(const torch::Tensor& z_s_in, const torch::Tensor& z_t_in,
                           const torch::Tensor& labels, const HeteroAKDOptions& o) {
  TORCH_CHECK(z_s_in.sizes() == z_t_in.sizes(), "heteroakd_mix: student ", z_s_in.sizes(),
              " and teacher ", z_t_in.sizes(), " projections differ");
  TORCH_CHECK(labels.dim() == 3 && labels.size(0) == z_s_in.size(0) &&
                  labels.size(1) == z_s_in.size(2) && labels.size(2) == z_s_in.size(3),
              "heteroakd_mix: labels ", labels.sizes(), " do not match ", z_s_in.sizes());
  // The mix is a target: nothing here may carry gradient back into either side.
  torch::NoGradGuard no_grad;
  auto z_s = z_s_in.detach();
  auto z_t = z_t_in.detach();
  KnowledgeMix mix;
  mix.valid = labels != kIgnoreLabel;

  if (o.kmm) {
    auto h_t = heteroakd_reliability(z_t, labels, o.reliability);
    auto h_s = heteroakd_reliability(z_s, labels, o.reliability);
    auto w = torch::softmax(torch::stack({-h_t / o.tau, -h_s / o.tau}), 0);
    mix.w_t = w[0];
    mix.w_s = w[1];
    mix.z_mix = mix.w_t.unsqueeze(1) * z_t + mix.w_s.unsqueeze(1) * z_s;
  } else {
    mix.w_t = torch::ones_like(labels, z_t.options());
    mix.w_s = torch::zeros_like(labels, z_t.options());
    mix.z_mix = z_t;
  }

  auto valid_f = mix.valid.to(z_s.scalar_type());
  if (!o.kem) {
    mix.weights = valid_f;
    return mix;
  }
  const double T = o.temperature;
  auto log_p_mix = torch::log_softmax(mix.z_mix / T, 1);
  auto log_p_s = torch::log_softmax(z_s / T, 1);
  auto per_class = log_p_mix.exp() * (log_p_mix - log_p_s);  // [B, C, h, w]
  if (o.kem_axis == "pixels") {
    const int64_t B = z_s.size(0);
    auto discrepancy = per_class.sum(1).reshape({B, -1});
    auto valid_flat = mix.valid.reshape({B, -1});
    auto count = valid_flat.sum(1, /*keepdim=*/true).to(z_s.scalar_type());
    auto w = torch::softmax(
                 discrepancy.masked_fill(valid_flat.logical_not(), -std::numeric_limits<double>::infinity()),
                 1) *
             count;
    // An image without valid pixels gives NaN from the softmax; its weights are all 0.
    mix.weights = torch::where(valid_flat, w, torch::zeros_like(w)).reshape(labels.sizes());
  } else {
    // Per pixel, the classes whose KL contribution is largest (where the student
    // under-predicts the mix) get the largest weights; C * softmax keeps their mean at 1.
    mix.weights = torch::softmax(per_class, 1) * static_cast<double>(z_s.size(1)) *
                  valid_f.unsqueeze(1);
  }
  return mix;
}

torch::Tensor heteroakd_mix_loss(const torch::Tensor& z_s, const KnowledgeMix& mix,
                                 const HeteroAKDOptions& o) {
  const double T = o.temperature;
  auto log_p_mix = torch::log_softmax(mix.z_mix / T, 1);
  auto log_p_s = torch::log_softmax(z_s / T, 1);
  auto per_class = log_p_mix.exp() * (log_p_mix - log_p_s);
  auto per_pixel = mix.weights.dim() == 4 ? (mix.weights * per_class).sum(1)
                                          : mix.weights * per_class.sum(1);
  return T * T * masked_mean(per_pixel, mix.valid);
}

HeteroAKDImpl::HeteroAKDImpl(const DistillerContext& context, HeteroAKDOptions options)
    : options_(std::move(options)),
      student_specs_(context.student_stages),
      teacher_specs_(context.teacher_stages) {
  TORCH_CHECK(context.num_classes > 0, "HeteroAKD needs the number of classes");
  const auto kind = options_.projector == "conv" ? ProjectorKind::ConvBnRelu : ProjectorKind::Linear;
  for (size_t k = 0; k < options_.student_stages.size(); ++k) {
    auto s_in = student_specs_.at(options_.student_stages[k]).channels;
    auto t_in = teacher_specs_.at(options_.teacher_stages[k]).channels;
    student_projectors_.push_back(register_module(fmt::format("student_projector_{}", k),
                                                  make_projector(s_in, context.num_classes, kind)));
    teacher_projectors_.push_back(register_module(fmt::format("teacher_projector_{}", k),
                                                  make_projector(t_in, context.num_classes, kind)));
  }
}

TeacherReads HeteroAKDImpl::teacher_reads() const {
  TeacherReads reads;
  reads.stages.insert(options_.teacher_stages.begin(), options_.teacher_stages.end());
  reads.logits = options_.lambda_kd > 0;
  return reads;
}

LossTerms HeteroAKDImpl::forward(const ModelOutput& student, const ModelOutput& teacher,
                                 const Batch& batch, const StepInfo& step) {
  return compute(student, teacher, batch.targets, nullptr);
}

torch::Tensor heteroakd_batch_as_map(const torch::Tensor& logits) {
  TORCH_CHECK(logits.dim() == 2, "heteroakd_batch_as_map expects [B, C], got ", logits.sizes());
  return logits.t().unsqueeze(0).unsqueeze(-1);
}

LossTerms HeteroAKDImpl::compute(const ModelOutput& student, const ModelOutput& teacher,
                                 const torch::Tensor& targets_in, std::vector<KnowledgeMix>* mixes) {
  // Classification: stage maps are pooled before their projector, and the image-level logits
  // [B, C] of a batch become one [1, C, B, 1] map with labels [1, B, 1], so the per-pixel CE,
  // KMM, KEM (over the batch's images) and mix loss below apply unchanged.
  const bool per_image = targets_in.dim() == 1;
  const auto targets = per_image ? targets_in.reshape({1, -1, 1}) : targets_in;
  auto project = [&](torch::nn::Sequential& projector, const torch::Tensor& features) {
    if (!per_image) return projector->forward(features);
    return heteroakd_batch_as_map(projector->forward(global_pool(features)).flatten(1));
  };
  const auto& o = options_;
  const bool reuse = mixes != nullptr && !mixes->empty();
  if (reuse && mixes->size() != o.student_stages.size())
    throw Error("heteroakd: the given mixes do not match the chosen stages");
  if (student.features.size() != student_specs_.size() ||
      teacher.features.size() != teacher_specs_.size())
    throw Error(fmt::format("heteroakd: expected {} student and {} teacher stage features, got {} and {}",
                            student_specs_.size(), teacher_specs_.size(), student.features.size(),
                            teacher.features.size()));

  torch::Tensor proj_loss, mix_loss, feat_loss;
  auto accumulate = [](torch::Tensor& sum, const torch::Tensor& value) {
    sum = sum.defined() ? sum + value : value;
  };
  for (size_t k = 0; k < o.student_stages.size(); ++k) {
    const auto& f_s = student.features[o.student_stages[k]];
    // The teacher is frozen: only its projectors learn, never the network behind them.
    auto f_t = teacher.features[o.teacher_stages[k]].detach();
    auto z_s = project(student_projectors_[k], f_s);
    auto z_t = project(teacher_projectors_[k], f_t);

    auto labels_s = resize_labels(targets, {z_s.size(2), z_s.size(3)});
    auto labels_t = resize_labels(targets, {z_t.size(2), z_t.size(3)});
    accumulate(proj_loss,
               masked_mean(pixel_cross_entropy_map(z_s, labels_s), labels_s != kIgnoreLabel) +
                   masked_mean(pixel_cross_entropy_map(z_t, labels_t), labels_t != kIgnoreLabel));

    KnowledgeMix mix;
    if (reuse) {
      mix = (*mixes)[k];
    } else {
      mix = heteroakd_mix(z_s, resize_to(z_t, {z_s.size(2), z_s.size(3)}), labels_s, o);
      if (mixes != nullptr) mixes->push_back(mix);
    }
    accumulate(mix_loss, heteroakd_mix_loss(z_s, mix, o));
    if (o.lambda_feat > 0)
      accumulate(feat_loss, masked_mean((z_s - mix.z_mix).pow(2).mean(1), mix.valid));
  }

  LossTerms terms;
  terms.add("heteroakd.proj", o.lambda_proj * proj_loss);
  terms.add("heteroakd.mix", o.lambda_mix * mix_loss);
  if (o.lambda_feat > 0) terms.add("heteroakd.feat", o.lambda_feat * feat_loss);
  if (o.lambda_kd > 0) {
    if (!student.logits.defined() || !teacher.logits.defined())
      throw Error("heteroakd: lambda_kd > 0 needs the student's and the teacher's logits");
    const auto s_logits = as_pixel_map(student.logits);
    auto size = std::vector<int64_t>{s_logits.size(2), s_logits.size(3)};
    auto t_logits = resize_to(as_pixel_map(teacher.logits.detach()), size);
    terms.add("heteroakd.kd", o.lambda_kd * pixel_kl(s_logits, t_logits, o.kd_temperature,
                                                     batch_valid_mask(targets_in, size)));
  }
  return terms;
}

Distiller make_heteroakd_distiller(const DistillerContext& context, const ConfigSection& params) {
  return std::make_shared<HeteroAKDImpl>(context, HeteroAKDOptions::from_config(params, context));
}

}  // namespace distillery
