#include "distillery/train/checkpoint.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "distillery/core/error.h"

namespace distillery {
namespace {

constexpr char kMagic[8] = {'D', 'S', 'T', 'L', 'C', 'K', 'P', 'T'};
constexpr uint32_t kVersion = 1;
constexpr uint64_t kMaxSection = uint64_t(1) << 36;  // 64 GiB: larger means a corrupt header

template <typename T> void put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(T));
}

template <typename T> T take(const std::string& data, size_t& offset, const std::string& path) {
  if (offset + sizeof(T) > data.size())
    throw Error(fmt::format("checkpoint '{}': truncated", path));
  T value;
  std::memcpy(&value, data.data() + offset, sizeof(T));
  offset += sizeof(T);
  return value;
}

uint32_t checksum(const std::string& a, const std::string& b) {
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32_z(crc, reinterpret_cast<const Bytef*>(a.data()), a.size());
  crc = crc32_z(crc, reinterpret_cast<const Bytef*>(b.data()), b.size());
  return static_cast<uint32_t>(crc);
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw Error(fmt::format("checkpoint '{}': cannot write ({})", path, std::strerror(errno)));
  size_t written = 0;
  while (written < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n <= 0) {
      ::close(fd);
      ::unlink(tmp.c_str());
      throw Error(fmt::format("checkpoint '{}': write failed ({})", path, std::strerror(errno)));
    }
    written += static_cast<size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    throw Error(fmt::format("checkpoint '{}': rename failed ({})", path, std::strerror(errno)));
  }
}

std::map<std::string, std::vector<int64_t>> tensor_shapes(const torch::nn::Module& module) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& item : module.named_parameters()) shapes[item.key()] = item.value().sizes().vec();
  for (const auto& item : module.named_buffers()) shapes[item.key()] = item.value().sizes().vec();
  return shapes;
}

struct CheckpointFile {
  CheckpointMeta meta;
  std::string payload;
};

CheckpointFile read_verified(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("checkpoint '{}': cannot be opened", path));
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.size() < sizeof(kMagic) || std::memcmp(data.data(), kMagic, sizeof(kMagic)) != 0)
    throw Error(fmt::format("checkpoint '{}': not a Distillery checkpoint (bad magic)", path));
  size_t offset = sizeof(kMagic);
  auto version = take<uint32_t>(data, offset, path);
  if (version != kVersion)
    throw Error(fmt::format("checkpoint '{}': unsupported version {}", path, version));
  auto meta_size = take<uint64_t>(data, offset, path);
  auto payload_size = take<uint64_t>(data, offset, path);
  if (meta_size > kMaxSection || payload_size > kMaxSection ||
      offset + meta_size + payload_size + sizeof(uint32_t) != data.size())
    throw Error(fmt::format("checkpoint '{}': truncated or corrupt (size mismatch)", path));
  std::string meta_text = data.substr(offset, meta_size);
  std::string payload = data.substr(offset + meta_size, payload_size);
  offset += meta_size + payload_size;
  auto stored = take<uint32_t>(data, offset, path);
  if (stored != checksum(meta_text, payload))
    throw Error(fmt::format("checkpoint '{}': checksum mismatch (corrupt file)", path));
  CheckpointFile file;
  try {
    auto j = nlohmann::json::parse(meta_text);
    file.meta.step = j.at("step").get<int64_t>();
    file.meta.best_metric = j.at("best_metric").get<double>();
    file.meta.model_name = j.at("model_name").get<std::string>();
    file.meta.num_classes = j.at("num_classes").get<int64_t>();
    file.meta.config_yaml = j.at("config").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("checkpoint '{}': bad metadata ({})", path, e.what()));
  }
  file.payload = std::move(payload);
  return file;
}

}  // namespace

void save_checkpoint(const std::string& path, const CheckpointMeta& meta, const CheckpointParts& parts) {
  TORCH_CHECK(parts.model != nullptr, "save_checkpoint needs a model");
  torch::serialize::OutputArchive archive;
  torch::serialize::OutputArchive model_archive;
  parts.model->save(model_archive);
  archive.write("model", model_archive);
  if (parts.distillers) {
    torch::serialize::OutputArchive distill_archive;
    parts.distillers->save(distill_archive);
    archive.write("distillers", distill_archive);
  }
  if (parts.optimizer) {
    torch::serialize::OutputArchive optimizer_archive;
    parts.optimizer->save(optimizer_archive);
    archive.write("optimizer", optimizer_archive);
  }
  if (parts.rng) archive.write("rng", at::detail::getDefaultCPUGenerator().get_state());
  std::ostringstream payload_stream;
  archive.save_to(payload_stream);
  std::string payload = payload_stream.str();

  nlohmann::json j = {{"step", meta.step},
                      {"best_metric", meta.best_metric},
                      {"model_name", meta.model_name},
                      {"num_classes", meta.num_classes},
                      {"config", meta.config_yaml}};
  std::string meta_text = j.dump();

  std::string bytes(kMagic, sizeof(kMagic));
  put<uint32_t>(bytes, kVersion);
  put<uint64_t>(bytes, meta_text.size());
  put<uint64_t>(bytes, payload.size());
  bytes += meta_text;
  bytes += payload;
  put<uint32_t>(bytes, checksum(meta_text, payload));
  write_file_atomically(path, bytes);
}

CheckpointMeta read_checkpoint_meta(const std::string& path) { return read_verified(path).meta; }

CheckpointMeta load_checkpoint(const std::string& path, const CheckpointParts& parts) {
  CheckpointFile file = read_verified(path);
  try {
    torch::serialize::InputArchive archive;
    std::istringstream payload_stream(file.payload);
    archive.load_from(payload_stream);
    auto read_into = [&](const char* key, torch::nn::Module* module) {
      if (!module) return;
      torch::serialize::InputArchive nested;
      if (!archive.try_read(key, nested))
        throw Error(fmt::format("checkpoint '{}': has no '{}' section", path, key));
      // Module::load replaces tensors without comparing shapes: check them ourselves.
      auto shapes = tensor_shapes(*module);
      module->load(nested);
      for (const auto& [name, shape] : tensor_shapes(*module)) {
        if (shapes.at(name) != shape)
          throw Error(fmt::format("checkpoint '{}': '{}.{}' has shape {}, the model expects {}", path,
                                  key, name, fmt::join(shape, "x"), fmt::join(shapes.at(name), "x")));
      }
    };
    read_into("model", parts.model);
    read_into("distillers", parts.distillers);
    if (parts.optimizer) {
      torch::serialize::InputArchive nested;
      if (!archive.try_read("optimizer", nested))
        throw Error(fmt::format("checkpoint '{}': has no optimizer state", path));
      parts.optimizer->load(nested);
    }
    if (parts.rng) {
      torch::Tensor state;
      if (archive.try_read("rng", state)) {
        at::Generator generator = at::detail::getDefaultCPUGenerator();  // shares the global state
        generator.set_state(state);
      }
    }
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    throw Error(fmt::format("checkpoint '{}': does not match the model ({})", path,
                            what.substr(0, what.find('\n'))));
  }
  return file.meta;
}

}  // namespace distillery
