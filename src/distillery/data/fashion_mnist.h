// Fashion-MNIST as shipped by Debian's dataset-fashion-mnist: 70,000 grey 28x28 images in
// ten classes, as IDX .gz files.
#pragma once
#include <string>
#include <vector>

#include "distillery/data/tensor_dataset.h"

namespace distillery {

constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
constexpr int64_t kFashionMnistSide = 28;
constexpr int64_t kFashionMnistClasses = 10;

// T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot.
const std::vector<std::string>& fashion_mnist_class_names();

// The raw split: images uint8 [N, 28, 28], labels uint8 [N] in 0..9.
struct FashionMnistSplit {
  torch::Tensor images;
  torch::Tensor labels;
};

// split: "train" (60,000) or "test" (10,000). Throws DataError naming the file for a missing
// or malformed file, ConfigError for an unknown split name.
FashionMnistSplit read_fashion_mnist_split(const std::string& dir, const std::string& split);

// The classification dataset: images uint8 [N, 1, 28, 28], targets int64 [N], 10 classes.
TensorDataset load_fashion_mnist(const std::string& dir, const std::string& split);

}  // namespace distillery
