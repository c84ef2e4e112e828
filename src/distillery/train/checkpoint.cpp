#include "distillery/train/checkpoint.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
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

// Test hook for the crash-resume check: sleep this many milliseconds halfway through writing
// the temporary file, so that a kill can be aimed at a half-written checkpoint.
int write_delay_ms() {
  const char* value = std::getenv("DISTILLERY_TEST_CHECKPOINT_WRITE_DELAY_MS");
  return value ? std::max(0, std::atoi(value)) : 0;
}

void sync_directory_of(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // durability of the rename is best effort; the data itself is synced
  ::fsync(fd);
  ::close(fd);
}

void write_all(int fd, const char* data, size_t size, const std::string& path, const std::string& tmp) {
  size_t written = 0;
  while (written < size) {
    ssize_t n = ::write(fd, data + written, size - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string reason = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      throw Error(fmt::format("checkpoint '{}': write failed ({})", path, reason));
    }
    written += static_cast<size_t>(n);
  }
}

// Writes `bytes` to path.tmp, syncs it and renames it over `path`: readers see the old file or
// the new one, never a mixture. When keep_previous_as is given and the old file at `path`
// passes its own integrity check, it is first hard-linked there (also atomically), so one
// earlier good checkpoint survives even if the newest is later damaged.
void write_file_atomically(const std::string& path, const std::string& bytes,
                           const std::string& keep_previous_as) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw Error(fmt::format("checkpoint '{}': cannot write ({})", path, std::strerror(errno)));
  const size_t half = bytes.size() / 2;
  write_all(fd, bytes.data(), half, path, tmp);
  if (int delay = write_delay_ms()) std::this_thread::sleep_for(std::chrono::milliseconds(delay));
  write_all(fd, bytes.data() + half, bytes.size() - half, path, tmp);
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    std::string reason = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw Error(fmt::format("checkpoint '{}': sync failed ({})", path, reason));
  }
  if (!keep_previous_as.empty() && checkpoint_problem(path).empty()) {
    std::string keep_tmp = keep_previous_as + ".tmp";
    ::unlink(keep_tmp.c_str());
    if (::link(path.c_str(), keep_tmp.c_str()) == 0) {
      if (std::rename(keep_tmp.c_str(), keep_previous_as.c_str()) != 0) ::unlink(keep_tmp.c_str());
    } else {
      // No hard links on this file system: a copy, equally atomic through its own rename.
      std::error_code ignored;
      if (std::filesystem::copy_file(path, keep_tmp, std::filesystem::copy_options::overwrite_existing, ignored))
        std::rename(keep_tmp.c_str(), keep_previous_as.c_str());
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string reason = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw Error(fmt::format("checkpoint '{}': rename failed ({})", path, reason));
  }
  sync_directory_of(path);
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
  if (std::filesystem::is_directory(path))
    throw Error(fmt::format("checkpoint '{}': is a directory, not a file", path));
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error(fmt::format("checkpoint '{}': cannot be opened ({})", path,
                            errno ? std::strerror(errno) : "unknown reason"));
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.empty()) throw Error(fmt::format("checkpoint '{}': empty file", path));
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
    file.meta.threads = j.value("threads", int64_t(0));
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("checkpoint '{}': bad metadata ({})", path, e.what()));
  }
  if (file.meta.step < 0 || file.meta.num_classes < 0)
    throw Error(fmt::format("checkpoint '{}': bad metadata (step {}, {} classes)", path,
                            file.meta.step, file.meta.num_classes));
  file.payload = std::move(payload);
  return file;
}

// The LibTorch archive inside a verified file. A payload that passed the checksum but is no
// archive (a crafted file) fails here, with LibTorch's reason.
torch::serialize::InputArchive open_archive(const std::string& path, const std::string& payload) {
  torch::serialize::InputArchive archive;
  try {
    std::istringstream stream(payload);
    archive.load_from(stream);
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    throw Error(fmt::format("checkpoint '{}': unreadable tensor archive ({})", path, what.substr(0, what.find('\n'))));
  } catch (const std::exception& e) {
    std::string what = e.what();
    throw Error(fmt::format("checkpoint '{}': unreadable tensor archive ({})", path, what.substr(0, what.find('\n'))));
  }
  return archive;
}

std::string tensor_summary(const torch::Tensor& tensor) {
  torch::Tensor t = tensor.contiguous().cpu();
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32_z(crc, static_cast<const Bytef*>(t.data_ptr()), t.numel() * t.element_size());
  return fmt::format("{} [{}] crc32 {:08x}", c10::toString(t.scalar_type()), fmt::join(t.sizes(), "x"),
                     static_cast<uint32_t>(crc));
}

void collect_entries(torch::serialize::InputArchive& archive, const std::string& prefix,
                     std::vector<CheckpointEntry>& out) {
  for (const std::string& key : archive.keys()) {
    c10::IValue value;
    if (!archive.try_read(key, value)) continue;
    std::string name = prefix + key;
    if (value.isTensor()) {
      out.push_back({name, tensor_summary(value.toTensor())});
    } else if (value.isObject()) {
      torch::serialize::InputArchive nested;
      if (archive.try_read(key, nested)) collect_entries(nested, name + ".", out);
    } else {
      std::ostringstream text;
      text << value;
      out.push_back({name, text.str()});
    }
  }
}

}  // namespace

void save_checkpoint(const std::string& path, const CheckpointMeta& meta, const CheckpointParts& parts,
                     const std::string& keep_previous_as) {
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
                      {"config", meta.config_yaml},
                      {"threads", meta.threads}};
  std::string meta_text = j.dump();

  std::string bytes(kMagic, sizeof(kMagic));
  put<uint32_t>(bytes, kVersion);
  put<uint64_t>(bytes, meta_text.size());
  put<uint64_t>(bytes, payload.size());
  bytes += meta_text;
  bytes += payload;
  put<uint32_t>(bytes, checksum(meta_text, payload));
  write_file_atomically(path, bytes, keep_previous_as);
}

CheckpointMeta read_checkpoint_meta(const std::string& path) { return read_verified(path).meta; }

std::string checkpoint_problem(const std::string& path) {
  try {
    read_verified(path);
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

std::vector<CheckpointEntry> checkpoint_contents(const std::string& path) {
  CheckpointFile file = read_verified(path);
  std::vector<CheckpointEntry> entries;
  torch::serialize::InputArchive archive = open_archive(path, file.payload);
  try {
    collect_entries(archive, "", entries);
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    throw Error(fmt::format("checkpoint '{}': unreadable tensor archive ({})", path, what.substr(0, what.find('\n'))));
  }
  // LibTorch keys optimizer state by the parameters' addresses in the saving process; name
  // them by their place in the parameter groups instead, so that equal states list equally.
  const std::string params_marker = ".params/";
  std::map<std::string, std::string> address_to_slot;
  for (auto& entry : entries) {
    size_t at = entry.name.find(params_marker);
    if (entry.name.rfind("optimizer.", 0) != 0 || at == std::string::npos) continue;
    size_t group = entry.name.rfind('/', at);
    std::string slot = "param " + entry.name.substr(group + 1, at - group - 1) + "/" +
                       entry.name.substr(at + params_marker.size());
    address_to_slot[entry.summary] = slot;
    entry.summary = slot;
  }
  for (auto& entry : entries) {
    const std::string state = "optimizer.state.";
    if (entry.name.rfind(state, 0) != 0) continue;
    size_t end = entry.name.find('.', state.size());
    auto found = address_to_slot.find(entry.name.substr(state.size(), end - state.size()));
    if (found != address_to_slot.end())
      entry.name = state + "[" + found->second + "]" + (end == std::string::npos ? "" : entry.name.substr(end));
  }
  std::sort(entries.begin(), entries.end(),
            [](const CheckpointEntry& a, const CheckpointEntry& b) { return a.name < b.name; });
  return entries;
}

CheckpointMeta load_checkpoint(const std::string& path, const CheckpointParts& parts) {
  CheckpointFile file = read_verified(path);
  torch::serialize::InputArchive archive = open_archive(path, file.payload);
  try {
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
