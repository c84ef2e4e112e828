// safetensors reading / writing with its integrity checks, and the name maps from torchvision
// ResNet / MobileNetV2, the SegFormer reference MiT and Hugging Face Segformer state dicts
// (built here from the layouts' own key names) into Distillery's backbones, and back.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <string>

#include "distillery/core/error.h"
#include "distillery/core/safetensors.h"
#include "distillery/models/zoo.h"
#include "distillery/train/pretrained.h"

using namespace distillery;
using TensorMap = std::map<std::string, torch::Tensor>;

namespace {

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

std::string file_with(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

std::string float_bytes(std::initializer_list<float> values) {
  std::string s;
  for (float v : values) s.append(reinterpret_cast<const char*>(&v), 4);
  return s;
}

void expect_refused(const std::string& bytes, const std::string& fragment) {
  try {
    parse_safetensors(bytes, "test.safetensors");
    ADD_FAILURE() << "accepted; expected an error containing '" << fragment << "'";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("test.safetensors"), std::string::npos) << e.what();
  }
}

torch::Tensor tensor_of(const Model& model, const std::string& name) {
  for (const auto& p : model->named_parameters())
    if (p.key() == name) return p.value();
  for (const auto& b : model->named_buffers())
    if (b.key() == name) return b.value();
  ADD_FAILURE() << "model has no tensor " << name;
  return torch::Tensor();
}

int64_t count_prefixed(const Model& model, const std::string& prefix) {
  int64_t n = 0;
  for (const auto& p : model->named_parameters()) n += p.key().rfind(prefix, 0) == 0;
  for (const auto& b : model->named_buffers()) n += b.key().rfind(prefix, 0) == 0;
  return n;
}

void add_bn(TensorMap& sd, const std::string& name, int64_t c) {
  sd[name + ".weight"] = torch::rand({c});
  sd[name + ".bias"] = torch::randn({c});
  sd[name + ".running_mean"] = torch::randn({c});
  sd[name + ".running_var"] = torch::rand({c}) + 0.5;
  sd[name + ".num_batches_tracked"] = torch::tensor(int64_t{1234});
}

void add_linear(TensorMap& sd, const std::string& name, int64_t out, int64_t in) {
  sd[name + ".weight"] = torch::randn({out, in});
  sd[name + ".bias"] = torch::randn({out});
}

void add_layer_norm(TensorMap& sd, const std::string& name, int64_t c) {
  sd[name + ".weight"] = torch::rand({c});
  sd[name + ".bias"] = torch::randn({c});
}

// torchvision's resnet18() state dict, key for key.
TensorMap torchvision_resnet18() {
  TensorMap sd;
  sd["conv1.weight"] = torch::randn({64, 3, 7, 7});
  add_bn(sd, "bn1", 64);
  int64_t in = 64;
  for (int layer = 1; layer <= 4; ++layer) {
    const int64_t planes = 64 << (layer - 1);
    for (int block = 0; block < 2; ++block) {
      const std::string b = "layer" + std::to_string(layer) + "." + std::to_string(block);
      sd[b + ".conv1.weight"] = torch::randn({planes, block == 0 ? in : planes, 3, 3});
      add_bn(sd, b + ".bn1", planes);
      sd[b + ".conv2.weight"] = torch::randn({planes, planes, 3, 3});
      add_bn(sd, b + ".bn2", planes);
      if (block == 0 && layer > 1) {
        sd[b + ".downsample.0.weight"] = torch::randn({planes, in, 1, 1});
        add_bn(sd, b + ".downsample.1", planes);
      }
    }
    in = planes;
  }
  add_linear(sd, "fc", 1000, 512);
  return sd;
}

// torchvision's mobilenet_v2() state dict (width 1.0): features.0 = conv-bn-relu6, features.1..17
// inverted residuals (t, c, n, s as in the paper), features.18 = 1x1 conv to 1280, classifier.1.
TensorMap torchvision_mobilenet_v2() {
  TensorMap sd;
  sd["features.0.0.weight"] = torch::randn({32, 3, 3, 3});
  add_bn(sd, "features.0.1", 32);
  const int settings[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2},
                              {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
  int64_t in = 32;
  int feature = 1;
  for (const auto& s : settings)
    for (int r = 0; r < s[2]; ++r, ++feature) {
      const std::string f = "features." + std::to_string(feature) + ".conv";
      const int64_t hidden = in * s[0], out = s[1];
      if (s[0] == 1) {
        sd[f + ".0.0.weight"] = torch::randn({hidden, 1, 3, 3});
        add_bn(sd, f + ".0.1", hidden);
        sd[f + ".1.weight"] = torch::randn({out, hidden, 1, 1});
        add_bn(sd, f + ".2", out);
      } else {
        sd[f + ".0.0.weight"] = torch::randn({hidden, in, 1, 1});
        add_bn(sd, f + ".0.1", hidden);
        sd[f + ".1.0.weight"] = torch::randn({hidden, 1, 3, 3});
        add_bn(sd, f + ".1.1", hidden);
        sd[f + ".2.weight"] = torch::randn({out, hidden, 1, 1});
        add_bn(sd, f + ".3", out);
      }
      in = out;
    }
  sd["features.18.0.weight"] = torch::randn({1280, 320, 1, 1});
  add_bn(sd, "features.18.1", 1280);
  add_linear(sd, "classifier.1", 1000, 1280);
  return sd;
}

struct MiTSize {
  std::array<int64_t, 4> dims, depths, sr;
};
const MiTSize kMiTB0{{32, 64, 160, 256}, {2, 2, 2, 2}, {8, 4, 2, 1}};

// The SegFormer reference (NVlabs mix_transformer.py / mmseg "mit_b0.pth") encoder names.
TensorMap reference_mit(const MiTSize& size, const std::string& prefix) {
  TensorMap sd;
  int64_t in = 3;
  for (int s = 0; s < 4; ++s) {
    const std::string n = std::to_string(s + 1);
    const int64_t d = size.dims[s], k = s == 0 ? 7 : 3;
    sd[prefix + "patch_embed" + n + ".proj.weight"] = torch::randn({d, in, k, k});
    sd[prefix + "patch_embed" + n + ".proj.bias"] = torch::randn({d});
    add_layer_norm(sd, prefix + "patch_embed" + n + ".norm", d);
    for (int j = 0; j < size.depths[s]; ++j) {
      const std::string b = prefix + "block" + n + "." + std::to_string(j);
      add_layer_norm(sd, b + ".norm1", d);
      add_linear(sd, b + ".attn.q", d, d);
      add_linear(sd, b + ".attn.kv", 2 * d, d);
      add_linear(sd, b + ".attn.proj", d, d);
      if (size.sr[s] > 1) {
        sd[b + ".attn.sr.weight"] = torch::randn({d, d, size.sr[s], size.sr[s]});
        sd[b + ".attn.sr.bias"] = torch::randn({d});
        add_layer_norm(sd, b + ".attn.norm", d);
      }
      add_layer_norm(sd, b + ".norm2", d);
      add_linear(sd, b + ".mlp.fc1", 4 * d, d);
      sd[b + ".mlp.dwconv.dwconv.weight"] = torch::randn({4 * d, 1, 3, 3});
      sd[b + ".mlp.dwconv.dwconv.bias"] = torch::randn({4 * d});
      add_linear(sd, b + ".mlp.fc2", d, 4 * d);
    }
    add_layer_norm(sd, prefix + "norm" + n, d);
    in = d;
  }
  return sd;
}

// transformers' SegformerForSemanticSegmentation encoder names.
TensorMap huggingface_mit(const MiTSize& size) {
  TensorMap sd;
  const std::string e = "segformer.encoder.";
  int64_t in = 3;
  for (int s = 0; s < 4; ++s) {
    const std::string n = std::to_string(s);
    const int64_t d = size.dims[s], k = s == 0 ? 7 : 3;
    sd[e + "patch_embeddings." + n + ".proj.weight"] = torch::randn({d, in, k, k});
    sd[e + "patch_embeddings." + n + ".proj.bias"] = torch::randn({d});
    add_layer_norm(sd, e + "patch_embeddings." + n + ".layer_norm", d);
    for (int j = 0; j < size.depths[s]; ++j) {
      const std::string b = e + "block." + n + "." + std::to_string(j);
      add_layer_norm(sd, b + ".layer_norm_1", d);
      add_linear(sd, b + ".attention.self.query", d, d);
      add_linear(sd, b + ".attention.self.key", d, d);
      add_linear(sd, b + ".attention.self.value", d, d);
      if (size.sr[s] > 1) {
        sd[b + ".attention.self.sr.weight"] = torch::randn({d, d, size.sr[s], size.sr[s]});
        sd[b + ".attention.self.sr.bias"] = torch::randn({d});
        add_layer_norm(sd, b + ".attention.self.layer_norm", d);
      }
      add_linear(sd, b + ".attention.output.dense", d, d);
      add_layer_norm(sd, b + ".layer_norm_2", d);
      add_linear(sd, b + ".mlp.dense1", 4 * d, d);
      sd[b + ".mlp.dwconv.dwconv.weight"] = torch::randn({4 * d, 1, 3, 3});
      sd[b + ".mlp.dwconv.dwconv.bias"] = torch::randn({4 * d});
      add_linear(sd, b + ".mlp.dense2", d, 4 * d);
    }
    add_layer_norm(sd, e + "layer_norm." + n, d);
    in = d;
  }
  add_linear(sd, "decode_head.classifier", 150, 256);  // not an encoder tensor
  return sd;
}

ModelOptions photo_options(int64_t input_size = 256) {
  ModelOptions o;
  o.num_classes = 19;
  o.in_channels = 3;
  o.input_size = input_size;
  o.width = 1.0;
  return o;
}

// Every parameter and buffer whose name starts with `prefix` is equal in both models.
bool same_tensors(const Model& a, const Model& b, const std::string& prefix = "") {
  auto pa = a->named_parameters(), pb = b->named_parameters();
  for (const auto& p : pa)
    if (p.key().rfind(prefix, 0) == 0 && !torch::equal(p.value(), *pb.find(p.key()))) return false;
  auto ba = a->named_buffers(), bb = b->named_buffers();
  for (const auto& p : ba)
    if (p.key().rfind(prefix, 0) == 0 && !torch::equal(p.value(), *bb.find(p.key()))) return false;
  return true;
}

}  // namespace

TEST(Safetensors, ParsesAHandWrittenFile) {
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"I64","shape":[],"data_offsets":[8,16]},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  int64_t seven = 7;
  std::string data = float_bytes({1.5f, -2.0f}) + std::string(reinterpret_cast<const char*>(&seven), 8);
  SafetensorsFile file = parse_safetensors(file_with(header, data), "hand");
  ASSERT_EQ(file.tensors.size(), 2u);
  EXPECT_EQ(file.metadata.at("format"), "pt");
  EXPECT_TRUE(torch::equal(file.tensors.at("a"), torch::tensor({1.5f, -2.0f})));
  EXPECT_EQ(file.tensors.at("b").dim(), 0);
  EXPECT_EQ(file.tensors.at("b").item<int64_t>(), 7);
}

TEST(Safetensors, RoundTripsEveryDtype) {
  TensorMap tensors = {
      {"f32", torch::randn({3, 4})},
      {"f16", torch::randn({5}).to(torch::kHalf)},
      {"bf16", torch::randn({2, 2}).to(torch::kBFloat16)},
      {"f64", torch::randn({2}, torch::kDouble)},
      {"i64", torch::arange(6).view({2, 3})},
      {"i32", torch::arange(4, torch::kInt)},
      {"u8", torch::arange(200, 205).to(torch::kUInt8)},
      {"i8", torch::tensor({-3, 4}, torch::kChar)},
      {"bool", torch::tensor({true, false, true})},
      {"empty", torch::zeros({0, 3})},
      {"strided", torch::arange(12.0).view({3, 4}).t()}};
  std::string bytes = serialize_safetensors(tensors, {{"k", "v"}});
  // 8-byte length, then a JSON header padded so the data is 8-byte aligned.
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  EXPECT_EQ(bytes[8], '{');
  EXPECT_EQ((8 + n) % 8, 0u);
  SafetensorsFile back = parse_safetensors(bytes, "round trip");
  ASSERT_EQ(back.tensors.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    EXPECT_EQ(back.tensors.at(name).scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(back.tensors.at(name), t)) << name;
  }
  EXPECT_EQ(back.metadata.at("k"), "v");

  const std::string path = (std::filesystem::temp_directory_path() / "distillery_rt.safetensors").string();
  write_safetensors(path, tensors);
  EXPECT_TRUE(torch::equal(read_safetensors(path).tensors.at("bf16"), tensors.at("bf16")));
  std::filesystem::remove(path);
  EXPECT_THROW(write_safetensors("/nonexistent-dir/x.safetensors", tensors), Error);
  EXPECT_THROW(serialize_safetensors({{"c", torch::randn({2}, torch::kComplexFloat)}}), Error);
  EXPECT_THROW(read_safetensors("/nonexistent.safetensors"), DataError);
}

TEST(Safetensors, RefusesEveryMalformedHeader) {
  const std::string data = float_bytes({1, 2, 3, 4});
  auto one = [&](const std::string& entry) { return file_with(R"({"t":)" + entry + "}", data); };
  expect_refused("abc", "too short");
  expect_refused(le64(1000) + "{}", "exceeds the");
  expect_refused(le64(uint64_t{1} << 40) + "{}", "100 MB");
  expect_refused(file_with("[1,2]", ""), "does not start with '{'");
  expect_refused(file_with("{\"t\": ", ""), "not valid JSON");
  expect_refused(one(R"({"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,16]})"), "unsupported dtype");
  expect_refused(one(R"({"dtype":"F32","shape":[5],"data_offsets":[0,16]})"), "needs 20 bytes");
  expect_refused(one(R"({"dtype":"F32","shape":[-4],"data_offsets":[0,16]})"), "non-negative integers");
  expect_refused(one(R"({"dtype":"F32","shape":[2.5],"data_offsets":[0,16]})"), "non-negative integers");
  expect_refused(one(R"({"dtype":"F32","shape":[4],"data_offsets":[0,32]})"), "exceed the 16-byte");
  expect_refused(one(R"({"dtype":"F32","shape":[4],"data_offsets":[16,0]})"), "reversed");
  expect_refused(one(R"({"dtype":"F32","shape":[4],"data_offsets":[0]})"), "data_offsets");
  expect_refused(one(R"({"dtype":"F32","shape":[4]})"), "data_offsets");
  expect_refused(one(R"({"dtype":"F32","shape":[4],"data_offsets":[0,16],"extra":1})"), "unknown field");
  expect_refused(one(R"({"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,16]})"), "too large");
  expect_refused(file_with(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},)"
                           R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", data),
                 "overlaps");
  expect_refused(file_with(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", data), "belong to no entry");
  expect_refused(file_with(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data), "belong to no entry");
  expect_refused(file_with(R"({"__metadata__":{"a":1}})", ""), "not a string");
}

TEST(WeightNames, TorchvisionResNetLoadsIntoTheBackbone) {
  torch::manual_seed(1);
  TensorMap sd = torchvision_resnet18();
  Model model = create_model("deeplabv3_resnet18", photo_options());
  PretrainedReport report = load_state_dict(*model, sd, "resnet18.safetensors");
  EXPECT_EQ(report.naming, WeightNaming::Torchvision);
  EXPECT_EQ(report.prefix, "");
  EXPECT_EQ(static_cast<int64_t>(report.loaded.size()), count_prefixed(model, "backbone."));
  EXPECT_EQ(static_cast<int64_t>(report.loaded.size()), static_cast<int64_t>(sd.size()) - 2);
  EXPECT_TRUE(report.missing.empty()) << report.summary();
  EXPECT_EQ(report.unexpected, (std::vector<std::string>{"fc.bias", "fc.weight"}));
  EXPECT_TRUE(torch::equal(tensor_of(model, "backbone.stem.0.weight"), sd["conv1.weight"]));
  EXPECT_TRUE(torch::equal(tensor_of(model, "backbone.stem.1.running_mean"), sd["bn1.running_mean"]));
  EXPECT_TRUE(torch::equal(tensor_of(model, "backbone.layer3.0.downsample.0.weight"),
                           sd["layer3.0.downsample.0.weight"]));
  EXPECT_EQ(tensor_of(model, "backbone.layer4.1.bn2.num_batches_tracked").item<int64_t>(), 1234);

  // The same dict as found in a torchvision DeepLabV3 checkpoint ("backbone." prefix).
  TensorMap prefixed;
  for (const auto& [k, v] : sd) prefixed["backbone." + k] = v;
  Model again = create_model("deeplabv3_resnet18", photo_options());
  EXPECT_EQ(load_state_dict(*again, prefixed, "deeplab.safetensors").prefix, "backbone.");
  EXPECT_TRUE(same_tensors(model, again, "backbone."));
  EXPECT_FALSE(same_tensors(model, again));  // the heads were initialised independently

  // The 64-px preset (3x3 stem, width x0.5) cannot take these weights: refused, nothing copied.
  ModelOptions small;
  small.num_classes = 19;
  small.in_channels = 3;
  Model preset = create_model("deeplabv3_resnet18", small);
  torch::Tensor before = tensor_of(preset, "backbone.layer1.0.conv1.weight").clone();
  try {
    load_state_dict(*preset, sd, "resnet18.safetensors");
    FAIL() << "shape mismatches must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'conv1.weight' [64, 3, 7, 7] vs model 'backbone.stem.0.weight' [32, 3, 3, 3]"),
              std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("nothing loaded"), std::string::npos);
  }
  EXPECT_TRUE(torch::equal(tensor_of(preset, "backbone.layer1.0.conv1.weight"), before));
}

TEST(WeightNames, TorchvisionMobileNetV2LoadsIntoTheBackbone) {
  torch::manual_seed(2);
  TensorMap sd = torchvision_mobilenet_v2();
  // The DeepLabV3 backbone stops at the 320-channel group: features.18 is reported unexpected.
  Model seg = create_model("deeplabv3_mobilenetv2", photo_options());
  PretrainedReport report = load_state_dict(*seg, sd, "mobilenet_v2.safetensors");
  EXPECT_EQ(report.naming, WeightNaming::Torchvision);
  EXPECT_TRUE(report.missing.empty()) << report.summary();
  EXPECT_EQ(static_cast<int64_t>(report.loaded.size()), count_prefixed(seg, "backbone."));
  EXPECT_EQ(report.unexpected.size(), 8u);  // classifier.1.{bias,weight}, features.18.*
  EXPECT_TRUE(torch::equal(tensor_of(seg, "backbone.stage1.0.weight"), sd["features.0.0.weight"]));
  EXPECT_TRUE(torch::equal(tensor_of(seg, "backbone.stage1.3.body.3.weight"), sd["features.1.conv.1.weight"]));
  EXPECT_TRUE(torch::equal(tensor_of(seg, "backbone.stage2.0.body.3.weight"), sd["features.4.conv.1.0.weight"]));
  EXPECT_TRUE(torch::equal(tensor_of(seg, "backbone.stage3.6.body.6.weight"), sd["features.13.conv.2.weight"]));
  EXPECT_TRUE(torch::equal(tensor_of(seg, "backbone.stage4.3.body.7.running_var"), sd["features.17.conv.3.running_var"]));

  // The classifier keeps the final 1x1 conv: features.18 loads too.
  ModelOptions cls = photo_options(224);
  cls.num_classes = 1000;
  Model classifier = create_model("mobilenetv2_cls", cls);
  PretrainedReport full = load_state_dict(*classifier, sd, "mobilenet_v2.safetensors");
  EXPECT_TRUE(full.missing.empty()) << full.summary();
  EXPECT_EQ(full.unexpected, (std::vector<std::string>{"classifier.1.bias", "classifier.1.weight"}));
  EXPECT_TRUE(torch::equal(tensor_of(classifier, "backbone.stage4.4.weight"), sd["features.18.0.weight"]));
  EXPECT_TRUE(torch::equal(tensor_of(classifier, "backbone.stage4.5.bias"), sd["features.18.1.bias"]));
}

TEST(WeightNames, ReferenceMiTLoadsIntoTheEncoder) {
  torch::manual_seed(3);
  Model model = create_model("segformer_mit_b0", photo_options(512));
  TensorMap sd = reference_mit(kMiTB0, "backbone.");  // as in an mmseg SegFormer checkpoint
  sd["head.weight"] = torch::randn({1000, 256});       // ImageNet classifier of mit_b0.pth
  PretrainedReport report = load_state_dict(*model, sd, "mit_b0.safetensors");
  EXPECT_EQ(report.naming, WeightNaming::MiT);
  EXPECT_EQ(report.prefix, "backbone.");
  EXPECT_TRUE(report.missing.empty()) << report.summary();
  EXPECT_EQ(static_cast<int64_t>(report.loaded.size()), count_prefixed(model, "encoder."));
  EXPECT_EQ(report.unexpected, (std::vector<std::string>{"head.weight"}));
  EXPECT_TRUE(torch::equal(tensor_of(model, "encoder.block1.1.attn.sr_norm.weight"),
                           sd["backbone.block1.1.attn.norm.weight"]));
  EXPECT_TRUE(torch::equal(tensor_of(model, "encoder.block3.0.mlp.dwconv.weight"),
                           sd["backbone.block3.0.mlp.dwconv.dwconv.weight"]));
  EXPECT_TRUE(torch::equal(tensor_of(model, "encoder.norm4.bias"), sd["backbone.norm4.bias"]));

  // segformer_b2 (the 64-px teacher) has depths 2/2/3/2 and sr 4/2/1/1: block3.2 stays missing
  // and the sr conv shapes differ, so the load is refused.
  Model teacher = create_model("segformer_b2", photo_options(512));
  EXPECT_THROW(load_state_dict(*teacher, sd, "mit_b0.safetensors"), Error);
}

TEST(WeightNames, HuggingFaceSegformerLoadsIntoTheEncoder) {
  torch::manual_seed(4);
  Model model = create_model("segformer_mit_b0", photo_options(512));
  TensorMap sd = huggingface_mit(kMiTB0);
  PretrainedReport report = load_state_dict(*model, sd, "hf.safetensors");
  EXPECT_EQ(report.naming, WeightNaming::HuggingFace);
  EXPECT_EQ(report.prefix, "segformer.encoder.");
  EXPECT_TRUE(report.missing.empty()) << report.summary();
  EXPECT_EQ(report.unexpected, (std::vector<std::string>{"decode_head.classifier.bias", "decode_head.classifier.weight"}));
  const std::string b = "segformer.encoder.block.1.1.attention.self.";
  EXPECT_TRUE(torch::equal(tensor_of(model, "encoder.block2.1.attn.kv.weight"),
                           torch::cat({sd[b + "key.weight"], sd[b + "value.weight"]}, 0)));
  EXPECT_TRUE(torch::equal(tensor_of(model, "encoder.block2.1.attn.kv.bias"),
                           torch::cat({sd[b + "key.bias"], sd[b + "value.bias"]}, 0)));
  EXPECT_TRUE(torch::equal(tensor_of(model, "encoder.patch_embed1.norm.weight"),
                           sd["segformer.encoder.patch_embeddings.0.layer_norm.weight"]));
  EXPECT_TRUE(torch::equal(tensor_of(model, "encoder.block1.0.attn.sr_norm.bias"),
                           sd["segformer.encoder.block.0.0.attention.self.layer_norm.bias"]));
  EXPECT_TRUE(torch::equal(tensor_of(model, "encoder.norm3.weight"), sd["segformer.encoder.layer_norm.2.weight"]));

  // A missing encoder tensor is reported, not fatal.
  sd.erase("segformer.encoder.block.3.1.mlp.dense2.bias");
  Model partial = create_model("segformer_mit_b0", photo_options(512));
  PretrainedReport gap = load_state_dict(*partial, sd, "hf.safetensors");
  EXPECT_EQ(gap.missing, (std::vector<std::string>{"encoder.block4.1.mlp.fc2.bias"}));
  EXPECT_NE(gap.summary().find("1 missing: encoder.block4.1.mlp.fc2.bias"), std::string::npos) << gap.summary();
}

TEST(WeightNames, ExportedModelsLoadBackUnderEveryNaming) {
  torch::manual_seed(5);
  struct Case {
    const char* model;
    WeightNaming naming;
    const char* expected_key;
  };
  const Case cases[] = {
      {"deeplabv3_resnet18_slim", WeightNaming::Distillery, "backbone.stem.0.weight"},
      {"deeplabv3_resnet18_slim", WeightNaming::Torchvision, "backbone.conv1.weight"},
      {"deeplabv3_mobilenetv2", WeightNaming::Torchvision, "backbone.features.1.conv.1.weight"},
      {"segformer_b0", WeightNaming::MiT, "backbone.block1.0.attn.norm.weight"},
      {"segformer_b0", WeightNaming::HuggingFace, "segformer.encoder.block.0.0.attention.self.key.weight"},
      {"vit_tiny_seg", WeightNaming::Distillery, "backbone.norm.weight"}};
  for (const auto& c : cases) {
    ModelOptions options;
    Model source = create_model(c.model, options);
    // Move BatchNorm statistics away from their initial values so buffers are tested too.
    for (auto& b : source->named_buffers())
      if (b.value().is_floating_point()) b.value().uniform_(0.5, 1.5);
    TensorMap exported = export_state_dict(*source, c.naming);
    EXPECT_TRUE(exported.count(c.expected_key)) << c.model << " " << naming_name(c.naming);
    // Through the file format, as a user would.
    SafetensorsFile file = parse_safetensors(serialize_safetensors(exported), "export");
    Model target = create_model(c.model, options);
    PretrainedReport report = load_state_dict(*target, file.tensors, "export");
    EXPECT_EQ(report.naming, c.naming) << c.model;
    EXPECT_TRUE(report.missing.empty()) << report.summary();
    EXPECT_TRUE(report.unexpected.empty()) << report.summary();
    EXPECT_TRUE(same_tensors(source, target)) << c.model << " " << naming_name(c.naming);
  }
  ModelOptions options;
  Model vit = create_model("vit_tiny_seg", options);
  EXPECT_THROW(export_state_dict(*vit, WeightNaming::Torchvision), Error);
  EXPECT_THROW(load_state_dict(*vit, {{"unrelated", torch::zeros({1})}}, "x"), Error);
  // A tensor with the right name but the wrong kind of dtype is refused.
  TensorMap wrong = export_state_dict(*vit, WeightNaming::Distillery);
  wrong["backbone.norm.weight"] = wrong["backbone.norm.weight"].to(torch::kInt);
  EXPECT_THROW(load_state_dict(*vit, wrong, "x"), Error);
  // Half-precision files load into float models.
  TensorMap half = export_state_dict(*vit, WeightNaming::Distillery);
  for (auto& [k, v] : half)
    if (v.is_floating_point()) v = v.to(torch::kHalf);
  Model vit2 = create_model("vit_tiny_seg", options);
  load_state_dict(*vit2, half, "half");
  EXPECT_TRUE(torch::allclose(tensor_of(vit2, "backbone.norm.weight"), tensor_of(vit, "backbone.norm.weight"), 1e-2, 1e-3));
}
