// CNN presets, sized for the embedded benchmarks: fashion-seg (64x64, 1 channel, 11 classes)
// and fashion-mnist (28x28, 1 channel, 10 classes).
//
// Stems. Segmentation inputs up to 128 px use a 3x3 stride-2 conv + max-pool instead of
// torchvision's 7x7 (sized for 224-px photos); output stride 8 dilates layer3 and layer4, so the
// stages sit at strides 4, 8, 8, 8 - the same as MobileNetV2's (stride-2 stem, 160-group
// dilated) - and a 64x64 scene gives 16x16 shallow features and an 8x8 map for ASPP.
// Dropping the max-pool (stages at 2, 4, 8, 8) measured 15% (ResNet-18) to 35% (ResNet-50)
// slower training on 2 cores for the same 8x8 logits. Larger inputs get the 7x7 ImageNet stem.
// Classification inputs up to 64 px use a 3x3 stride-1 conv and no max-pool (stages at 1, 2, 4,
// 8; for MobileNetV2 the 24-channel group does not stride either), larger ones the ImageNet
// stems.
//
// Widths. ModelOptions::width, when > 0, replaces the preset's multiplier: ResNet base width =
// round(64 * width), ASPP width = 4 * base width (torchvision: 64 and 256); MobileNetV2 channels
// scale as in torchvision, ASPP width = make_divisible(32 * width) (a light head: the reference
// DeepLabV3-MobileNetV2 x0.5 has ~0.54M parameters in all).
#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "distillery/core/error.h"
#include "distillery/models/cnn_classifier.h"
#include "distillery/models/deeplabv3.h"
#include "distillery/models/mobilenetv2.h"
#include "distillery/models/resnet.h"
#include "distillery/models/zoo.h"

namespace distillery {

namespace {

constexpr int64_t kSegmentationOutputStride = 8;

double width_or(const ModelOptions& options, double preset_width) {
  if (options.width < 0) throw ConfigError("model width: must be positive (0: the preset's)");
  return options.width > 0 ? options.width : preset_width;
}

void check_common(const ModelOptions& options) {
  if (options.num_classes < 1) throw ConfigError("model num_classes: must be positive");
  if (options.in_channels < 1) throw ConfigError("model in_channels: must be positive");
  if (options.input_size < 1) throw ConfigError("model input_size: must be positive");
}

int64_t resnet_base_width(double width) {
  return std::max<int64_t>(1, std::lround(64 * width));
}

DeepLabV3Options deeplab_head_options(const ModelOptions& options, int64_t aspp_channels) {
  DeepLabV3Options head;
  head.num_classes = options.num_classes;
  head.aspp_channels = aspp_channels;
  head.atrous_rates = aspp_rates_for(options.input_size, kSegmentationOutputStride);
  head.aux_head = options.aux_head;
  if (options.head_dropout >= 0) head.aspp_dropout = options.head_dropout;
  return head;
}

ResNetOptions resnet_options(int64_t depth, const std::vector<int64_t>& layers, double width,
                             const ModelOptions& options, bool classification) {
  ResNetOptions resnet = ResNetOptions::for_depth(depth);
  if (!layers.empty()) resnet.layers = layers;
  resnet.base_width = resnet_base_width(width);
  resnet.in_channels = options.in_channels;
  if (classification) {
    if (options.input_size <= 64) resnet.stem = ResNetStemOptions{3, 1, false};
    resnet.output_stride = resnet.stem.total_stride() * 8;
  } else {
    if (options.input_size <= 128) resnet.stem = ResNetStemOptions{3, 2, true};
    resnet.output_stride = kSegmentationOutputStride;
  }
  return resnet;
}

Model deeplabv3_resnet(const ModelOptions& options, int64_t depth,
                       const std::vector<int64_t>& layers, double preset_width) {
  check_common(options);
  const double width = width_or(options, preset_width);
  auto backbone =
      std::make_shared<ResNetImpl>(resnet_options(depth, layers, width, options, false));
  return std::make_shared<DeepLabV3Impl>(
      backbone, deeplab_head_options(options, 4 * resnet_base_width(width)));
}

Model deeplabv3_mobilenetv2(const ModelOptions& options, double preset_width) {
  check_common(options);
  const double width = width_or(options, preset_width);
  MobileNetV2Options mobilenet;
  mobilenet.width_mult = width;
  mobilenet.in_channels = options.in_channels;
  mobilenet.output_stride = kSegmentationOutputStride;
  mobilenet.last_channels = 0;  // the head reads the 320-group directly (keeps it light)
  // Residual blocks start as the identity: trained from scratch on fashion-seg, the plain
  // torchvision init stays near the all-background prediction for 1,000+ steps.
  mobilenet.zero_init_residual = true;
  auto backbone = std::make_shared<MobileNetV2Impl>(mobilenet);
  return std::make_shared<DeepLabV3Impl>(backbone,
                                         deeplab_head_options(options, make_divisible(32 * width)));
}

Model resnet_classifier(const ModelOptions& options, int64_t depth, double preset_width) {
  check_common(options);
  const double width = width_or(options, preset_width);
  auto backbone = std::make_shared<ResNetImpl>(resnet_options(depth, {}, width, options, true));
  return std::make_shared<CnnClassifierImpl>(backbone, options.num_classes);
}

Model mobilenetv2_classifier(const ModelOptions& options, double preset_width) {
  check_common(options);
  MobileNetV2Options mobilenet;
  mobilenet.width_mult = width_or(options, preset_width);
  mobilenet.in_channels = options.in_channels;
  if (options.input_size <= 64) {
    mobilenet.stem_stride = 1;
    mobilenet.first_stage_stride = 1;
  }
  mobilenet.output_stride = mobilenet.stem_stride * mobilenet.first_stage_stride * 8;
  auto backbone = std::make_shared<MobileNetV2Impl>(mobilenet);
  return std::make_shared<CnnClassifierImpl>(backbone, options.num_classes, /*dropout=*/0.2);
}

}  // namespace

void register_cnn_models(std::vector<ZooEntry>& zoo) {
  const auto seg = Task::Segmentation;
  const auto cls = Task::Classification;
  zoo.push_back({"deeplabv3_resnet50",
                 "DeepLabV3, ResNet-50 (Bottleneck) at width x0.375 (base 24), output stride 8: "
                 "the strong CNN teacher",
                 seg, [](const ModelOptions& o) { return deeplabv3_resnet(o, 50, {}, 0.375); }});
  zoo.push_back({"deeplabv3_resnet18",
                 "DeepLabV3, ResNet-18 at width x0.5 (base 32), output stride 8",
                 seg, [](const ModelOptions& o) { return deeplabv3_resnet(o, 18, {}, 0.5); }});
  zoo.push_back({"deeplabv3_resnet18_slim",
                 "DeepLabV3, ResNet-18 at width x0.25 (base 16), output stride 8: a small "
                 "CNN student",
                 seg, [](const ModelOptions& o) { return deeplabv3_resnet(o, 18, {}, 0.25); }});
  zoo.push_back({"deeplabv3_mobilenetv2",
                 "DeepLabV3, MobileNetV2 x0.5, output stride 8, light ASPP (16 channels)",
                 seg, [](const ModelOptions& o) { return deeplabv3_mobilenetv2(o, 0.5); }});
  zoo.push_back({"resnet18_cls",
                 "ResNet-18 classifier at width x0.5 (base 32), 3x3 stride-1 stem for 28x28 input",
                 cls, [](const ModelOptions& o) { return resnet_classifier(o, 18, 0.5); }});
  zoo.push_back({"resnet50_cls",
                 "ResNet-50 classifier at width x0.5 (base 32), 3x3 stride-1 stem: the teacher",
                 cls, [](const ModelOptions& o) { return resnet_classifier(o, 50, 0.5); }});
  zoo.push_back({"mobilenetv2_cls",
                 "MobileNetV2 x0.5 classifier, stride-1 stem for 28x28 input",
                 cls, [](const ModelOptions& o) { return mobilenetv2_classifier(o, 0.5); }});
}

}  // namespace distillery
