// CIRKD (Yang et al., CVPR 2022): cross-image relational KD. Pixel embeddings of one stage;
// the student's relations to other pixels (of the same mini-batch, and of memory banks of
// teacher pixel and region embeddings) are taught by the teacher's, with KL between the
// softmax similarity distributions, plus pixel KD on the logits.
#pragma once
#include <torch/nn/modules/container/sequential.h>
#include <torch/types.h>

#include <string>

#include "distillery/distill/distiller.h"

namespace distillery {

struct CIRKDOptions {
  int64_t student_stage = -1;         // resolved to a 0-based index by from_config
  int64_t teacher_stage = -1;
  std::string projector = "mlp";      // "mlp": 1x1 conv-BN-ReLU-1x1 conv to the teacher's channels; "none"
  double contrast_temperature = 0.1;  // of every similarity distribution
  int64_t minibatch_pool = 2;         // max-pool kernel (and stride) before the mini-batch term; 1 = none
  int64_t pixel_memory_size = 2048;
  int64_t region_memory_size = 512;
  int64_t pixels_per_image = 16;      // teacher pixels enqueued per image and step
  double lambda_minibatch = 1.0;      // 0 omits a term
  double lambda_memory = 0.1;
  double lambda_region = 0.1;
  double lambda_kd = 1.0;
  double kd_temperature = 1.0;

  static CIRKDOptions from_config(const ConfigSection& cfg, const DistillerContext& context);
};

// Mini-batch pixel-to-pixel term. s_embed, t_embed: [B, D, h, w] (unnormalised; D may differ
// between them); valid: [B, h, w] bool. Both maps are max-pooled by `pool` (ceil mode; a cell is
// valid when any of its pixels is) and L2-normalised per cell. For every image pair (i, j) and
// valid cell n of i: KL(softmax_m(t_i,n . t_j,m / temp) || softmax_m(s_i,n . s_j,m / temp)) over
// the valid cells m of j; the mean over all such (i, j, n).
torch::Tensor cirkd_minibatch_loss(const torch::Tensor& s_embed, const torch::Tensor& t_embed,
                                   const torch::Tensor& valid, int64_t pool, double temperature);

// Pixel-to-memory term: queries [n, D] (unit rows) against bank [m, D]; mean over the n rows
// of KL(softmax(q_t K^T / temp) || softmax(q_s K^T / temp)). 0 when n or m is 0.
torch::Tensor cirkd_memory_loss(const torch::Tensor& queries_s, const torch::Tensor& queries_t,
                                const torch::Tensor& bank, double temperature);

class CIRKDImpl : public DistillerImpl {
 public:
  CIRKDImpl(const DistillerContext& context, CIRKDOptions options);

  // In training mode the banks take the teacher's embeddings of this batch after the loss.
  LossTerms forward(const ModelOutput& student, const ModelOutput& teacher, const Batch& batch,
                    const StepInfo& step) override;
  TeacherReads teacher_reads() const override;

  // Samples pixels_per_image valid pixels of each image (torch's global generator) into the
  // pixel bank and each image's class means (re-normalised) into the region bank.
  // t_unit: [B, D, h, w] unit teacher embeddings; labels [B, h, w] (255 = ignore).
  void update_memory(const torch::Tensor& t_unit, const torch::Tensor& labels);
  // FIFO pushes of [n, D] embeddings with their labels [n]; a push longer than the bank keeps
  // its last entries.
  void enqueue_pixels(const torch::Tensor& embeddings, const torch::Tensor& labels);
  void enqueue_regions(const torch::Tensor& embeddings, const torch::Tensor& labels);

  const CIRKDOptions& options() const { return options_; }
  // Buffers (saved in checkpoints): bank [N, D], labels [N] (-1 = empty slot), next write
  // slot and number of filled slots (0-dim int64).
  const torch::Tensor& pixel_queue() const { return pixel_queue_; }
  const torch::Tensor& pixel_queue_labels() const { return pixel_queue_labels_; }
  int64_t pixel_queue_ptr() const;
  int64_t pixel_queue_count() const;
  const torch::Tensor& region_queue() const { return region_queue_; }
  const torch::Tensor& region_queue_labels() const { return region_queue_labels_; }
  int64_t region_queue_ptr() const;
  int64_t region_queue_count() const;

 private:
  CIRKDOptions options_;
  int64_t num_classes_;
  torch::nn::Sequential projector_{nullptr};
  torch::Tensor pixel_queue_, pixel_queue_labels_, pixel_queue_ptr_, pixel_queue_count_;
  torch::Tensor region_queue_, region_queue_labels_, region_queue_ptr_, region_queue_count_;
};

Distiller make_cirkd_distiller(const DistillerContext& context, const ConfigSection& params);

}  // namespace distillery
