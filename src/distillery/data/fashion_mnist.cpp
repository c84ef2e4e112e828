#include "distillery/data/fashion_mnist.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include "distillery/core/error.h"
#include "distillery/data/idx.h"

namespace distillery {

const std::vector<std::string>& fashion_mnist_class_names() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                                 "Coat",        "Sandal",  "Shirt",    "Sneaker",
                                                 "Bag",         "Ankle boot"};
  return names;
}

FashionMnistSplit read_fashion_mnist_split(const std::string& dir, const std::string& split) {
  std::string prefix;
  if (split == "train") {
    prefix = "train";
  } else if (split == "test") {
    prefix = "t10k";
  } else {
    throw ConfigError(fmt::format("Fashion-MNIST split '{}': expected 'train' or 'test'", split));
  }
  std::string images_path = dir + "/" + prefix + "-images-idx3-ubyte.gz";
  std::string labels_path = dir + "/" + prefix + "-labels-idx1-ubyte.gz";
  FashionMnistSplit out;
  out.images = read_idx_images(images_path);
  out.labels = read_idx_labels(labels_path);
  if (out.images.size(1) != kFashionMnistSide || out.images.size(2) != kFashionMnistSide)
    throw DataError(fmt::format("IDX file '{}': images are {}x{}, expected 28x28", images_path,
                                out.images.size(1), out.images.size(2)));
  if (out.labels.size(0) != out.images.size(0))
    throw DataError(fmt::format("IDX file '{}': {} labels for {} images in '{}'", labels_path,
                                out.labels.size(0), out.images.size(0), images_path));
  int64_t max_label = out.labels.max().item<int64_t>();
  if (max_label >= kFashionMnistClasses)
    throw DataError(fmt::format("IDX file '{}': label {} out of range 0..9", labels_path, max_label));
  return out;
}

TensorDataset load_fashion_mnist(const std::string& dir, const std::string& split) {
  FashionMnistSplit raw = read_fashion_mnist_split(dir, split);
  TensorDataset dataset;
  dataset.images = raw.images.unsqueeze(1).contiguous();
  dataset.targets = raw.labels.to(torch::kLong);
  dataset.num_classes = kFashionMnistClasses;
  dataset.class_names = fashion_mnist_class_names();
  dataset.task = Task::Classification;
  return dataset;
}

}  // namespace distillery
