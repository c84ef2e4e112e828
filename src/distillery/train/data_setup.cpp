#include "distillery/train/data_setup.h"

#include "distillery/data/ade20k.h"
#include "distillery/data/cityscapes.h"
#include "distillery/data/fashion_mnist.h"
#include "distillery/data/fashion_seg.h"
#include "distillery/data/folder_dataset.h"
#include "distillery/data/pascal_voc.h"

namespace distillery {

namespace {

// One split of an on-disk dataset, with the recipe's crop, rescale and inference settings.
std::shared_ptr<const TensorDataset> open_on_disk(const DataSpec& spec, const std::string& split) {
  TensorDataset dataset;
  if (spec.benchmark == "cityscapes") dataset = open_cityscapes(spec.root, split);
  else if (spec.benchmark == "voc") dataset = open_pascal_voc(spec.root, split, spec.label_dir);
  else if (spec.benchmark == "ade20k") dataset = open_ade20k(spec.root, split);
  else dataset = open_folder_dataset(spec.root, split);
  auto files = std::make_shared<FileDataset>(*dataset.files);
  files->crop_size = spec.crop_size;
  files->resize = spec.resize;
  files->inference = spec.inference;
  dataset.files = std::move(files);
  return std::make_shared<TensorDataset>(std::move(dataset));
}

}  // namespace

DataSplits load_data_splits(const DataSpec& spec) {
  DataSplits splits;
  if (spec.on_disk()) {
    splits.train = open_on_disk(spec, spec.train_split);
    splits.val = open_on_disk(spec, spec.val_split);
  } else if (spec.benchmark == "fashion-mnist") {
    splits.train = std::make_shared<TensorDataset>(load_fashion_mnist(spec.mnist_dir, "train"));
    splits.val = std::make_shared<TensorDataset>(load_fashion_mnist(spec.mnist_dir, "test"));
  } else {
    splits.train = std::make_shared<TensorDataset>(make_fashion_seg(spec.fashion_seg, /*train=*/true));
    splits.val = std::make_shared<TensorDataset>(make_fashion_seg(spec.fashion_seg, /*train=*/false));
  }
  return splits;
}

std::vector<std::string> class_names_for(const DataSpec& spec) {
  if (spec.benchmark == "cityscapes") return cityscapes_class_names();
  if (spec.benchmark == "voc") return voc_class_names();
  if (spec.benchmark == "ade20k") return ade20k_class_names();
  if (spec.benchmark == "folder") return read_folder_classes(spec.root + "/classes.txt").names;
  if (spec.benchmark == "fashion-seg") return fashion_seg_class_names();
  return fashion_mnist_class_names();
}

std::vector<Rgb> palette_for(const DataSpec& spec) {
  if (spec.benchmark == "cityscapes") return dataset_palette(cityscapes_colours());
  if (spec.benchmark == "voc") {
    std::vector<Rgb> colours = voc_palette();
    colours.resize(21);
    return dataset_palette(colours);
  }
  if (spec.benchmark == "folder") return dataset_palette(read_folder_classes(spec.root + "/classes.txt").colours);
  return label_palette_list();
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
