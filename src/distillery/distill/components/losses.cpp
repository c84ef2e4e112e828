#include "distillery/distill/components/losses.h"

#include <torch/torch.h>

#include "distillery/data/batch.h"

namespace distillery {

namespace F = torch::nn::functional;

namespace {

// Stands in for -inf in masked softmaxes: exp() of it is exactly 0 in float and double, but
// unlike -inf it keeps 0 * log(p) finite so neither the value nor the gradient becomes NaN.
constexpr double kMaskedLogit = -1e4;

bool same_spatial_size(const torch::Tensor& map, torch::IntArrayRef size) {
  return map.size(-2) == size[0] && map.size(-1) == size[1];
}

}  // namespace

torch::Tensor resize_to(const torch::Tensor& map, torch::IntArrayRef size) {
  TORCH_CHECK(map.dim() == 4 && size.size() == 2, "resize_to expects an NCHW map and {H, W}");
  if (same_spatial_size(map, size)) return map;
  return F::interpolate(map, F::InterpolateFuncOptions()
                                 .size(std::vector<int64_t>{size[0], size[1]})
                                 .mode(torch::kBilinear)
                                 .align_corners(false));
}

torch::Tensor resize_labels(const torch::Tensor& targets, torch::IntArrayRef size) {
  TORCH_CHECK(targets.dim() == 3 && size.size() == 2, "resize_labels expects [B, H, W] and {h, w}");
  if (same_spatial_size(targets, size)) return targets;
  // Labels up to 255 are exact in float, so nearest interpolation keeps them intact.
  auto resized = F::interpolate(targets.unsqueeze(1).to(torch::kFloat),
                                F::InterpolateFuncOptions()
                                    .size(std::vector<int64_t>{size[0], size[1]})
                                    .mode(torch::kNearest));
  return resized.squeeze(1).to(torch::kLong);
}

torch::Tensor valid_pixel_mask(const torch::Tensor& targets, torch::IntArrayRef size) {
  return resize_labels(targets, size) != kIgnoreLabel;
}

torch::Tensor as_pixel_map(const torch::Tensor& logits) {
  if (logits.dim() == 2) return logits.unsqueeze(-1).unsqueeze(-1);
  TORCH_CHECK(logits.dim() == 4, "expected logits [B, C] or [B, C, H, W], got ", logits.sizes());
  return logits;
}

torch::Tensor as_pixel_labels(const torch::Tensor& targets) {
  if (targets.dim() == 1) return targets.reshape({targets.size(0), 1, 1});
  TORCH_CHECK(targets.dim() == 3, "expected targets [B] or [B, H, W], got ", targets.sizes());
  return targets;
}

torch::Tensor global_pool(const torch::Tensor& features) {
  TORCH_CHECK(features.dim() == 4, "global_pool expects an NCHW map, got ", features.sizes());
  return features.mean({2, 3}, /*keepdim=*/true);
}

torch::Tensor batch_valid_mask(const torch::Tensor& targets, torch::IntArrayRef size) {
  if (!targets.defined() || targets.dim() != 3) return {};
  return valid_pixel_mask(targets, size);
}

torch::Tensor masked_mean(const torch::Tensor& values, const torch::Tensor& valid_mask) {
  if (!valid_mask.defined()) return values.mean();
  TORCH_CHECK(valid_mask.sizes() == values.sizes(), "masked_mean: mask ", valid_mask.sizes(),
              " does not match values ", values.sizes());
  auto kept = torch::where(valid_mask, values, torch::zeros_like(values));
  auto count = valid_mask.sum().to(values.scalar_type()).clamp_min(1.0);
  return kept.sum() / count;
}

torch::Tensor pixel_kl_map(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                           double T) {
  TORCH_CHECK(student_logits.sizes() == teacher_logits.sizes(), "pixel_kl_map: student ",
              student_logits.sizes(), " and teacher ", teacher_logits.sizes(), " differ");
  auto log_p_s = torch::log_softmax(student_logits / T, 1);
  auto log_p_t = torch::log_softmax(teacher_logits / T, 1);
  return (log_p_t.exp() * (log_p_t - log_p_s)).sum(1);
}

torch::Tensor pixel_kl(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                       double T, const torch::Tensor& valid_mask) {
  return T * T * masked_mean(pixel_kl_map(student_logits, teacher_logits, T), valid_mask);
}

torch::Tensor pixel_cross_entropy_map(const torch::Tensor& logits, const torch::Tensor& labels) {
  return F::cross_entropy(logits, labels,
                          F::CrossEntropyFuncOptions().ignore_index(kIgnoreLabel).reduction(torch::kNone));
}

torch::Tensor channel_kl(const torch::Tensor& student_map, const torch::Tensor& teacher_map,
                         double T, const torch::Tensor& valid_mask) {
  TORCH_CHECK(student_map.sizes() == teacher_map.sizes(), "channel_kl: student ",
              student_map.sizes(), " and teacher ", teacher_map.sizes(), " differ");
  const int64_t B = student_map.size(0), C = student_map.size(1);
  auto z_s = (student_map / T).reshape({B, C, -1});
  auto z_t = (teacher_map / T).reshape({B, C, -1});
  if (valid_mask.defined()) {
    auto outside = valid_mask.logical_not().reshape({B, 1, -1});
    z_s = z_s.masked_fill(outside, kMaskedLogit);
    z_t = z_t.masked_fill(outside, kMaskedLogit);
  }
  auto log_p_s = torch::log_softmax(z_s, 2);
  auto log_p_t = torch::log_softmax(z_t, 2);
  auto kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum();
  return T * T * kl / static_cast<double>(C * B);
}

torch::Tensor pearson_rows(const torch::Tensor& a, const torch::Tensor& b) {
  auto a_c = a - a.mean(1, /*keepdim=*/true);
  auto b_c = b - b.mean(1, /*keepdim=*/true);
  auto cov = (a_c * b_c).sum(1);
  // max(|a| |b|, 1e-8) as in DIST's cosine similarity; clamping before the sqrt keeps the
  // gradient finite for a constant row.
  auto scale = ((a_c * a_c).sum(1) * (b_c * b_c).sum(1)).clamp_min(1e-16).sqrt();
  return cov / scale;
}

DistTerms dist_relations(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                         double T, const torch::Tensor& valid_mask) {
  TORCH_CHECK(student_logits.sizes() == teacher_logits.sizes(), "dist_relations: student ",
              student_logits.sizes(), " and teacher ", teacher_logits.sizes(), " differ");
  const int64_t C = student_logits.size(1);
  // Rows are pixels, columns classes.
  auto p_s = torch::softmax(student_logits / T, 1).permute({0, 2, 3, 1}).reshape({-1, C});
  auto p_t = torch::softmax(teacher_logits / T, 1).permute({0, 2, 3, 1}).reshape({-1, C});
  if (valid_mask.defined()) {
    auto rows = valid_mask.reshape({-1}).nonzero().squeeze(1);
    p_s = p_s.index_select(0, rows);
    p_t = p_t.index_select(0, rows);
  }
  if (p_s.size(0) == 0) {
    auto zero = student_logits.sum() * 0.0;
    return {zero, zero};
  }
  const double scale = T * T;
  return {scale * (1.0 - pearson_rows(p_s, p_t)).mean(),
          scale * (1.0 - pearson_rows(p_s.t(), p_t.t())).mean()};
}

torch::Tensor attention_map(const torch::Tensor& features, double exponent) {
  return features.pow(exponent).mean(1, /*keepdim=*/true);
}

torch::Tensor normalised_flat(const torch::Tensor& map) {
  return F::normalize(map.reshape({map.size(0), -1}), F::NormalizeFuncOptions().dim(1));
}

torch::Tensor pool_to_grid(const torch::Tensor& features, int64_t grid, bool max_pool) {
  if (max_pool) return std::get<0>(torch::adaptive_max_pool2d(features, {grid, grid}));
  return torch::adaptive_avg_pool2d(features, {grid, grid});
}

torch::Tensor cosine_similarity_matrix(const torch::Tensor& features) {
  auto flat = features.reshape({features.size(0), features.size(1), -1});
  auto unit = F::normalize(flat, F::NormalizeFuncOptions().dim(1));
  return torch::bmm(unit.transpose(1, 2), unit);
}

}  // namespace distillery
