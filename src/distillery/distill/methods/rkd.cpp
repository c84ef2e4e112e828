// RKD, relational KD (Park et al., CVPR 2019; mdistiller's recipe): the student's pooled
// embeddings must keep the teacher's pairwise distances (each matrix divided by its mean
// positive distance) and the angles of every triplet, cos angle(e_j - e_i, e_k - e_i); both
// compared with the smooth L1 loss (mean over entries). Weights 25 (distance) and 50 (angle).
// Relations need no projector, so any embedding widths pair.
#include <torch/torch.h>

#include "distillery/core/error.h"
#include "distillery/distill/distiller.h"

namespace distillery {
namespace {

namespace F = torch::nn::functional;

// Euclidean distances between the rows, 0 on the diagonal, divided by their mean positive value.
torch::Tensor normalised_distances(const torch::Tensor& e) {
  auto squared = e.pow(2).sum(1);
  // The clamp keeps sqrt's gradient finite where two rows coincide (the diagonal).
  auto d = (squared.unsqueeze(1) + squared.unsqueeze(0) - 2 * e.mm(e.t())).clamp_min(1e-12).sqrt();
  d = d * (1 - torch::eye(e.size(0), e.options()));
  auto positive = d > 0;
  return d / d.masked_select(positive).mean().clamp_min(1e-12);
}

// [B, B, B]: entry (i, j, k) = <unit(e_j - e_i), unit(e_k - e_i)> (0 when j or k equals i).
torch::Tensor triplet_angles(const torch::Tensor& e) {
  auto differences = F::normalize(e.unsqueeze(0) - e.unsqueeze(1), F::NormalizeFuncOptions().dim(2));
  return torch::bmm(differences, differences.transpose(1, 2));
}

class RkdImpl : public DistillerImpl {
 public:
  RkdImpl(const DistillerContext&, const ConfigSection& params)
      : distance_weight_(params.get<double>("distance_weight", 25.0)),
        angle_weight_(params.get<double>("angle_weight", 50.0)) {
    params.check(distance_weight_ >= 0, "distance_weight", "must be >= 0");
    params.check(angle_weight_ >= 0, "angle_weight", "must be >= 0");
    params.check(distance_weight_ + angle_weight_ > 0, "angle_weight",
                 "distance_weight and angle_weight cannot both be 0");
  }

  TeacherReads teacher_reads() const override {
    TeacherReads reads;
    reads.embedding = true;
    return reads;
  }

  LossTerms forward(const ModelOutput& student, const ModelOutput& teacher, const Batch&,
                    const StepInfo&) override {
    if (!student.embedding.defined() || !teacher.embedding.defined())
      throw Error("rkd reads the pooled embeddings, which only classification models return");
    auto s = student.embedding.reshape({student.embedding.size(0), -1});
    auto t = teacher.embedding.detach().reshape({teacher.embedding.size(0), -1});
    LossTerms out;
    if (distance_weight_ > 0)
      out.add("rkd.distance", distance_weight_ * F::smooth_l1_loss(normalised_distances(s),
                                                                   normalised_distances(t)));
    if (angle_weight_ > 0)
      out.add("rkd.angle", angle_weight_ * F::smooth_l1_loss(triplet_angles(s), triplet_angles(t)));
    return out;
  }

 private:
  double distance_weight_, angle_weight_;
};

}  // namespace

Distiller make_rkd_distiller(const DistillerContext& context, const ConfigSection& params) {
  return std::make_shared<RkdImpl>(context, params);
}

}  // namespace distillery
