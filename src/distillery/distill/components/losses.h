// Shared loss math for distillers: label masks, resizing, and distances between maps.
// Conventions: logits and features are NCHW; a valid mask is bool [B, H, W] (true = the pixel
// counts); an undefined mask means every pixel counts. Each function keeps the autograd graph.
#pragma once
#include <torch/types.h>

namespace distillery {

// --- maps and masks ---------------------------------------------------------------------

// Bilinear resize (align_corners = false) of an NCHW map to `size` = {H, W}; returns the input
// itself when it already has that size.
torch::Tensor resize_to(const torch::Tensor& map, torch::IntArrayRef size);

// Labels [B, H, W] resized with nearest neighbour to `size` = {h, w} (int64).
torch::Tensor resize_labels(const torch::Tensor& targets, torch::IntArrayRef size);

// resize_labels(targets, size) != 255, as bool [B, h, w].
torch::Tensor valid_pixel_mask(const torch::Tensor& targets, torch::IntArrayRef size);

// Logits as an NCHW map: classification [B, C] becomes [B, C, 1, 1]; NCHW is returned as is.
torch::Tensor as_pixel_map(const torch::Tensor& logits);

// Targets as per-pixel labels: classification [B] becomes [B, 1, 1] (matching as_pixel_map's
// logits); [B, H, W] is returned as is.
torch::Tensor as_pixel_labels(const torch::Tensor& targets);

// Global average pooling of an NCHW map to [B, C, 1, 1].
torch::Tensor global_pool(const torch::Tensor& features);

// valid_pixel_mask for segmentation targets [B, H, W]; undefined (every pixel counts) when the
// targets are undefined or not per pixel (classification).
torch::Tensor batch_valid_mask(const torch::Tensor& targets, torch::IntArrayRef size);

// Mean of `values` [B, H, W] over the pixels where `valid_mask` is true (all when undefined).
// No valid pixel gives an exact 0 that still belongs to the graph.
torch::Tensor masked_mean(const torch::Tensor& values, const torch::Tensor& valid_mask);

// --- pixel-wise distances ------------------------------------------------------------------

// Per pixel KL(softmax(teacher/T) || softmax(student/T)) over the channel axis: [B, H, W]
// (no T^2 factor). Same spatial size required.
torch::Tensor pixel_kl_map(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                           double T);

// T^2 * mean over valid pixels of KL(p_t || p_s); the pixel KD loss.
torch::Tensor pixel_kl(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                       double T, const torch::Tensor& valid_mask);

// Per pixel cross-entropy [B, H, W] against labels [B, H, W] of the same size; 0 at pixels with
// label 255.
torch::Tensor pixel_cross_entropy_map(const torch::Tensor& logits, const torch::Tensor& labels);

// --- channel / relation distances ----------------------------------------------------------

// CWD: per channel, softmax over the H*W positions of z/T; T^2 * sum_c KL(teacher || student)
// / (C * B). With a mask, positions outside it are left out of each spatial distribution.
torch::Tensor channel_kl(const torch::Tensor& student_map, const torch::Tensor& teacher_map,
                         double T, const torch::Tensor& valid_mask);

// Pearson correlation between the rows of two [N, D] matrices: [N].
torch::Tensor pearson_rows(const torch::Tensor& a, const torch::Tensor& b);

// DIST on per-pixel class distributions p = softmax(z/T) of the valid pixels: inter-class
// term T^2 * mean_pixels (1 - Pearson over classes) and intra-class term
// T^2 * mean_classes (1 - Pearson over pixels).
struct DistTerms {
  torch::Tensor inter;
  torch::Tensor intra;
};
DistTerms dist_relations(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                         double T, const torch::Tensor& valid_mask);

// --- feature transforms ----------------------------------------------------------------------

// mean_c F^p: [B, 1, H, W] (AT's spatial attention before normalisation; p = 2 in AT).
torch::Tensor attention_map(const torch::Tensor& features, double exponent = 2.0);

// Each image's map flattened and L2-normalised: [B, H*W].
torch::Tensor normalised_flat(const torch::Tensor& map);

// Adaptive max or average pooling of an NCHW map to a grid x grid map.
torch::Tensor pool_to_grid(const torch::Tensor& features, int64_t grid, bool max_pool);

// Cosine similarity between every pair of spatial positions: [B, H*W, H*W].
torch::Tensor cosine_similarity_matrix(const torch::Tensor& features);

}  // namespace distillery
