#include <gtest/gtest.h>
#include <torch/torch.h>
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include <unistd.h>

#include "distillery/core/error.h"
#include "distillery/data/fashion_mnist.h"
#include "distillery/data/idx.h"

using namespace distillery;
namespace fs = std::filesystem;

namespace {

// Values computed independently with Python's gzip module from Debian's files.
constexpr int64_t kTrainFirstImageSum = 76247;
constexpr int64_t kTrainSecondImageSum = 84598;
constexpr int64_t kTestFirstImageSum = 33456;

class IdxFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / fs::path("distillery_idx_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  static std::vector<uint8_t> header(uint32_t magic, const std::vector<uint32_t>& dims) {
    std::vector<uint8_t> bytes;
    auto put = [&](uint32_t v) {
      for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(uint8_t(v >> shift));
    };
    put(magic);
    for (uint32_t d : dims) put(d);
    return bytes;
  }

  std::string write_gz(const std::string& name, const std::vector<uint8_t>& bytes) const {
    std::string file = path(name);
    gzFile out = gzopen(file.c_str(), "wb");
    EXPECT_NE(out, nullptr);
    if (!bytes.empty()) gzwrite(out, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(out);
    return file;
  }

  std::string write_raw(const std::string& name, const std::vector<uint8_t>& bytes) const {
    std::string file = path(name);
    std::ofstream(file, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return file;
  }

  // Expects a DataError whose message names the file and contains `problem`.
  static void expect_data_error(const std::function<void()>& action, const std::string& file,
                                const std::string& problem) {
    try {
      action();
      FAIL() << "expected DataError for " << file;
    } catch (const DataError& e) {
      std::string message = e.what();
      EXPECT_NE(message.find(fs::path(file).filename().string()), std::string::npos) << message;
      EXPECT_NE(message.find(problem), std::string::npos) << message;
      EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
    }
  }

  fs::path dir_;
};

std::vector<uint8_t> concat(std::vector<uint8_t> a, const std::vector<uint8_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

TEST(FashionMnist, RealTrainSplit) {
  FashionMnistSplit train = read_fashion_mnist_split(kFashionMnistDir, "train");
  ASSERT_EQ(train.images.sizes(), (std::vector<int64_t>{60000, 28, 28}));
  ASSERT_EQ(train.labels.sizes(), (std::vector<int64_t>{60000}));
  std::vector<int64_t> first_labels{9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
  for (int i = 0; i < 10; ++i) EXPECT_EQ(train.labels[i].item<int64_t>(), first_labels[i]) << i;
  EXPECT_EQ(train.images[0].sum().item<int64_t>(), kTrainFirstImageSum);
  EXPECT_EQ(train.images[1].sum().item<int64_t>(), kTrainSecondImageSum);
  EXPECT_EQ(fashion_mnist_class_names()[train.labels[0].item<int64_t>()], "Ankle boot");
  // Balanced: 6000 images per class.
  torch::Tensor counts = torch::bincount(train.labels.to(torch::kLong));
  EXPECT_TRUE(torch::all(counts == 6000).item<bool>());
}

TEST(FashionMnist, ClassificationDatasetFromTestSplit) {
  TensorDataset test = load_fashion_mnist(kFashionMnistDir, "test");
  EXPECT_EQ(test.size(), 10000);
  EXPECT_EQ(test.images.sizes(), (std::vector<int64_t>{10000, 1, 28, 28}));
  EXPECT_EQ(test.images.scalar_type(), torch::kUInt8);
  EXPECT_EQ(test.targets.scalar_type(), torch::kLong);
  EXPECT_EQ(test.task, Task::Classification);
  EXPECT_EQ(test.num_classes, 10);
  ASSERT_EQ(test.class_names.size(), 10u);
  EXPECT_EQ(test.class_names[0], "T-shirt/top");
  EXPECT_EQ(test.class_names[9], "Ankle boot");
  std::vector<int64_t> first_labels{9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
  for (int i = 0; i < 10; ++i) EXPECT_EQ(test.targets[i].item<int64_t>(), first_labels[i]) << i;
  EXPECT_EQ(test.images[0].sum().item<int64_t>(), kTestFirstImageSum);
}

TEST(FashionMnist, UnknownSplitIsConfigError) {
  EXPECT_THROW(load_fashion_mnist(kFashionMnistDir, "validation"), ConfigError);
}

TEST_F(IdxFiles, ReadsSmallHandWrittenFiles) {
  std::vector<uint8_t> pixels;
  for (int i = 0; i < 2 * 3 * 4; ++i) pixels.push_back(uint8_t(i * 10));
  std::string images = write_gz("images.gz", concat(header(kIdxImagesMagic, {2, 3, 4}), pixels));
  std::string labels = write_gz("labels.gz", concat(header(kIdxLabelsMagic, {2}), {7, 3}));
  IdxArray array = read_idx_gz(images, kIdxImagesMagic);
  EXPECT_EQ(array.dims, (std::vector<int64_t>{2, 3, 4}));
  ASSERT_EQ(array.data.sizes(), (std::vector<int64_t>{2, 3, 4}));
  // Row-major: element (n, y, x) is byte n*12 + y*4 + x.
  EXPECT_EQ(array.data[1][2][3].item<int64_t>(), (12 + 8 + 3) * 10);
  EXPECT_EQ(array.data[0][1][0].item<int64_t>(), 4 * 10);
  torch::Tensor label_tensor = read_idx_labels(labels);
  ASSERT_EQ(label_tensor.numel(), 2);
  EXPECT_EQ(label_tensor[0].item<int64_t>(), 7);
  EXPECT_EQ(label_tensor[1].item<int64_t>(), 3);
}

TEST_F(IdxFiles, RejectsMalformedFiles) {
  std::vector<uint8_t> pixels(2 * 3 * 4, 1);
  std::string truncated =
      write_gz("truncated.gz", concat(header(kIdxImagesMagic, {2, 3, 4}), std::vector<uint8_t>(23, 1)));
  expect_data_error([&] { read_idx_images(truncated); }, truncated, "truncated");

  std::string trailing = write_gz("trailing.gz", concat(concat(header(kIdxImagesMagic, {2, 3, 4}), pixels), {0}));
  expect_data_error([&] { read_idx_images(trailing); }, trailing, "trailing bytes");

  std::string wrong_magic = write_gz("wrong_magic.gz", concat(header(kIdxLabelsMagic, {24}), pixels));
  expect_data_error([&] { read_idx_images(wrong_magic); }, wrong_magic, "wrong magic");

  // 60000 x 60000 x 60000 bytes: must be refused before any allocation.
  std::string huge = write_gz("huge.gz", header(kIdxImagesMagic, {60000, 60000, 60000}));
  expect_data_error([&] { read_idx_images(huge); }, huge, "declared size exceeds");

  std::string zero = write_gz("zero.gz", header(kIdxImagesMagic, {0, 28, 28}));
  expect_data_error([&] { read_idx_images(zero); }, zero, "is zero");

  std::string short_header = write_gz("short_header.gz", {0, 0, 8});
  expect_data_error([&] { read_idx_images(short_header); }, short_header, "truncated");

  std::string dims_cut = write_gz("dims_cut.gz", {0, 0, 8, 3, 0, 0, 0, 2, 0, 0});
  expect_data_error([&] { read_idx_images(dims_cut); }, dims_cut, "truncated");

  std::string missing = path("missing-images-idx3-ubyte.gz");
  expect_data_error([&] { read_idx_images(missing); }, missing, "cannot be opened");

  std::string plain = write_raw("plain.idx", concat(header(kIdxImagesMagic, {2, 3, 4}), pixels));
  expect_data_error([&] { read_idx_images(plain); }, plain, "not a gzip file");

  std::string empty = write_raw("empty.gz", {});
  expect_data_error([&] { read_idx_images(empty); }, empty, "not a gzip file");
}

TEST_F(IdxFiles, RejectsCutAndCorruptGzipStreams) {
  std::vector<uint8_t> pixels;
  for (int i = 0; i < 5000; ++i) pixels.push_back(uint8_t((i * 7919) % 251));
  std::string good = write_gz("good.gz", concat(header(kIdxImagesMagic, {5, 25, 40}), pixels));
  std::ifstream in(good, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 100u);

  std::string cut = write_raw("cut.gz", std::vector<uint8_t>(bytes.begin(), bytes.begin() + bytes.size() / 2));
  expect_data_error([&] { read_idx_images(cut); }, cut, "truncated");

  // Only the 8-byte gzip trailer (CRC and length) missing: still a truncated file.
  std::string no_trailer = write_raw("no_trailer.gz", std::vector<uint8_t>(bytes.begin(), bytes.end() - 8));
  expect_data_error([&] { read_idx_images(no_trailer); }, no_trailer, "truncated");

  std::vector<uint8_t> flipped = bytes;
  flipped[bytes.size() - 6] ^= 0xff;  // inside the CRC
  std::string bad_crc = write_raw("bad_crc.gz", flipped);
  expect_data_error([&] { read_idx_images(bad_crc); }, bad_crc, "corrupt");
}

TEST_F(IdxFiles, SplitWithMismatchedCountsNamesLabelFile) {
  std::vector<uint8_t> pixels(3 * 28 * 28, 5);
  write_gz("t10k-images-idx3-ubyte.gz", concat(header(kIdxImagesMagic, {3, 28, 28}), pixels));
  std::string labels = write_gz("t10k-labels-idx1-ubyte.gz", concat(header(kIdxLabelsMagic, {2}), {1, 2}));
  expect_data_error([&] { read_fashion_mnist_split(dir_.string(), "test"); }, labels, "2 labels for 3 images");
  write_gz("t10k-labels-idx1-ubyte.gz", concat(header(kIdxLabelsMagic, {3}), {1, 2, 10}));
  expect_data_error([&] { read_fashion_mnist_split(dir_.string(), "test"); }, labels, "out of range");
  write_gz("t10k-labels-idx1-ubyte.gz", concat(header(kIdxLabelsMagic, {3}), {1, 2, 9}));
  TensorDataset small = load_fashion_mnist(dir_.string(), "test");
  EXPECT_EQ(small.size(), 3);
  EXPECT_EQ(small.targets[2].item<int64_t>(), 9);
  EXPECT_EQ(small.images.sum().item<int64_t>(), 3 * 28 * 28 * 5);
}
