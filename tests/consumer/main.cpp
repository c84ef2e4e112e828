// Builds a student and a teacher from the zoo and one distiller from a YAML snippet, then
// checks the distillation loss against its definition (KL of softened logits, times T^2).
#include <distillery/core/config.h>
#include <distillery/distill/distiller_set.h>
#include <distillery/models/zoo.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>

int main() {
  using namespace distillery;
  torch::manual_seed(0);
  ModelOptions options;
  options.num_classes = 5;
  options.in_channels = 3;
  options.input_size = 32;
  Model student = create_model("segformer_b0", options);
  Model teacher = create_model("deeplabv3_resnet18_slim", options);
  torch::Tensor images = torch::randn({2, 3, 32, 32});
  ModelOutput s = student->forward(images), t = teacher->forward(images);

  Config config = Config::from_string("distillers: [{name: kd, temperature: 2.0}]");
  DistillerContext context;
  context.student_stages = student->stages();
  context.teacher_stages = teacher->stages();
  context.num_classes = 5;
  DistillerSet distillers(config.root().section_list("distillers"), context);
  Batch batch;
  batch.images = images;
  batch.targets = torch::zeros({2, 32, 32}, torch::kLong);
  batch.index = torch::arange(2);
  double loss = distillers->forward(s, t, batch, StepInfo{0, 10, 5}).total().item<double>();

  // The same loss by hand: teacher logits resized to the student's grid, T^2 * mean KL.
  namespace F = torch::nn::functional;
  const double T = 2.0;
  torch::Tensor t_logits = F::interpolate(
      t.logits.detach(), F::InterpolateFuncOptions()
                             .size(std::vector<int64_t>{s.logits.size(2), s.logits.size(3)})
                             .mode(torch::kBilinear)
                             .align_corners(false));
  torch::Tensor log_p_t = torch::log_softmax(t_logits / T, 1), log_p_s = torch::log_softmax(s.logits / T, 1);
  double expected = (T * T * (log_p_t.exp() * (log_p_t - log_p_s)).sum(1).mean()).item<double>();
  std::printf("student logits %lld x %lld x %lld, kd loss %.6f, by hand %.6f\n",
              static_cast<long long>(s.logits.size(1)), static_cast<long long>(s.logits.size(2)),
              static_cast<long long>(s.logits.size(3)), loss, expected);
  if (s.logits.size(1) != 5 || !std::isfinite(loss) || std::abs(loss - expected) > 1e-5 * (1 + expected)) {
    std::printf("consumer FAILED\n");
    return 1;
  }
  std::printf("consumer ok\n");
  return 0;
}
