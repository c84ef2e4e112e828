// DKD, decoupled KD (Zhao et al., CVPR 2022; METHODS.md): KD split into the target-class part
// (TCKD: binary KL between [p_target, 1 - p_target] of teacher and student) and the
// non-target part (NCKD: KL between the distributions over the non-target classes,
// renormalised); loss = alpha * TCKD + beta * NCKD, both times T^2, with a linear warm-up over
// `warmup_epochs` (20 in the paper). Per image for classification, per valid pixel for
// segmentation (the same math on [B, C, H, W] maps; classification logits are 1x1 maps).
#include <torch/torch.h>

#include <limits>

#include "distillery/distill/components/losses.h"
#include "distillery/distill/components/schedule.h"
#include "distillery/distill/distiller.h"

namespace distillery {
namespace {

// exp() of it is exactly 0, so the target class drops out of NCKD's renormalised softmax
// while 0 * log(q) stays finite (DKD's code subtracts 1000 from the target logit).
constexpr double kDropLogit = -1e4;

class DkdImpl : public DistillerImpl {
 public:
  DkdImpl(const DistillerContext&, const ConfigSection& params)
      : alpha_(params.get<double>("alpha", 1.0)),
        beta_(params.get<double>("beta", 8.0)),
        temperature_(params.get<double>("temperature", 4.0)),
        warmup_epochs_(params.get<double>("warmup_epochs", 20.0)) {
    params.check(alpha_ >= 0, "alpha", "must be >= 0");
    params.check(beta_ >= 0, "beta", "must be >= 0");
    params.check(temperature_ > 0, "temperature", "must be positive");
    params.check(warmup_epochs_ >= 0, "warmup_epochs", "must be >= 0");
  }

  TeacherReads teacher_reads() const override { return TeacherReads::logits_only(); }

  LossTerms forward(const ModelOutput& student, const ModelOutput& teacher, const Batch& batch,
                    const StepInfo& step) override {
    auto z_s = as_pixel_map(student.logits);
    const std::vector<int64_t> size{z_s.size(2), z_s.size(3)};
    auto z_t = resize_to(as_pixel_map(teacher.logits).detach(), size);
    auto labels = resize_labels(as_pixel_labels(batch.targets), size);
    auto valid = labels != kIgnoreLabel;
    auto target = torch::one_hot(labels.masked_fill(valid.logical_not(), 0), z_s.size(1))
                      .permute({0, 3, 1, 2})
                      .to(torch::kBool);
    const double T = temperature_;
    auto log_p_s = torch::log_softmax(z_s / T, 1);
    auto log_p_t = torch::log_softmax(z_t / T, 1);

    // TCKD on the binary distributions [p_target, p_rest], kept in log space.
    auto binary = [&](const torch::Tensor& log_p) {
      auto log_target = (log_p * target).sum(1);
      auto log_rest = log_p.masked_fill(target, -std::numeric_limits<double>::infinity()).logsumexp(1);
      return std::make_pair(log_target, log_rest);
    };
    auto [log_bt_target, log_bt_rest] = binary(log_p_t);
    auto [log_bs_target, log_bs_rest] = binary(log_p_s);
    auto tckd = log_bt_target.exp() * (log_bt_target - log_bs_target) +
                log_bt_rest.exp() * (log_bt_rest - log_bs_rest);

    // NCKD: KL over the non-target classes, each side renormalised without the target.
    auto log_q_s = torch::log_softmax((z_s / T).masked_fill(target, kDropLogit), 1);
    auto log_q_t = torch::log_softmax((z_t / T).masked_fill(target, kDropLogit), 1);
    auto nckd = (log_q_t.exp() * (log_q_t - log_q_s)).sum(1);

    const double warmup = warmup_epochs_ > 0
                              ? std::min(1.0, static_cast<double>(step.step) /
                                                  (warmup_epochs_ * static_cast<double>(step.steps_per_epoch)))
                              : 1.0;
    const double scale = warmup * T * T;
    LossTerms out;
    out.add("dkd.tckd", scale * alpha_ * masked_mean(tckd, valid));
    out.add("dkd.nckd", scale * beta_ * masked_mean(nckd, valid));
    return out;
  }

 private:
  double alpha_, beta_, temperature_, warmup_epochs_;
};

}  // namespace

Distiller make_dkd_distiller(const DistillerContext& context, const ConfigSection& params) {
  return std::make_shared<DkdImpl>(context, params);
}

}  // namespace distillery
