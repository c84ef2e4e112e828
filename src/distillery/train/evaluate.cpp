#include "distillery/train/evaluate.h"

#include <torch/torch.h>

#include "distillery/core/progress.h"
#include "distillery/data/loader.h"
#include "distillery/train/inference.h"
#include "distillery/train/task_loss.h"

namespace distillery {

EvalResult evaluate(ModelImpl& model, const TensorDataset& data, int64_t batch_size,
                    bool show_progress) {
  torch::NoGradGuard no_grad;
  bool was_training = model.is_training();
  model.eval();
  ConfusionMatrix confusion(data.num_classes);
  if (data.files) {
    // Photographs differ in size: one at a time, at the labels' full resolution.
    const FileDataset& files = *data.files;
    std::unique_ptr<ProgressBar> bar;
    if (show_progress) bar = std::make_unique<ProgressBar>("eval", files.size());
    for (int64_t i = 0; i < files.size(); ++i) {
      auto [image, labels] = files.load(i);
      torch::Tensor predicted =
          predict_label_map(model, image, files.resize, files.inference, labels.size(0), labels.size(1));
      confusion.update(predicted.unsqueeze(0), labels.to(torch::kLong).unsqueeze(0));
      if (bar) bar->update(i + 1);
    }
    if (bar) bar->finish();
  }
  int64_t batches = data.files ? 0 : (data.size() + batch_size - 1) / batch_size;
  std::unique_ptr<ProgressBar> bar;
  if (show_progress && batches > 0) bar = std::make_unique<ProgressBar>("eval", batches);
  for (int64_t b = 0; b < batches; ++b) {
    int64_t start = b * batch_size;
    Batch batch = make_eval_batch(data, start, std::min(batch_size, data.size() - start));
    auto logits = model.forward(batch.images).logits;
    confusion.update(predict_classes(logits, batch.targets.sizes(), data.task), batch.targets);
    if (bar) bar->update(b + 1);
  }
  if (bar) bar->finish();
  model.train(was_training);
  EvalResult result;
  result.per_class_iou = confusion.per_class_iou();
  result.pixel_accuracy = confusion.pixel_accuracy();
  if (data.task == Task::Classification) {
    result.metric = result.pixel_accuracy;
    result.metric_name = "top1";
  } else {
    result.metric = confusion.mean_iou();
    result.metric_name = "mIoU";
  }
  return result;
}

}  // namespace distillery
