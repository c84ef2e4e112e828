#include "distillery/data/loader.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "distillery/core/config.h"
#include "distillery/core/error.h"
#include "distillery/data/scale_crop.h"

namespace distillery {
namespace {

constexpr uint64_t kShuffleTag = 0x5348554646ULL;  // keeps order and augmentation streams apart
constexpr uint64_t kAugmentTag = 0x4155474dULL;

void check_dataset(const TensorDataset& dataset) {
  if (dataset.files) {
    TORCH_CHECK(dataset.task == Task::Segmentation && dataset.files->size() > 0,
                "on-disk datasets must be non-empty segmentation datasets");
    return;
  }
  TORCH_CHECK(dataset.images.defined() && dataset.images.dim() == 4 &&
                  dataset.images.scalar_type() == torch::kUInt8,
              "dataset images must be uint8 [N, C, H, W]");
  const int64_t n = dataset.images.size(0);
  if (dataset.task == Task::Segmentation) {
    TORCH_CHECK(dataset.targets.defined() && dataset.targets.dim() == 3 &&
                    dataset.targets.scalar_type() == torch::kUInt8 &&
                    dataset.targets.size(0) == n &&
                    dataset.targets.size(1) == dataset.images.size(2) &&
                    dataset.targets.size(2) == dataset.images.size(3),
                "segmentation targets must be uint8 [N, H, W] matching the images");
  } else {
    TORCH_CHECK(dataset.targets.defined() && dataset.targets.dim() == 1 &&
                    dataset.targets.size(0) == n,
                "classification targets must be [N] matching the images");
  }
}

// On-disk samples: decoded here (on the prefetching thread), cut to the crop size.
Batch assemble_files(const FileDataset& files, const std::vector<int64_t>& indices,
                     const AugmentOptions& augment, uint64_t seed, int64_t epoch) {
  std::vector<torch::Tensor> images, labels;
  for (int64_t sample : indices) {
    auto [image, label] = files.load(sample);
    Rng rng(mix_seed({seed, kAugmentTag, static_cast<uint64_t>(epoch), static_cast<uint64_t>(sample)}));
    auto [image_crop, label_crop] = random_scale_crop(image, label, files.resize, files.crop_size, augment, rng);
    images.push_back(image_crop);
    labels.push_back(label_crop);
  }
  Batch out;
  out.images = to_model_input(torch::stack(images));
  out.targets = torch::stack(labels).to(torch::kLong);
  out.index = torch::tensor(indices, torch::kLong);
  return out;
}

// Gathers the given samples, optionally augmented, into one batch.
Batch assemble(const TensorDataset& dataset, const std::vector<int64_t>& indices,
               const AugmentOptions* augment, uint64_t seed, int64_t epoch) {
  if (dataset.files) {
    AugmentOptions options = augment ? *augment : AugmentOptions{};
    if (!augment) options.enabled = false;
    return assemble_files(*dataset.files, indices, options, seed, epoch);
  }
  torch::Tensor images = dataset.images.contiguous();
  const int64_t batch = static_cast<int64_t>(indices.size());
  const int64_t channels = images.size(1), height = images.size(2), width = images.size(3);
  const int64_t image_numel = channels * height * width, plane = height * width;
  const bool segmentation = dataset.task == Task::Segmentation;

  torch::Tensor index = torch::tensor(indices, torch::kLong);
  torch::Tensor batch_images = torch::empty({batch, channels, height, width}, torch::kUInt8);
  torch::Tensor batch_labels;
  torch::Tensor labels = segmentation ? dataset.targets.contiguous() : torch::Tensor();
  if (segmentation) batch_labels = torch::empty({batch, height, width}, torch::kUInt8);

  const uint8_t* src_images = images.data_ptr<uint8_t>();
  const uint8_t* src_labels = segmentation ? labels.data_ptr<uint8_t>() : nullptr;
  uint8_t* dst_images = batch_images.data_ptr<uint8_t>();
  uint8_t* dst_labels = segmentation ? batch_labels.data_ptr<uint8_t>() : nullptr;
  for (int64_t i = 0; i < batch; ++i) {
    const int64_t sample = indices[i];
    const uint8_t* image = src_images + sample * image_numel;
    const uint8_t* label = segmentation ? src_labels + sample * plane : nullptr;
    uint8_t* image_out = dst_images + i * image_numel;
    uint8_t* label_out = segmentation ? dst_labels + i * plane : nullptr;
    if (augment && augment->enabled) {
      uint64_t sample_seed = mix_seed({seed, kAugmentTag, static_cast<uint64_t>(epoch),
                                       static_cast<uint64_t>(sample)});
      augment_sample(*augment, dataset.task, sample_seed, image, channels, height, width, label,
                     image_out, label_out);
    } else {
      std::memcpy(image_out, image, static_cast<size_t>(image_numel));
      if (segmentation) std::memcpy(label_out, label, static_cast<size_t>(plane));
    }
  }
  Batch out;
  out.images = to_model_input(batch_images);
  out.targets = segmentation ? batch_labels.to(torch::kLong)
                             : dataset.targets.index_select(0, index).to(torch::kLong);
  out.index = index;
  return out;
}

int64_t checked_steps_per_epoch(const TensorDataset& dataset, const LoaderOptions& options) {
  if (options.batch_size < 1)
    throw ConfigError(fmt::format("loader: batch_size must be positive, got {}", options.batch_size));
  if (dataset.size() < options.batch_size)
    throw ConfigError(fmt::format("loader: batch_size {} exceeds the dataset size {}",
                                  options.batch_size, dataset.size()));
  return dataset.size() / options.batch_size;
}

}  // namespace

Batch make_full_resolution_batch(const FileDataset& files, const std::vector<int64_t>& indices) {
  std::vector<torch::Tensor> images, labels;
  for (int64_t sample : indices) {
    auto [image, label] = files.load(sample);
    const int64_t height = std::max<int64_t>(1, std::llround(image.size(1) * files.resize));
    const int64_t width = std::max<int64_t>(1, std::llround(image.size(2) * files.resize));
    images.push_back(resize_image(image, height, width));
    labels.push_back(label);
    if (images.back().sizes() != images.front().sizes() || labels.back().sizes() != labels.front().sizes())
      throw DataError(fmt::format("{}: samples {} and {} differ in size and cannot share a batch "
                                  "(evaluate with batch size 1)", files.description, indices.front(), sample));
  }
  Batch out;
  out.images = to_model_input(torch::stack(images));
  out.targets = torch::stack(labels).to(torch::kLong);
  out.index = torch::tensor(indices, torch::kLong);
  return out;
}

torch::Tensor to_model_input(const torch::Tensor& uint8_images) {
  TORCH_CHECK(uint8_images.scalar_type() == torch::kUInt8, "to_model_input expects uint8 images");
  // (x / 255 - mean) / std == x * (1 / (255 std)) - mean / std
  return uint8_images.to(torch::kFloat)
      .mul_(1.0 / (255.0 * kInputStd))
      .sub_(kInputMean / kInputStd);
}

torch::Tensor from_model_input(const torch::Tensor& model_input) {
  return (model_input.to(torch::kFloat) * kInputStd + kInputMean)
      .mul_(255.0)
      .round_()
      .clamp_(0, 255)
      .to(torch::kUInt8);
}

LoaderOptions LoaderOptions::from_config(const ConfigSection& cfg) {
  LoaderOptions options;
  options.batch_size = cfg.get<int64_t>("batch_size", options.batch_size);
  cfg.check(options.batch_size >= 1, "batch_size", "must be positive");
  options.shuffle = cfg.get<bool>("shuffle", options.shuffle);
  options.prefetch = cfg.get<int64_t>("prefetch", options.prefetch);
  cfg.check(options.prefetch >= 0 && options.prefetch <= 256, "prefetch", "must be in [0, 256]");
  options.augment = AugmentOptions::from_config(cfg.section("augment"));
  return options;
}

std::vector<int64_t> epoch_order(int64_t dataset_size, uint64_t seed, int64_t epoch, bool shuffle) {
  if (!shuffle) {
    std::vector<int64_t> order(static_cast<size_t>(dataset_size));
    for (int64_t i = 0; i < dataset_size; ++i) order[i] = i;
    return order;
  }
  Rng rng(mix_seed({seed, kShuffleTag, static_cast<uint64_t>(epoch)}));
  return random_permutation(dataset_size, rng);
}

Batch make_train_batch(const TensorDataset& dataset, const LoaderOptions& options, int64_t step) {
  check_dataset(dataset);
  const int64_t steps = checked_steps_per_epoch(dataset, options);
  const int64_t epoch = step / steps, position = (step % steps) * options.batch_size;
  std::vector<int64_t> order = epoch_order(dataset.size(), options.seed, epoch, options.shuffle);
  std::vector<int64_t> indices(order.begin() + position, order.begin() + position + options.batch_size);
  Batch batch = assemble(dataset, indices, &options.augment, options.seed, epoch);
  batch.step = step;
  if (options.batch_hook) options.batch_hook(batch, step);
  return batch;
}

Batch make_eval_batch(const TensorDataset& dataset, int64_t start, int64_t count) {
  check_dataset(dataset);
  if (start < 0 || start >= dataset.size() || count < 1)
    throw std::out_of_range(fmt::format("make_eval_batch: samples [{}, {} + {}) outside a dataset of {}",
                                        start, start, count, dataset.size()));
  count = std::min(count, dataset.size() - start);
  std::vector<int64_t> indices(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) indices[i] = start + i;
  if (dataset.files) return make_full_resolution_batch(*dataset.files, indices);
  return assemble(dataset, indices, nullptr, 0, 0);
}

TrainStream::TrainStream(std::shared_ptr<const TensorDataset> dataset, LoaderOptions options,
                         int64_t start_step)
    : dataset_(std::move(dataset)), options_(std::move(options)), next_step_(start_step) {
  TORCH_CHECK(dataset_, "TrainStream: null dataset");
  TORCH_CHECK(start_step >= 0, "TrainStream: negative start step");
  check_dataset(*dataset_);
  options_.augment.validate();
  steps_per_epoch_ = checked_steps_per_epoch(*dataset_, options_);
  if (options_.prefetch > 0) worker_ = std::thread(&TrainStream::worker_loop, this, start_step);
}

TrainStream::~TrainStream() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  queue_changed_.notify_all();
  if (worker_.joinable()) worker_.join();
}

Batch TrainStream::build(int64_t step) {
  const int64_t epoch = step / steps_per_epoch_;
  const int64_t position = (step % steps_per_epoch_) * options_.batch_size;
  if (epoch != cached_epoch_) {
    cached_order_ = epoch_order(dataset_->size(), options_.seed, epoch, options_.shuffle);
    cached_epoch_ = epoch;
  }
  std::vector<int64_t> indices(cached_order_.begin() + position,
                               cached_order_.begin() + position + options_.batch_size);
  Batch batch = assemble(*dataset_, indices, &options_.augment, options_.seed, epoch);
  batch.step = step;
  if (options_.batch_hook) options_.batch_hook(batch, step);
  return batch;
}

void TrainStream::worker_loop(int64_t first_step) {
  for (int64_t step = first_step;; ++step) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      queue_changed_.wait(lock, [&] {
        return stopping_ || static_cast<int64_t>(queue_.size()) < options_.prefetch;
      });
      if (stopping_) return;
    }
    Item item;
    try {
      item.batch = build(step);
    } catch (...) {
      item.error = std::current_exception();
    }
    bool failed = static_cast<bool>(item.error);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(item));
    }
    queue_changed_.notify_all();
    if (failed) return;  // the consumer rethrows; nothing after a failure is valid
  }
}

Batch TrainStream::next() {
  if (failed_) std::rethrow_exception(failed_);
  if (!worker_.joinable()) {
    Batch batch = build(next_step_);  // an exception leaves the step where it was
    ++next_step_;
    return batch;
  }
  Item item;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    queue_changed_.wait(lock, [&] { return !queue_.empty(); });
    item = std::move(queue_.front());
    queue_.pop_front();
  }
  queue_changed_.notify_all();
  if (item.error) {
    failed_ = item.error;
    std::rethrow_exception(failed_);
  }
  ++next_step_;
  return item.batch;
}

}  // namespace distillery
