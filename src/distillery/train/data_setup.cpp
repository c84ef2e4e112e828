#include "distillery/train/data_setup.h"

#include "distillery/data/fashion_mnist.h"
#include "distillery/data/fashion_seg.h"

namespace distillery {

DataSplits load_data_splits(const DataSpec& spec) {
  DataSplits splits;
  if (spec.benchmark == "fashion-mnist") {
    splits.train = std::make_shared<TensorDataset>(load_fashion_mnist(spec.mnist_dir, "train"));
    splits.val = std::make_shared<TensorDataset>(load_fashion_mnist(spec.mnist_dir, "test"));
  } else {
    splits.train = std::make_shared<TensorDataset>(make_fashion_seg(spec.fashion_seg, /*train=*/true));
    splits.val = std::make_shared<TensorDataset>(make_fashion_seg(spec.fashion_seg, /*train=*/false));
  }
  return splits;
}

LoaderOptions train_loader_options(const Recipe& recipe) {
  LoaderOptions loader;
  loader.batch_size = recipe.train.batch_size;
  loader.augment = recipe.data.augment;
  loader.seed = recipe.seed;
  loader.prefetch = recipe.train.prefetch;
  return loader;
}

}  // namespace distillery
