// Batches for training and evaluation. Training batches form an endless stream indexed by the
// global step, a pure function of (dataset, options, step): resuming at step k gives exactly the
// batches an uninterrupted run would have seen.
#pragma once
#include <torch/types.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "distillery/data/augment.h"
#include "distillery/data/batch.h"
#include "distillery/data/tensor_dataset.h"

namespace distillery {

class ConfigSection;

// The one normalisation used everywhere (training, evaluation, show-data, export):
// float (x / 255 - kInputMean) / kInputStd, for uint8 images of any shape.
constexpr double kInputMean = 0.5;
constexpr double kInputStd = 0.25;
torch::Tensor to_model_input(const torch::Tensor& uint8_images);
// The inverse, rounded and clamped back to uint8 (for pictures of model inputs).
torch::Tensor from_model_input(const torch::Tensor& model_input);

struct LoaderOptions {
  int64_t batch_size = 16;
  bool shuffle = true;
  AugmentOptions augment;
  uint64_t seed = 0;
  int64_t prefetch = 4;  // batches prepared ahead by a background thread; 0: none, no thread
  // Optional extra work on each finished batch, run on the preparing thread (e.g. attaching
  // cached teacher outputs). An exception thrown here is rethrown by TrainStream::next().
  std::function<void(Batch& batch, int64_t step)> batch_hook;

  // Keys: batch_size, shuffle, prefetch, augment (a section, see AugmentOptions). The seed is
  // left to the caller (one --seed drives every generator).
  static LoaderOptions from_config(const ConfigSection& cfg);
};

// Epoch `epoch`'s sample order: a permutation from Rng(seed, epoch), or 0..n-1 unshuffled.
std::vector<int64_t> epoch_order(int64_t dataset_size, uint64_t seed, int64_t epoch, bool shuffle);

// On-disk datasets (TensorDataset::files) decode each sample when its batch is built and cut
// random crops of FileDataset::crop_size (data/scale_crop.h) with the same per-sample seeds.

// Batch `step` of the stream (no prefetching): epoch = step / steps_per_epoch, positions
// [k * B, (k + 1) * B) of that epoch's order, k = step % steps_per_epoch (drop_last).
Batch make_train_batch(const TensorDataset& dataset, const LoaderOptions& options, int64_t step);

// Samples [start, start + count) without augmentation; count is clipped at the dataset's end.
// On-disk datasets: images rescaled by FileDataset::resize, targets at full resolution (so
// images and targets differ in size when resize != 1); DataError when the samples differ in size.
Batch make_eval_batch(const TensorDataset& dataset, int64_t start, int64_t count);
Batch make_full_resolution_batch(const FileDataset& files, const std::vector<int64_t>& indices);

class TrainStream {
 public:
  TrainStream(std::shared_ptr<const TensorDataset> dataset, LoaderOptions options,
              int64_t start_step = 0);
  ~TrainStream();
  TrainStream(const TrainStream&) = delete;
  TrainStream& operator=(const TrainStream&) = delete;

  // The batch for step(), then advances. Rethrows an exception raised while preparing it.
  Batch next();
  int64_t step() const { return next_step_; }
  int64_t steps_per_epoch() const { return steps_per_epoch_; }

 private:
  struct Item {
    Batch batch;
    std::exception_ptr error;
  };
  Batch build(int64_t step);
  void worker_loop(int64_t first_step);

  std::shared_ptr<const TensorDataset> dataset_;
  LoaderOptions options_;
  int64_t steps_per_epoch_ = 0;
  int64_t next_step_ = 0;
  // Cached order of one epoch (each thread that builds batches keeps its own).
  int64_t cached_epoch_ = -1;
  std::vector<int64_t> cached_order_;

  std::mutex mutex_;
  std::condition_variable queue_changed_;
  std::deque<Item> queue_;
  bool stopping_ = false;
  std::exception_ptr failed_;
  std::thread worker_;
};

}  // namespace distillery
