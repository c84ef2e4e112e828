// HeteroAKD (Huang et al., AAAI 2025; METHODS.md): distillation between heterogeneous
// architectures in an aligned logits space, with knowledge mixing (KMM) and knowledge
// evaluation (KEM). The free functions expose the per-stage math so tests can check it.
// Segmentation works per pixel; classification runs the same math on image-level logits
// (pooled stage features -> projector -> [B, C], the batch arranged as one map).
#pragma once
#include <torch/nn/modules/container/sequential.h>
#include <torch/types.h>

#include <string>
#include <vector>

#include "distillery/distill/distiller.h"

namespace distillery {

struct HeteroAKDOptions {
  std::vector<int64_t> student_stages{-2, -1};  // k-th student stage pairs with k-th teacher stage
  std::vector<int64_t> teacher_stages{-2, -1};
  std::string projector = "linear";    // "linear" (1x1 conv) | "conv" (3x3 conv-BN-ReLU, then 1x1)
  std::string reliability = "ce";      // "ce": per-pixel CE | "bce": sum over classes of one-vs-rest BCE
  bool kmm = true;                     // false: the target is the teacher projection alone
  double tau = 1.0;                    // mixing temperature
  bool kem = true;                     // false: uniform weights
  std::string kem_axis = "pixels";     // "pixels" | "classes"
  double temperature = 4.0;            // T of the mix loss and of KEM's discrepancy
  double lambda_proj = 1.0;
  double lambda_mix = 1.0;
  double lambda_kd = 0.1;              // 0 omits "heteroakd.kd"
  double kd_temperature = 1.0;
  double lambda_feat = 0.0;            // 0 omits "heteroakd.feat"

  // Reads and validates every key; stage indices are resolved to 0-based ones.
  static HeteroAKDOptions from_config(const ConfigSection& cfg, const DistillerContext& context);
};

// Reliability loss per pixel, [B, h, w]: CE(z, y), or sum_c BCE(sigmoid(z_c), [y == c]).
// 0 at ignore pixels. Lower = more reliable.
torch::Tensor heteroakd_reliability(const torch::Tensor& z, const torch::Tensor& labels,
                                    const std::string& kind);

// The mixed target of one stage. Everything here is detached.
struct KnowledgeMix {
  torch::Tensor w_t, w_s;  // [B, h, w], w_t + w_s = 1 (kmm false: 1 and 0)
  torch::Tensor z_mix;     // [B, C, h, w] = w_t * z_t + w_s * z_s
  // KEM weights, 0 at ignore pixels. pixels axis: [B, h, w], each image's valid pixels average
  // 1. classes axis: [B, C, h, w], each valid pixel's classes average 1. kem false: [B, h, w]
  // of ones at valid pixels.
  torch::Tensor weights;
  torch::Tensor valid;     // [B, h, w] bool
};

// z_s, z_t: [B, C, h, w] projections of one stage at the same resolution (the teacher's
// already resized); labels [B, h, w] at that resolution.
KnowledgeMix heteroakd_mix(const torch::Tensor& z_s, const torch::Tensor& z_t,
                           const torch::Tensor& labels, const HeteroAKDOptions& options);

// Mean over valid pixels of T^2 * sum_c W * p_mix,c (log p_mix,c - log p_s,c), with
// p = softmax(z / T); the gradient reaches z_s only.
torch::Tensor heteroakd_mix_loss(const torch::Tensor& z_s, const KnowledgeMix& mix,
                                 const HeteroAKDOptions& options);

// Image-level logits [B, C] as one map [1, C, B, 1]: the batch's images become the pixels of a
// single image, so KEM's per-image softmax over pixels weights the images of the batch.
torch::Tensor heteroakd_batch_as_map(const torch::Tensor& logits);

class HeteroAKDImpl : public DistillerImpl {
 public:
  HeteroAKDImpl(const DistillerContext& context, HeteroAKDOptions options);

  LossTerms forward(const ModelOutput& student, const ModelOutput& teacher, const Batch& batch,
                    const StepInfo& step) override;
  TeacherReads teacher_reads() const override;

  // forward() with a seam for gradient checks: when `mixes` is non-null and empty it receives
  // the per-stage mixes; when non-empty those (constant) mixes are used instead of new ones.
  LossTerms compute(const ModelOutput& student, const ModelOutput& teacher,
                    const torch::Tensor& targets, std::vector<KnowledgeMix>* mixes);

  const HeteroAKDOptions& options() const { return options_; }
  // One per chosen stage; the teacher's are trainable although the teacher is frozen.
  const std::vector<torch::nn::Sequential>& student_projectors() const { return student_projectors_; }
  const std::vector<torch::nn::Sequential>& teacher_projectors() const { return teacher_projectors_; }

 private:
  HeteroAKDOptions options_;
  std::vector<StageSpec> student_specs_, teacher_specs_;
  std::vector<torch::nn::Sequential> student_projectors_, teacher_projectors_;
};

Distiller make_heteroakd_distiller(const DistillerContext& context, const ConfigSection& params);

}  // namespace distillery
