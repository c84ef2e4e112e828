// Bad input, table-driven: every reader and the config system fed broken files and values.
// Each case expects a specific one-line error and exit code from the `distill` binary (or the
// exception of an in-process reader), and checks that nothing crashed, hung or left a partial
// output file. docs/reliability.md lists the same table; a test keeps the two in sync.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>
#include <zlib.h>

#include <array>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "distillery/core/error.h"
#include "distillery/core/png.h"
#include "distillery/models/zoo.h"
#include "distillery/train/checkpoint.h"
#include "distillery/train/run_log.h"
#include "distillery/train/teacher_cache.h"

using namespace distillery;
namespace fs = std::filesystem;

namespace {

// ---------------------------------------------------------------------------------------------
// Helpers: files, the binary, tiny valid inputs to break.

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

struct Outcome {
  int code;  // exit code; -1 when killed by a signal (a crash or the hang timeout)
  std::string output;
};

// `timeout` turns a hang into exit code 124 instead of a stuck test.
Outcome run_distill(const std::string& args) {
  std::string command = "timeout 120 " + std::string(DISTILL_BINARY) + " --threads 1 " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  std::string output;
  std::array<char, 4096> buffer;
  while (size_t n = fread(buffer.data(), 1, buffer.size(), pipe)) output.append(buffer.data(), n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

std::set<std::string> files_under(const std::string& dir) {
  std::set<std::string> out;
  if (!fs::exists(dir)) return out;
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    if (entry.is_regular_file()) out.insert(fs::relative(entry.path(), dir).string());
  return out;
}

bool running_as_root() { return ::geteuid() == 0; }

// A 32x32 fashion-seg recipe small enough to build its data in a fraction of a second.
const char* kSegRecipe = R"(name: tiny
seed: 1
data:
  fashion_seg: {canvas: 32, train_scenes: 16, val_scenes: 8, max_items: 2, max_scale: 1.0}
model: {name: deeplabv3_resnet18_slim}
train: {steps: 2, batch_size: 4, eval_every: 2, log_every: 1, checkpoint_every: 1}
)";

// Fashion-MNIST classification from a directory of our own tiny IDX files.
const char* kMnistRecipe = R"(name: tiny_mnist
data: {benchmark: fashion-mnist}
model: {name: mobilenetv2_cls}
train: {steps: 1, batch_size: 4, eval_every: 1}
)";

ModelOptions seg_options() {
  ModelOptions o;
  o.num_classes = 11;
  o.in_channels = 1;
  o.input_size = 32;
  return o;
}

// IDX payloads before compression: a valid set of 8 training and 4 test images.
struct MnistFiles {
  std::string train_images, train_labels, test_images, test_labels;
  bool gzip = true;
};

std::string idx(uint32_t magic, const std::vector<uint32_t>& dims, const std::string& body) {
  std::string bytes;
  auto put = [&](uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(char(v >> shift));
  };
  put(magic);
  for (uint32_t d : dims) put(d);
  return bytes + body;
}

std::string images_body(int n, int side) {
  std::string body(size_t(n) * side * side, '\0');
  for (size_t i = 0; i < body.size(); ++i) body[i] = char((i * 37) % 251);
  return body;
}

std::string labels_body(int n) {
  std::string body;
  for (int i = 0; i < n; ++i) body.push_back(char(i % 10));
  return body;
}

MnistFiles valid_mnist() {
  MnistFiles f;
  f.train_images = idx(0x803, {8, 28, 28}, images_body(8, 28));
  f.train_labels = idx(0x801, {8}, labels_body(8));
  f.test_images = idx(0x803, {4, 28, 28}, images_body(4, 28));
  f.test_labels = idx(0x801, {4}, labels_body(4));
  return f;
}

std::string gzip(const std::string& bytes) {
  uLongf size = compressBound(bytes.size()) + 64;
  std::string out(size, '\0');
  z_stream z{};
  deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);  // +16: gzip wrapper
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  z.avail_in = static_cast<uInt>(bytes.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

void write_mnist(const std::string& dir, const MnistFiles& f) {
  auto put = [&](const std::string& name, const std::string& bytes) {
    write_bytes(dir + "/" + name, f.gzip ? gzip(bytes) : bytes);
  };
  put("train-images-idx3-ubyte.gz", f.train_images);
  put("train-labels-idx1-ubyte.gz", f.train_labels);
  put("t10k-images-idx3-ubyte.gz", f.test_images);
  put("t10k-labels-idx1-ubyte.gz", f.test_labels);
}

// A checkpoint file put together byte by byte (see checkpoint.cpp for the layout).
std::string checkpoint_bytes(const std::string& meta, const std::string& payload, uint32_t version = 1,
                             bool good_crc = true) {
  std::string out = "DSTLCKPT";
  auto put = [&](auto value) { out.append(reinterpret_cast<const char*>(&value), sizeof(value)); };
  put(uint32_t(version));
  put(uint64_t(meta.size()));
  put(uint64_t(payload.size()));
  out += meta + payload;
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(meta.data()), meta.size());
  crc = crc32(crc, reinterpret_cast<const Bytef*>(payload.data()), payload.size());
  put(uint32_t(good_crc ? crc : crc ^ 1u));
  return out;
}

// A PNG made of chunks with correct CRCs, so that libpng gets past them to the part under test.
std::string png_chunk(const std::string& type, const std::string& data) {
  std::string out;
  auto put32 = [&](uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(char(v >> shift));
  };
  put32(static_cast<uint32_t>(data.size()));
  std::string body = type + data;
  out += body;
  put32(static_cast<uint32_t>(crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(body.data()), body.size())));
  return out;
}

std::string png_ihdr(uint32_t width, uint32_t height, char bit_depth, char color_type) {
  std::string data;
  for (uint32_t v : {width, height})
    for (int shift = 24; shift >= 0; shift -= 8) data.push_back(char(v >> shift));
  data += std::string{bit_depth, color_type, 0, 0, 0};
  return png_chunk("IHDR", data);
}

const std::string kPngSignature = "\x89PNG\r\n\x1a\n";

// A valid 4x4 8-bit grey image: IHDR, IDAT, IEND.
std::string grey_png() {
  std::string raw;
  for (int y = 0; y < 4; ++y) raw += std::string("\0", 1) + std::string(4, char(16 * y));
  uLongf size = compressBound(raw.size());
  std::string idat(size, '\0');
  compress(reinterpret_cast<Bytef*>(idat.data()), &size, reinterpret_cast<const Bytef*>(raw.data()), raw.size());
  idat.resize(size);
  return kPngSignature + png_ihdr(4, 4, 8, 0) + png_chunk("IDAT", idat) + png_chunk("IEND", "");
}

// ---------------------------------------------------------------------------------------------
// The table.

struct Case {
  std::string id;
  std::string via;       // "distill <subcommand>" or the library function called
  std::string input;     // what is wrong, for docs/reliability.md
  int exit_code;         // expected exit code; for in-process cases 1 (Error) or 2 (ConfigError)
  std::string expected;  // substring of the one-line error (or, for exit 0, of the output)
  // Creates the bad input in `dir` and returns the distill arguments ({dir} is replaced), or,
  // for in-process cases, calls the reader (which must throw).
  std::function<std::string(const std::string& dir)> setup;
  bool in_process = false;
  bool needs_non_root = false;  // unreadable files: root reads them anyway
  // Output files the case may leave behind (relative to dir); any other new file fails it.
  std::set<std::string> may_create;
  // Further checks on what the run left (dir, output).
  std::function<void(const std::string&, const std::string&)> after;
};

std::string seg_recipe(const std::string& dir, const std::string& extra = "") {
  write_bytes(dir + "/r.yaml", std::string(kSegRecipe) + extra);
  return dir + "/r.yaml";
}

// Arguments training the tiny seg recipe into {dir}/run, with extra --set overrides.
std::string train_seg(const std::string& dir, const std::string& sets = "", const std::string& extra = "") {
  return "train " + seg_recipe(dir, extra) + " --set output.dir=" + dir + "/run " + sets;
}

std::string train_mnist(const std::string& dir, const std::function<void(MnistFiles&)>& damage) {
  MnistFiles files = valid_mnist();
  damage(files);
  write_mnist(dir + "/mnist", files);
  write_bytes(dir + "/m.yaml", kMnistRecipe);
  return "train " + dir + "/m.yaml --set data.mnist_dir=" + dir + "/mnist --set output.dir=" + dir + "/run";
}

// The good run every checkpoint case starts from (trained once, see SetUpTestSuite).
std::string good_run_dir();

std::string copy_good_run(const std::string& dir) {
  fs::create_directories(dir);
  fs::copy(good_run_dir(), dir + "/run", fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  return dir + "/run";
}

std::string eval_checkpoint(const std::string& dir, const std::string& bytes) {
  write_bytes(dir + "/c.ckpt", bytes);
  return "eval " + seg_recipe(dir) + " --checkpoint " + dir + "/c.ckpt";
}

std::string good_checkpoint_bytes() { return read_bytes(good_run_dir() + "/latest.ckpt"); }

void save_seg_checkpoint(const std::string& path, const std::string& model_name, int64_t num_classes) {
  ModelOptions o = seg_options();
  o.num_classes = num_classes;
  Model model = create_model(model_name, o);
  CheckpointMeta meta;
  meta.step = 1;
  meta.model_name = model_name;
  meta.num_classes = num_classes;
  save_checkpoint(path, meta, CheckpointParts{model.get()});
}

const std::set<std::string> kRunOutputs = {"run/config.yaml", "run/metrics.jsonl", "run/latest.ckpt",
                                           "run/best.ckpt", "run/previous.ckpt"};

std::vector<Case> cases() {
  std::vector<Case> t;
  // --- The recipe file and the config system -------------------------------------------------
  t.push_back({"recipe-missing", "distill train", "recipe path does not exist", 2, "cannot be opened",
               [](const std::string& dir) { return "train " + dir + "/nope.yaml"; }});
  t.push_back({"recipe-unreadable", "distill train", "recipe file chmod 000", 2, "cannot be opened",
               [](const std::string& dir) {
                 std::string r = seg_recipe(dir);
                 ::chmod(r.c_str(), 0);
                 return "train " + r;
               }, false, true});
  t.push_back({"recipe-empty", "distill train", "empty recipe file", 2,
               "config key 'model.name': required but missing",
               [](const std::string& dir) {
                 write_bytes(dir + "/r.yaml", "");
                 return "train " + dir + "/r.yaml";
               }});
  t.push_back({"recipe-not-yaml", "distill train", "unbalanced bracket", 2, "YAML error at line 3",
               [](const std::string& dir) {
                 write_bytes(dir + "/r.yaml", "name: x\nmodel: {name: [\n");
                 return "train " + dir + "/r.yaml";
               }});
  t.push_back({"recipe-list", "distill train", "top level is a list", 2, "the top level must be a mapping",
               [](const std::string& dir) {
                 write_bytes(dir + "/r.yaml", "- a\n- b\n");
                 return "train " + dir + "/r.yaml";
               }});
  t.push_back({"recipe-binary", "distill train", "recipe is binary garbage", 2, "config file",
               [](const std::string& dir) {
                 write_bytes(dir + "/r.yaml", std::string("\x00\xff\x13[{\x01", 6));
                 return "train " + dir + "/r.yaml";
               }});
  t.push_back({"key-unknown", "distill train", "top-level key 'trian'", 2, "unknown key 'trian'",
               [](const std::string& dir) { return train_seg(dir, "", "trian: {steps: 3}\n"); }});
  t.push_back({"key-misspelled", "distill train", "--set train.stpes=3", 2,
               "unknown key 'train.stpes' (did you mean 'train.steps'?)",
               [](const std::string& dir) { return train_seg(dir, "--set train.stpes=3"); }});
  t.push_back({"key-misspelled-nested", "distill train", "--set train.optimizer.lr_=1", 2,
               "(did you mean 'train.optimizer.lr'?)",
               [](const std::string& dir) { return train_seg(dir, "--set train.optimizer.lr_=1"); }});
  t.push_back({"type-int", "distill train", "--set train.steps=many", 2,
               "config key 'train.steps': expected an integer, got 'many'",
               [](const std::string& dir) { return train_seg(dir, "--set train.steps=many"); }});
  t.push_back({"type-int-fraction", "distill train", "--set train.batch_size=2.5", 2,
               "config key 'train.batch_size': expected an integer, got '2.5'",
               [](const std::string& dir) { return train_seg(dir, "--set train.batch_size=2.5"); }});
  t.push_back({"type-int-overflow", "distill train", "--set train.steps=99999999999999999999", 2,
               "config key 'train.steps': expected an integer",
               [](const std::string& dir) { return train_seg(dir, "--set train.steps=99999999999999999999"); }});
  t.push_back({"type-number", "distill train", "--set train.optimizer.lr=fast", 2,
               "config key 'train.optimizer.lr': expected a number, got 'fast'",
               [](const std::string& dir) { return train_seg(dir, "--set train.optimizer.lr=fast"); }});
  t.push_back({"type-bool", "distill train", "--set train.skip_nonfinite=maybe", 2,
               "config key 'train.skip_nonfinite': expected true or false",
               [](const std::string& dir) { return train_seg(dir, "--set train.skip_nonfinite=maybe"); }});
  t.push_back({"type-mapping", "distill train", "model: [1, 2]", 2, "config key 'model': expected a mapping, got a list",
               [](const std::string& dir) { return train_seg(dir, "--set model=[1,2]"); }});
  t.push_back({"type-list", "distill train", "distillers: 3", 2, "config key 'distillers': expected a list",
               [](const std::string& dir) { return train_seg(dir, "--set distillers=3"); }});
  t.push_back({"steps-zero", "distill train", "--set train.steps=0", 2, "config key 'train.steps': must be > 0",
               [](const std::string& dir) { return train_seg(dir, "--set train.steps=0"); }});
  t.push_back({"batch-negative", "distill train", "--set train.batch_size=-4", 2,
               "config key 'train.batch_size': must be > 0",
               [](const std::string& dir) { return train_seg(dir, "--set train.batch_size=-4"); }});
  t.push_back({"batch-too-large", "distill train", "batch_size 64 > 16 training scenes", 2,
               "config key 'train.batch_size': 64 exceeds the 16 training samples",
               [](const std::string& dir) { return train_seg(dir, "--set train.batch_size=64"); }});
  t.push_back({"head-dropout-one", "distill train", "--set model.head_dropout=1", 2,
               "config key 'model.head_dropout': must be in [0, 1) (-1: the preset's)",
               [](const std::string& dir) { return train_seg(dir, "--set model.head_dropout=1"); }});
  t.push_back({"lr-zero", "distill train", "--set train.optimizer.lr=0", 2,
               "config key 'train.optimizer.lr': must be a finite number > 0",
               [](const std::string& dir) { return train_seg(dir, "--set train.optimizer.lr=0"); }});
  t.push_back({"lr-negative", "distill train", "--set train.optimizer.lr=-1", 2,
               "config key 'train.optimizer.lr': must be a finite number > 0",
               [](const std::string& dir) { return train_seg(dir, "--set train.optimizer.lr=-1"); }});
  t.push_back({"lr-infinite", "distill train", "--set train.optimizer.lr=inf", 2,
               "config key 'train.optimizer.lr': must be a finite number > 0",
               [](const std::string& dir) { return train_seg(dir, "--set train.optimizer.lr=inf"); }});
  t.push_back({"lr-nan", "distill train", "--set train.optimizer.lr=nan", 2,
               "config key 'train.optimizer.lr': must be a finite number > 0",
               [](const std::string& dir) { return train_seg(dir, "--set train.optimizer.lr=nan"); }});
  t.push_back({"lr-yaml-inf", "distill train", "--set train.optimizer.lr=.inf (YAML spelling)", 2,
               "config key 'train.optimizer.lr': expected a number, got '.inf'",
               [](const std::string& dir) { return train_seg(dir, "--set train.optimizer.lr=.inf"); }});
  t.push_back({"momentum-one", "distill train", "--set train.optimizer.momentum=1", 2,
               "config key 'train.optimizer.momentum': must be in [0, 1)",
               [](const std::string& dir) { return train_seg(dir, "--set train.optimizer.momentum=1"); }});
  t.push_back({"weight-decay-negative", "distill train", "--set train.optimizer.weight_decay=-0.1", 2,
               "config key 'train.optimizer.weight_decay': must be a finite number >= 0",
               [](const std::string& dir) { return train_seg(dir, "--set train.optimizer.weight_decay=-0.1"); }});
  t.push_back({"eval-every-zero", "distill train", "--set train.eval_every=0", 2,
               "config key 'train.eval_every': must be > 0",
               [](const std::string& dir) { return train_seg(dir, "--set train.eval_every=0"); }});
  t.push_back({"canvas-zero", "distill train", "--set data.fashion_seg.canvas=0", 2,
               "config key 'data.fashion_seg.canvas': must be in [8, 1024]",
               [](const std::string& dir) { return train_seg(dir, "--set data.fashion_seg.canvas=0"); }});
  t.push_back({"scenes-negative", "distill train", "--set data.fashion_seg.train_scenes=-5", 2,
               "config key 'data.fashion_seg.train_scenes': must be positive",
               [](const std::string& dir) { return train_seg(dir, "--set data.fashion_seg.train_scenes=-5"); }});
  t.push_back({"scale-infinite", "distill train", "--set data.fashion_seg.max_scale=.inf", 2,
               "config key 'data.fashion_seg.max_scale'",
               [](const std::string& dir) { return train_seg(dir, "--set data.fashion_seg.max_scale=.inf"); }});
  t.push_back({"augment-scale-zero", "distill train", "--set data.augment.min_scale=0", 2, "config key 'data.augment.min_scale': must be in (0, 10]",
               [](const std::string& dir) { return train_seg(dir, "--set data.augment.min_scale=0"); }});
  t.push_back({"seed-negative", "distill train", "--set seed=-1", 2, "config key 'seed': must be >= 0",
               [](const std::string& dir) { return train_seg(dir, "--set seed=-1"); }});
  t.push_back({"override-syntax", "distill train", "--set train.steps (no '=')", 2,
               "override 'train.steps': expected key=value",
               [](const std::string& dir) { return train_seg(dir, "--set train.steps"); }});
  t.push_back({"override-index", "distill train", "--set distillers.5.tau=1 with no distillers", 2,
               "override 'distillers.5.tau=1'",
               [](const std::string& dir) { return train_seg(dir, "--set distillers=[] --set distillers.5.tau=1"); }});
  t.push_back({"model-unknown", "distill train", "--set model.name=resnet9000", 2, "unknown model 'resnet9000'",
               [](const std::string& dir) { return train_seg(dir, "--set model.name=resnet9000"); }});
  t.push_back({"model-wrong-task", "distill train", "classification model on segmentation data", 2,
               "model 'resnet18_cls' is a classification model but the data is fashion-seg",
               [](const std::string& dir) { return train_seg(dir, "--set model.name=resnet18_cls"); }});
  t.push_back({"distiller-no-teacher", "distill train", "distillers without a teacher", 2,
               "distillers need a 'teacher' block",
               [](const std::string& dir) { return train_seg(dir, "", "distillers: [{name: kd}]\n"); }});
  t.push_back({"teacher-missing", "distill train", "teacher checkpoint path does not exist", 2,
               "config key 'teacher.checkpoint': file",
               [](const std::string& dir) {
                 return train_seg(dir, "", "teacher: {model: {name: deeplabv3_resnet18_slim}, checkpoint: " + dir +
                                               "/none.ckpt}\ndistillers: [{name: kd}]\n");
               }});
  t.push_back({"teacher-other-model", "distill train", "teacher checkpoint holds another model", 2,
               "holds a 'deeplabv3_mobilenetv2', not the 'deeplabv3_resnet18_slim'",
               [](const std::string& dir) {
                 save_seg_checkpoint(dir + "/t.ckpt", "deeplabv3_mobilenetv2", 11);
                 return train_seg(dir, "", "teacher: {model: {name: deeplabv3_resnet18_slim}, checkpoint: " + dir +
                                               "/t.ckpt}\ndistillers: [{name: kd}]\n");
               }});
  t.push_back({"teacher-class-count", "distill train", "teacher checkpoint with 10 classes, data with 11", 2,
               "predicts 10 classes but the data has 11",
               [](const std::string& dir) {
                 save_seg_checkpoint(dir + "/t.ckpt", "deeplabv3_resnet18_slim", 10);
                 return train_seg(dir, "", "teacher: {model: {name: deeplabv3_resnet18_slim}, checkpoint: " + dir +
                                               "/t.ckpt}\ndistillers: [{name: kd}]\n");
               }});
  t.push_back({"teacher-wrong-task", "distill train", "classification teacher for segmentation data", 2,
               "config key 'teacher.model.name': model 'resnet18_cls' is a classification model",
               [](const std::string& dir) {
                 return train_seg(dir, "", "teacher: {model: {name: resnet18_cls}, checkpoint: x.ckpt}\n"
                                           "distillers: [{name: kd}]\n");
               }});
  t.push_back({"distiller-unknown", "distill train", "distiller name 'kd2'", 2, "config key 'distillers.0.name': 'kd2' is not one of: kd, cwd",
               [](const std::string& dir) {
                 save_seg_checkpoint(dir + "/t.ckpt", "deeplabv3_resnet18_slim", 11);
                 return train_seg(dir, "", "teacher: {model: {name: deeplabv3_resnet18_slim}, checkpoint: " + dir +
                                               "/t.ckpt}\ndistillers: [{name: kd2}]\n");
               }});
  t.push_back({"cli-threads-negative", "distill", "--threads -1", 2, "--threads: Value -1 not in range 0 to 4096",
               [](const std::string& dir) { return "--threads -1 models"; }});
  t.push_back({"cli-stop-after-zero", "distill train", "--stop-after 0", 2, "--stop-after: Value 0 not in range 1 to",
               [](const std::string& dir) { return train_seg(dir, "--stop-after 0"); }});
  t.push_back({"show-data-bad-recipe", "distill show-data", "unknown key, --out given", 2, "unknown key 'trian'",
               [](const std::string& dir) {
                 return "show-data " + seg_recipe(dir, "trian: 1\n") + " --out " + dir + "/grid.png";
               }});

  // --- Fashion-MNIST IDX files (through a classification recipe) ------------------------------
  t.push_back({"idx-control", "distill train", "valid tiny IDX files (control: must train)", 0, "top1",
               [](const std::string& dir) { return train_mnist(dir, [](MnistFiles&) {}); },
               false, false, kRunOutputs});
  t.push_back({"idx-dir-missing", "distill train", "data.mnist_dir does not exist", 1,
               "cannot be opened (missing or unreadable)",
               [](const std::string& dir) {
                 write_bytes(dir + "/m.yaml", kMnistRecipe);
                 return "train " + dir + "/m.yaml --set data.mnist_dir=" + dir + "/none";
               }});
  t.push_back({"idx-unreadable", "distill train", "images file chmod 000", 1, "cannot be opened",
               [](const std::string& dir) {
                 std::string args = train_mnist(dir, [](MnistFiles&) {});
                 ::chmod((dir + "/mnist/train-images-idx3-ubyte.gz").c_str(), 0);
                 return args;
               }, false, true});
  t.push_back({"idx-empty", "distill train", "empty images file", 1, "not a gzip file",
               [](const std::string& dir) {
                 std::string args = train_mnist(dir, [](MnistFiles&) {});
                 write_bytes(dir + "/mnist/train-images-idx3-ubyte.gz", "");
                 return args;
               }});
  t.push_back({"idx-not-gzip", "distill train", "uncompressed IDX under the .gz name", 1, "not a gzip file",
               [](const std::string& dir) { return train_mnist(dir, [](MnistFiles& f) { f.gzip = false; }); }});
  t.push_back({"idx-gzip-truncated", "distill train", "gzip stream cut in half", 1, "truncated gzip stream",
               [](const std::string& dir) {
                 std::string args = train_mnist(dir, [](MnistFiles&) {});
                 std::string path = dir + "/mnist/train-images-idx3-ubyte.gz";
                 std::string bytes = read_bytes(path);
                 write_bytes(path, bytes.substr(0, bytes.size() / 2));
                 return args;
               }});
  t.push_back({"idx-gzip-corrupt", "distill train", "gzip payload bytes overwritten", 1, "corrupt gzip stream",
               [](const std::string& dir) {
                 std::string args = train_mnist(dir, [](MnistFiles&) {});
                 std::string path = dir + "/mnist/train-images-idx3-ubyte.gz";
                 std::string bytes = read_bytes(path);
                 for (size_t i = 20; i < 40 && i < bytes.size(); ++i) bytes[i] = char(0xff);
                 write_bytes(path, bytes);
                 return args;
               }});
  t.push_back({"idx-wrong-magic", "distill train", "labels file where images are expected", 1,
               "wrong magic number 0x00000801 (expected 0x00000803)",
               [](const std::string& dir) {
                 return train_mnist(dir, [](MnistFiles& f) { f.train_images = f.train_labels; });
               }});
  t.push_back({"idx-header-truncated", "distill train", "IDX header cut after 2 bytes", 1,
               "truncated: no IDX header",
               [](const std::string& dir) {
                 return train_mnist(dir, [](MnistFiles& f) { f.train_images = f.train_images.substr(0, 2); });
               }});
  t.push_back({"idx-dims-truncated", "distill train", "dimension list cut short", 1,
               "truncated: incomplete dimension list",
               [](const std::string& dir) {
                 return train_mnist(dir, [](MnistFiles& f) { f.train_images = f.train_images.substr(0, 9); });
               }});
  t.push_back({"idx-huge-size", "distill train", "header declares 100000 x 100000 x 100000 images", 1,
               "declared size exceeds 1000000000 bytes; refusing to allocate",
               [](const std::string& dir) {
                 return train_mnist(dir, [](MnistFiles& f) { f.train_images = idx(0x803, {100000, 100000, 100000}, ""); });
               }});
  // Found by fuzz_idx (a 10 s "slow unit" under ASan): the reader used to allocate the whole
  // declared size (here 722 MB) before reading a byte.
  t.push_back({"idx-forged-size", "distill train", "file declaring 1179648 x 204 x 3 images (722 MB, under the limit)", 1,
               "truncated: 1 of 721944576 declared data bytes present",
               [](const std::string& dir) {
                 return train_mnist(dir, [](MnistFiles& f) { f.train_images = idx(0x803, {1179648, 204, 3}, "x"); });
               }});
  t.push_back({"idx-zero-dim", "distill train", "header declares 0 images", 1, "dimension 0 is zero",
               [](const std::string& dir) {
                 return train_mnist(dir, [](MnistFiles& f) { f.train_images = idx(0x803, {0, 28, 28}, ""); });
               }});
  t.push_back({"idx-data-truncated", "distill train", "declares 100 images, holds 8", 1,
               "truncated: 6272 of 78400 declared data bytes present",
               [](const std::string& dir) {
                 return train_mnist(dir, [](MnistFiles& f) { f.train_images = idx(0x803, {100, 28, 28}, images_body(8, 28)); });
               }});
  t.push_back({"idx-trailing", "distill train", "extra bytes after the declared data", 1,
               "trailing bytes after the declared data",
               [](const std::string& dir) {
                 return train_mnist(dir, [](MnistFiles& f) { f.train_labels += "xyz"; });
               }});
  t.push_back({"idx-wrong-dims", "distill train", "32x32 images instead of 28x28", 1,
               "images are 32x32, expected 28x28",
               [](const std::string& dir) {
                 return train_mnist(dir, [](MnistFiles& f) { f.train_images = idx(0x803, {8, 32, 32}, images_body(8, 32)); });
               }});
  t.push_back({"idx-label-count", "distill train", "7 labels for 8 images", 1, "7 labels for 8 images",
               [](const std::string& dir) {
                 return train_mnist(dir, [](MnistFiles& f) { f.train_labels = idx(0x801, {7}, labels_body(7)); });
               }});
  t.push_back({"idx-label-range", "distill train", "a label 10 (classes are 0..9)", 1, "label 10 out of range 0..9",
               [](const std::string& dir) {
                 return train_mnist(dir, [](MnistFiles& f) { f.test_labels.back() = char(10); });
               }});
  t.push_back({"idx-label-255", "distill train", "a label 255", 1, "label 255 out of range 0..9",
               [](const std::string& dir) {
                 return train_mnist(dir, [](MnistFiles& f) { f.train_labels.back() = char(255); });
               }});
  t.push_back({"idx-fewer-than-batch", "distill train", "2 training images, batch_size 4", 2,
               "config key 'train.batch_size': 4 exceeds the 2 training samples",
               [](const std::string& dir) {
                 return train_mnist(dir, [](MnistFiles& f) {
                   f.train_images = idx(0x803, {2, 28, 28}, images_body(2, 28));
                   f.train_labels = idx(0x801, {2}, labels_body(2));
                 });
               }});

  // --- Checkpoints, through `distill eval` and `distill train --resume` -------------------------
  t.push_back({"ckpt-control", "distill eval", "the good checkpoint (control: must evaluate)", 0, "mIoU",
               [](const std::string& dir) { return eval_checkpoint(dir, good_checkpoint_bytes()); }});
  t.push_back({"ckpt-missing", "distill eval", "checkpoint path does not exist", 1,
               "cannot be opened (No such file or directory)",
               [](const std::string& dir) { return "eval " + seg_recipe(dir) + " --checkpoint " + dir + "/none.ckpt"; }});
  t.push_back({"ckpt-directory", "distill eval", "checkpoint path is a directory", 1, "is a directory, not a file",
               [](const std::string& dir) { return "eval " + seg_recipe(dir) + " --checkpoint " + dir; }});
  t.push_back({"ckpt-unreadable", "distill eval", "checkpoint chmod 000", 1, "cannot be opened (Permission denied)",
               [](const std::string& dir) {
                 std::string args = eval_checkpoint(dir, good_checkpoint_bytes());
                 ::chmod((dir + "/c.ckpt").c_str(), 0);
                 return args;
               }, false, true});
  t.push_back({"ckpt-empty", "distill eval", "empty checkpoint file", 1, "empty file",
               [](const std::string& dir) { return eval_checkpoint(dir, ""); }});
  t.push_back({"ckpt-bad-magic", "distill eval", "a text file", 1, "not a Distillery checkpoint (bad magic)",
               [](const std::string& dir) { return eval_checkpoint(dir, "garbage that is no checkpoint"); }});
  t.push_back({"ckpt-header-truncated", "distill eval", "magic and half a header", 1, "truncated",
               [](const std::string& dir) { return eval_checkpoint(dir, good_checkpoint_bytes().substr(0, 14)); }});
  t.push_back({"ckpt-truncated", "distill eval", "last 100 bytes cut", 1, "truncated or corrupt (size mismatch)",
               [](const std::string& dir) {
                 std::string b = good_checkpoint_bytes();
                 return eval_checkpoint(dir, b.substr(0, b.size() - 100));
               }});
  t.push_back({"ckpt-bit-flip", "distill eval", "one payload byte flipped", 1, "checksum mismatch (corrupt file)",
               [](const std::string& dir) {
                 std::string b = good_checkpoint_bytes();
                 b[b.size() * 3 / 4] ^= 0x10;
                 return eval_checkpoint(dir, b);
               }});
  t.push_back({"ckpt-version", "distill eval", "format version 99", 1, "unsupported version 99",
               [](const std::string& dir) { return eval_checkpoint(dir, checkpoint_bytes("{}", "", 99)); }});
  t.push_back({"ckpt-huge-size", "distill eval", "header declares a 2^40-byte payload", 1,
               "truncated or corrupt (size mismatch)",
               [](const std::string& dir) {
                 std::string b = checkpoint_bytes("{}", "");
                 uint64_t huge = uint64_t(1) << 40;
                 std::memcpy(&b[20], &huge, 8);
                 return eval_checkpoint(dir, b);
               }});
  t.push_back({"ckpt-bad-meta", "distill eval", "metadata is not JSON (checksum valid)", 1, "bad metadata",
               [](const std::string& dir) { return eval_checkpoint(dir, checkpoint_bytes("{not json", "")); }});
  t.push_back({"ckpt-meta-types", "distill eval", "metadata field of the wrong type (checksum valid)", 1,
               "bad metadata",
               [](const std::string& dir) {
                 return eval_checkpoint(dir, checkpoint_bytes(R"({"step":"x","best_metric":0,"model_name":"m","num_classes":1,"config":""})", ""));
               }});
  t.push_back({"ckpt-negative-step", "distill eval", "metadata with step -5 (checksum valid)", 1,
               "bad metadata (step -5, 11 classes)",
               [](const std::string& dir) {
                 return eval_checkpoint(dir, checkpoint_bytes(R"({"step":-5,"best_metric":0,"model_name":"deeplabv3_resnet18_slim","num_classes":11,"config":""})", ""));
               }});
  t.push_back({"ckpt-bad-payload", "distill eval", "tensor archive is garbage (checksum valid)", 1,
               "unreadable tensor archive (PytorchStreamReader failed reading zip archive",
               [](const std::string& dir) {
                 return eval_checkpoint(dir, checkpoint_bytes(R"({"step":1,"best_metric":0,"model_name":"deeplabv3_resnet18_slim","num_classes":11,"config":""})",
                                                              "PK\x03\x04 not really a zip archive"));
               }});
  t.push_back({"ckpt-other-model", "distill eval", "checkpoint of another model", 2,
               "holds a 'deeplabv3_mobilenetv2', the recipe names 'deeplabv3_resnet18_slim'",
               [](const std::string& dir) {
                 save_seg_checkpoint(dir + "/c.ckpt", "deeplabv3_mobilenetv2", 11);
                 return "eval " + seg_recipe(dir) + " --checkpoint " + dir + "/c.ckpt";
               }});
  t.push_back({"ckpt-shape", "distill eval", "same model name, other width", 1,
               "has shape",
               [](const std::string& dir) {
                 return eval_checkpoint(dir, good_checkpoint_bytes()) + " --set model.width=0.5";
               }});
  t.push_back({"resume-none", "distill train --resume", "no checkpoint in the run directory", 1,
               "cannot resume: no checkpoint at",
               [](const std::string& dir) { return train_seg(dir, "--resume"); }});
  t.push_back({"resume-corrupt-no-previous", "distill train --resume", "latest.ckpt corrupt, no previous.ckpt", 1,
               "checksum mismatch (corrupt file) (and no good",
               [](const std::string& dir) {
                 std::string run = copy_good_run(dir);
                 fs::remove(run + "/previous.ckpt");
                 std::string b = read_bytes(run + "/latest.ckpt");
                 b[b.size() / 2] ^= 1;
                 write_bytes(run + "/latest.ckpt", b);
                 return train_seg(dir, "--resume");
               }, false, false, kRunOutputs});
  t.push_back({"resume-corrupt-falls-back", "distill train --resume",
               "latest.ckpt truncated, previous.ckpt good (resumes from it)", 0,
               "resuming from the previous good checkpoint",
               [](const std::string& dir) {
                 std::string run = copy_good_run(dir);
                 std::string b = read_bytes(run + "/latest.ckpt");
                 write_bytes(run + "/latest.ckpt", b.substr(0, b.size() / 3));
                 return train_seg(dir, "--resume");
               }, false, false, kRunOutputs});
  t.push_back({"resume-other-model", "distill train --resume", "recipe now names another model", 2,
               "it was trained with model 'deeplabv3_resnet18_slim', the recipe names 'deeplabv3_mobilenetv2'",
               [](const std::string& dir) {
                 copy_good_run(dir);
                 return train_seg(dir, "--resume --set model.name=deeplabv3_mobilenetv2");
               }, false, false, kRunOutputs});
  t.push_back({"resume-other-width", "distill train --resume", "recipe now sets model.width 0.5", 2,
               "config key 'model.width' was unset in the run that wrote it, the recipe has '0.5'",
               [](const std::string& dir) {
                 copy_good_run(dir);
                 return train_seg(dir, "--resume --set model.width=0.5");
               }, false, false, kRunOutputs});
  t.push_back({"resume-class-count", "distill train --resume", "latest.ckpt has 10 classes, the data 11", 2,
               "it has 10 classes, the recipe 11",
               [](const std::string& dir) {
                 std::string run = copy_good_run(dir);
                 fs::remove(run + "/previous.ckpt");
                 save_seg_checkpoint(run + "/latest.ckpt", "deeplabv3_resnet18_slim", 10);
                 return train_seg(dir, "--resume");
               }, false, false, kRunOutputs});
  t.push_back({"loss-nonfinite", "distill train", "lr 1e30: the loss overflows", 1,
               "loss term 'ce' is",
               [](const std::string& dir) {
                 return train_seg(dir, "--set train.optimizer.lr=1e30 --set train.optimizer.type=sgd --set train.steps=6");
               }, false, false, kRunOutputs});
  // "loss term 'ce' is nan at step N": latest.ckpt must hold step N - 1 and pass its checks.
  t.back().after = [](const std::string& dir, const std::string& output) {
    auto at = output.find("at step ");
    ASSERT_NE(at, std::string::npos) << output;
    int64_t step = std::stoll(output.substr(at + 8));
    EXPECT_GE(step, 2);
    EXPECT_EQ(read_checkpoint_meta(dir + "/run/latest.ckpt").step, step - 1);
  };

  // --- In-process readers with no CLI path of their own -----------------------------------------
  auto png_case = [&](std::string id, std::string input, std::string expected, std::string bytes, bool indices = false) {
    t.push_back({std::move(id), indices ? "read_png_indices()" : "read_png()", std::move(input), 1, std::move(expected),
                 [bytes, indices](const std::string& dir) {
                   write_bytes(dir + "/p.png", bytes);
                   if (indices) read_png_indices(dir + "/p.png");
                   else read_png(dir + "/p.png");
                   return std::string();
                 }, true});
  };
  png_case("png-missing", "path does not exist", "cannot be opened (missing or unreadable)", "");
  t.back().setup = [](const std::string& dir) { read_png(dir + "/none.png"); return std::string(); };
  png_case("png-empty", "empty file", "not a PNG file", "");
  png_case("png-not-png", "a text file", "not a PNG file", "hello, I am not a picture");
  png_case("png-no-chunks", "signature only", "Read Error", kPngSignature);
  png_case("png-bad-crc", "IHDR with a wrong CRC", "IHDR: CRC error",
           [] { std::string c = png_ihdr(4, 4, 8, 0); c.back() ^= 1; return kPngSignature + c; }());
  png_case("png-huge", "IHDR declares 1000000 x 1000000 pixels", "Invalid IHDR data",
           kPngSignature + png_ihdr(1000000, 1000000, 8, 6) + png_chunk("IEND", ""));
  png_case("png-zero-size", "IHDR declares 0 x 4 pixels", "Invalid IHDR data",
           kPngSignature + png_ihdr(0, 4, 8, 0) + png_chunk("IEND", ""));
  png_case("png-bad-depth", "IHDR with bit depth 7", "Invalid IHDR data",
           kPngSignature + png_ihdr(4, 4, 7, 0) + png_chunk("IEND", ""));
  png_case("png-no-data", "valid IHDR, no IDAT", "IEND: out of place",
           kPngSignature + png_ihdr(4, 4, 8, 0) + png_chunk("IEND", ""));
  png_case("png-bad-idat", "IDAT that is not zlib data", "IDAT: incorrect header check",
           kPngSignature + png_ihdr(4, 4, 8, 0) + png_chunk("IDAT", "not zlib at all") + png_chunk("IEND", ""));
  png_case("png-not-palette", "grey PNG read as palette indices", "not a palette PNG (colour type 0)",
           grey_png(), true);
  png_case("png-truncated", "valid grey PNG cut before IEND", "Read Error",
           grey_png().substr(0, grey_png().size() - 14));
  // Teacher-output cache files (what `teacher.source: cache` memory-maps).
  auto cache_case = [&](std::string id, std::string input, std::string expected, std::string bytes) {
    t.push_back({std::move(id), "CachedTeacher()", std::move(input), 1, std::move(expected),
                 [bytes](const std::string& dir) {
                   write_bytes(dir + "/t.cache", bytes);
                   CachedTeacher cache(dir + "/t.cache");
                   return std::string();
                 }, true});
  };
  auto cache_file = [](const std::string& header, size_t body) {
    std::string out = "DSTLTCH1";
    uint64_t length = header.size();
    out.append(reinterpret_cast<const char*>(&length), 8);
    out += header;
    out += std::string((64 - out.size() % 64) % 64, '\0') + std::string(body, '\0') + "DSTLTEND";
    return out;
  };
  auto cache_header = [](const std::string& shape) {
    return R"({"format":1,"teacher":{"model":"m","num_classes":11,"stages":[[16,4]]},)"
           R"("schedule":{"seed":0,"batch_size":2,"steps":3,"train_size":8,"data":"{}"},)"
           R"("entries":[{"name":"logits","shape":)" + shape + "}]}";
  };
  cache_case("cache-short", "a 10-byte file", "truncated (10 bytes)", "DSTLTCH1xx");
  cache_case("cache-bad-magic", "a file of zeros", "not a teacher cache (bad magic)", std::string(64, '\0'));
  cache_case("cache-bad-header", "header that is not JSON", "corrupt header (",
             cache_file("{not json", 16));
  cache_case("cache-header-length", "header length past the end of the file", "corrupt header length",
             [] { std::string b = std::string("DSTLTCH1") + std::string(8, '\xff') + std::string(32, ' '); return b; }());
  cache_case("cache-bad-shape", "an entry with a negative dimension", "entry 'logits' has a bad shape",
             cache_file(cache_header("[11,-1,2]"), 16));
  cache_case("cache-size-overflow", "shapes whose byte count overflows 64 bits", "header sizes overflow",
             cache_file(cache_header("[1048576,1048576,1048576,1048576]"), 16));
  cache_case("cache-truncated", "blocks missing for the declared steps", "(truncated or corrupt)",
             cache_file(cache_header("[11,2,2]"), 16));
  t.push_back({"run-log-garbage", "truncate_run_log()", "metrics.jsonl holding binary garbage", 0,
               "garbage lines are dropped, not parsed",
               [](const std::string& dir) {
                 write_bytes(dir + "/metrics.jsonl", std::string("{\"step\":1}\n\x00\xff{{\n{\"step\":9}\n", 23));
                 if (truncate_run_log(dir + "/metrics.jsonl", 5) != 2 || read_bytes(dir + "/metrics.jsonl") != "{\"step\":1}\n")
                   throw Error("truncate_run_log kept the wrong lines");
                 return std::string();
               }, true, false, {"metrics.jsonl"}});
  return t;
}

// gtest prints a failing parameter with this (instead of its bytes).
void PrintTo(const Case& c, std::ostream* os) { *os << c.id; }

std::string expand(std::string text, const std::string& dir) {
  for (size_t at; (at = text.find("{dir}")) != std::string::npos;) text.replace(at, 5, dir);
  return text;
}

std::string markdown_table(const std::vector<Case>& table) {
  std::ostringstream out;
  out << "| case | via | bad input | exit | error message contains |\n|---|---|---|---|---|\n";
  for (const auto& c : table) {
    std::string expected = c.expected;
    for (size_t at = 0; (at = expected.find('|', at)) != std::string::npos; at += 2) expected.replace(at, 1, "\\|");
    std::string input = c.input + (c.needs_non_root ? " (skipped as root)" : "");
    out << "| " << c.id << " | " << c.via << " | " << input << " | " << c.exit_code << " | `" << expected
        << "` |\n";
  }
  return out.str();
}

fs::path g_root;

// Trained on first use (ctest runs each case in its own process; most need no checkpoint): a
// real two-step run leaves latest.ckpt (step 2) and previous.ckpt (step 1).
std::string good_run_dir() {
  std::string dir = (g_root / "good_run").string();
  if (!fs::exists(dir + "/previous.ckpt")) {
    std::string recipe = seg_recipe((g_root / "good").string());
    Outcome r = run_distill("train " + recipe + " --set output.dir=" + dir);
    if (r.code != 0 || !fs::exists(dir + "/previous.ckpt"))
      throw std::runtime_error("the good run failed:\n" + r.output);
  }
  return dir;
}

class Robustness : public ::testing::TestWithParam<Case> {
 public:
  static void SetUpTestSuite() {
    g_root = fs::temp_directory_path() / ("distillery_robust_" + std::to_string(::getpid()));
    fs::remove_all(g_root);
    fs::create_directories(g_root);
  }
  static void TearDownTestSuite() {
    // chmod 000 files are removable: the directory, not the file, decides.
    std::error_code ignored;
    fs::remove_all(g_root, ignored);
  }
};

TEST_P(Robustness, FailsCleanlyWithItsMessage) {
  const Case& c = GetParam();
  if (c.needs_non_root && running_as_root()) GTEST_SKIP() << "running as root: every file is readable";
  std::string dir = (g_root / c.id).string();
  fs::create_directories(dir);
  std::set<std::string> before;
  if (c.in_process) {
    try {
      c.setup(dir);
      if (c.exit_code != 0) FAIL() << "no exception";
    } catch (const Error& e) {
      std::string what = e.what();
      std::cout << "message: " << what << "\n";
      EXPECT_EQ(e.exit_code(), c.exit_code) << what;
      EXPECT_NE(what.find(c.expected), std::string::npos) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << "not one line: " << what;
    }
  } else {
    std::string args = expand(c.setup(dir), dir);
    before = files_under(dir);
    Outcome r = run_distill(args);
    std::cout << "exit " << r.code << ", last line: " << r.output.substr(r.output.rfind('\n', r.output.size() - 2) + 1);
    EXPECT_EQ(r.code, c.exit_code) << "distill " << args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.expected), std::string::npos) << "distill " << args << "\n" << r.output;
    if (c.exit_code != 0) {
      // The error is the last line of the output, and it is one line.
      std::string out = r.output;
      while (!out.empty() && out.back() == '\n') out.pop_back();
      std::string last = out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
      EXPECT_NE(last.find(c.expected), std::string::npos) << "the message is not the last line:\n" << r.output;
    }
    if (c.after) c.after(dir, r.output);
  }
  // Nothing new but the outputs this case is allowed to write (no partial files, no temporaries).
  for (const auto& file : files_under(dir))
    if (!before.count(file) && !c.may_create.count(file) && !c.in_process)
      ADD_FAILURE() << "left behind: " << file;
  for (const auto& file : files_under(dir))
    EXPECT_EQ(file.find(".tmp"), std::string::npos) << "temporary file left: " << file;
}

INSTANTIATE_TEST_SUITE_P(Table, Robustness, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           std::string name = info.param.id;
                           for (char& ch : name)
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return name;
                         });

TEST(RobustnessExtra, DocsListEveryCase) {
  std::string docs = read_bytes(std::string(DISTILLERY_SOURCE_DIR) + "/docs/reliability.md");
  const std::string begin = "<!-- robustness-table:begin -->\n", end = "<!-- robustness-table:end -->";
  auto b = docs.find(begin), e = docs.find(end);
  ASSERT_NE(b, std::string::npos) << "docs/reliability.md lacks the table markers";
  ASSERT_NE(e, std::string::npos);
  std::string in_docs = docs.substr(b + begin.size(), e - b - begin.size());
  std::string generated = markdown_table(cases());
  if (in_docs != generated) {
    std::string out = (fs::temp_directory_path() / "robustness_table.md").string();
    write_bytes(out, generated);
    FAIL() << "docs/reliability.md is out of date with the case table; the current table is in " << out;
  }
}

}  // namespace
