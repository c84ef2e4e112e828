"""PyTorch ports of Distillery's zoo presets used by the benchmark (src/distillery/models/).

Each port keeps the C++ layer order, hyper-parameters, normalisation settings and weight
initialisation, so parameter counts are equal and a training step does the same work.
forward() returns (logits, [stage features, shallow to deep]) like ModelOutput.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------------
# Initialisation (init.cpp)


def init_cnn_weights(module):
    """Kaiming normal (fan-out, ReLU) convolutions, BatchNorm 1/0, Linear N(0, 0.01)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def init_transformer_weights(module):
    """Truncated normal (std 0.02, at 2 std) Linear, conv N(0, sqrt(2 / fan_out)), norms 1/0."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-0.04, b=0.04)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                kh, kw = m.kernel_size
                fan_out = kh * kw * m.out_channels / m.groups
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------
# ResNet backbone (resnet.cpp): BasicBlock, torchvision v1.5 layout, dilation for output stride


def conv3x3(cin, cout, stride, dilation):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    def __init__(self, cin, planes, stride, first_dilation, dilation):
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride, first_dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.downsample(x) if self.downsample is not None else x
        return torch.relu(out)


class ResNet18Backbone(nn.Module):
    """ResNet-18 for segmentation inputs <= 128 px: 3x3 stride-2 stem + max-pool, output
    stride 8 (layer3 and layer4 dilated), stages at strides 4, 8, 8, 8."""

    def __init__(self, base_width, in_channels, output_stride=8):
        super().__init__()
        stem_stride = 4
        undilated = stem_stride * 8
        dilated_stages = {undilated: 0, undilated // 2: 1, undilated // 4: 2, undilated // 8: 3}[output_stride]
        w = base_width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, stride=2, padding=1))
        cin, dilation = w, 1
        self.channels = []
        for stage in range(4):
            planes = w << stage
            stride = 1 if stage == 0 else 2
            previous_dilation = dilation
            if stage > 0 and stage >= 4 - dilated_stages:
                dilation *= stride
                stride = 1
            blocks = []
            for b in range(2):
                blocks.append(BasicBlock(cin, planes, stride if b == 0 else 1,
                                         previous_dilation if b == 0 else dilation, dilation))
                cin = planes
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
            self.channels.append(cin)
        for child in self.children():
            init_cnn_weights(child)

    def forward(self, images):
        x = self.stem(images)
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        return features


# ---------------------------------------------------------------------------------------------
# DeepLabV3 head (deeplabv3.cpp)


def conv_bn_relu(cin, cout, kernel, dilation=1):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=(kernel - 1) // 2 * dilation,
                                   dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def aspp_rates_for(input_size, output_stride):
    feature_size = (input_size + output_stride - 1) // output_stride
    base = max(1, int(math.floor(feature_size / 8.0 + 0.5)))  # std::lround
    return [base, 2 * base, 3 * base]


class ASPP(nn.Module):
    def __init__(self, cin, cout, rates, dropout=0.5):
        super().__init__()
        # Named branch0..branchN as in the C++, so parameter names match one to one.
        self.branches = [conv_bn_relu(cin, cout, 1)] + [conv_bn_relu(cin, cout, 3, r) for r in rates]
        for i, branch in enumerate(self.branches):
            self.add_module(f"branch{i}", branch)
        self.pooling = conv_bn_relu(cin, cout, 1)
        self.project = nn.Sequential(*conv_bn_relu((len(rates) + 2) * cout, cout, 1),
                                     nn.Dropout(dropout))

    def forward(self, x):
        outputs = [branch(x) for branch in self.branches]
        # Image pooling: a 1x1 map broadcast back over the map (as the C++ does, with expand).
        pooled = self.pooling(x.mean((2, 3), keepdim=True))
        outputs.append(pooled.expand(-1, -1, x.size(2), x.size(3)))
        return self.project(torch.cat(outputs, 1))


class DeepLabHead(nn.Module):
    def __init__(self, cin, channels, num_classes, rates, dropout=0.5):
        super().__init__()
        self.aspp = ASPP(cin, channels, rates, dropout)
        self.refine = conv_bn_relu(channels, channels, 3)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x):
        return self.classifier(self.refine(self.aspp(x)))


class DeepLabV3ResNet18(nn.Module):
    def __init__(self, width, in_channels=1, num_classes=11, input_size=64):
        super().__init__()
        base = max(1, int(math.floor(64 * width + 0.5)))
        self.backbone = ResNet18Backbone(base, in_channels, output_stride=8)
        self.head = DeepLabHead(self.backbone.channels[-1], 4 * base, num_classes,
                                aspp_rates_for(input_size, 8))
        init_cnn_weights(self.head)
        self.stage_channels = list(self.backbone.channels)

    def forward(self, images):
        features = self.backbone(images)
        return self.head(features[-1]), features


# ---------------------------------------------------------------------------------------------
# MiT encoder (mit.cpp) and SegFormer (segformer.cpp)


def tokens_to_map(tokens, h, w):
    return tokens.transpose(1, 2).reshape(tokens.size(0), tokens.size(2), h, w)


def map_to_tokens(x):
    return x.flatten(2).transpose(1, 2)


class OverlapPatchEmbed(nn.Module):
    def __init__(self, cin, dim, kernel, stride):
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, images):
        x = self.proj(images)
        return self.norm(map_to_tokens(x)), x.size(2), x.size(3)


class EfficientSelfAttention(nn.Module):
    def __init__(self, dim, heads, sr_ratio):
        super().__init__()
        self.dim, self.heads, self.sr_ratio = dim, heads, sr_ratio
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, stride=sr_ratio)
            self.sr_norm = nn.LayerNorm(dim)

    def forward(self, tokens, h, w):
        batch, n = tokens.size(0), tokens.size(1)
        head_dim = self.dim // self.heads
        query = self.q(tokens).reshape(batch, n, self.heads, head_dim).permute(0, 2, 1, 3)
        source = tokens
        if self.sr_ratio > 1:
            source = self.sr_norm(map_to_tokens(self.sr(tokens_to_map(tokens, h, w))))
        m = source.size(1)
        key_value = self.kv(source).reshape(batch, m, 2, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        key, value = key_value[0], key_value[1]
        attention = torch.matmul(query, key.transpose(-2, -1)).mul(1.0 / math.sqrt(head_dim))
        attention = attention.softmax(-1)
        out = torch.matmul(attention, value).transpose(1, 2).reshape(batch, n, self.dim)
        return self.proj(out)


class MixFFN(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, tokens, h, w):
        hidden = self.fc1(tokens)
        hidden = map_to_tokens(self.dwconv(tokens_to_map(hidden, h, w)))
        return self.fc2(F.gelu(hidden))


class DropPath(nn.Module):
    """Stochastic depth: per-sample Bernoulli keep mask scaled by 1 / keep; identity at p = 0."""

    def __init__(self, p=0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p <= 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((x.size(0),) + (1,) * (x.dim() - 1), dtype=x.dtype).bernoulli_(keep)
        return x * mask / keep


class MiTBlock(nn.Module):
    def __init__(self, dim, heads, sr_ratio, mlp_ratio, drop_path):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = EfficientSelfAttention(dim, heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MixFFN(dim, int(math.floor(dim * mlp_ratio + 0.5)))
        self.drop_path = DropPath(drop_path)

    def forward(self, tokens, h, w):
        x = tokens + self.drop_path(self.attn(self.norm1(tokens), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x), h, w))


class MiTEncoder(nn.Module):
    def __init__(self, dims, depths, heads, sr_ratios, in_channels=1, patch_kernels=(7, 3, 3, 3),
                 patch_strides=(4, 2, 2, 2), mlp_ratio=4.0, drop_path=0.0):
        super().__init__()
        total_blocks = sum(depths)
        index = 0
        cin = in_channels
        for s in range(4):
            self.add_module(f"patch_embed{s + 1}",
                            OverlapPatchEmbed(cin, dims[s], patch_kernels[s], patch_strides[s]))
            blocks = []
            for _ in range(depths[s]):
                # Stochastic depth grows linearly from 0 (first block) to drop_path (last block).
                rate = drop_path * index / (total_blocks - 1) if total_blocks > 1 else 0.0
                blocks.append(MiTBlock(dims[s], heads[s], sr_ratios[s], mlp_ratio, rate))
                index += 1
            self.add_module(f"block{s + 1}", nn.ModuleList(blocks))
            self.add_module(f"norm{s + 1}", nn.LayerNorm(dims[s], eps=1e-6))
            cin = dims[s]

    def forward(self, images):
        maps = []
        x = images
        for s in range(1, 5):
            tokens, h, w = getattr(self, f"patch_embed{s}")(x)
            for block in getattr(self, f"block{s}"):
                tokens = block(tokens, h, w)
            x = tokens_to_map(getattr(self, f"norm{s}")(tokens), h, w)
            maps.append(x)
        return maps


class SegFormerHead(nn.Module):
    def __init__(self, in_channels, embed_dim, num_classes, dropout=0.1):
        super().__init__()
        for i, c in enumerate(in_channels):
            self.add_module(f"linear_c{i + 1}", nn.Linear(c, embed_dim))
        self.stage_linears = [getattr(self, f"linear_c{i + 1}") for i in range(len(in_channels))]
        self.linear_fuse = nn.Conv2d(len(in_channels) * embed_dim, embed_dim, 1, bias=False)
        self.linear_fuse_bn = nn.BatchNorm2d(embed_dim)
        self.dropout = nn.Dropout2d(dropout)
        self.linear_pred = nn.Conv2d(embed_dim, num_classes, 1)

    def forward(self, features):
        h, w = features[0].shape[2:]
        upsampled = []
        # Deepest first, as in the reference implementation.
        for f, linear in reversed(list(zip(features, self.stage_linears))):
            projected = linear(f.flatten(2).transpose(1, 2))
            x = projected.transpose(1, 2).reshape(f.size(0), -1, f.size(2), f.size(3))
            if x.shape[2:] != (h, w):
                x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
            upsampled.append(x)
        x = torch.relu(self.linear_fuse_bn(self.linear_fuse(torch.cat(upsampled, 1))))
        return self.linear_pred(self.dropout(x))


class SegFormer(nn.Module):
    def __init__(self, dims, depths, heads, decode_dim=64, in_channels=1, num_classes=11,
                 sr_ratios=(4, 2, 1, 1), drop_path=0.0):
        super().__init__()
        self.encoder = MiTEncoder(dims, depths, heads, sr_ratios, in_channels=in_channels,
                                  drop_path=drop_path)
        self.decode_head = SegFormerHead(list(dims), decode_dim, num_classes)
        for child in self.children():
            init_transformer_weights(child)
        self.stage_channels = list(dims)

    def forward(self, images):
        features = self.encoder(images)
        return self.decode_head(features), features


# ---------------------------------------------------------------------------------------------
# Presets (cnn_zoo.cpp, transformer_zoo.cpp) for in_channels 1, 11 classes, 64x64 input.

PRESETS = {
    "deeplabv3_resnet18": lambda: DeepLabV3ResNet18(0.5),
    "deeplabv3_resnet18_slim": lambda: DeepLabV3ResNet18(0.25),
    "segformer_b0": lambda: SegFormer((16, 32, 64, 128), (2, 2, 2, 2), (1, 2, 4, 8)),
    "segformer_b2": lambda: SegFormer((32, 64, 160, 256), (2, 2, 3, 2), (1, 2, 5, 8)),
}

# Exact counts printed by the C++ (count of model->parameters() numel for the zoo presets
# with ModelOptions{}; a throwaway program linked against libdistillery, 2026-11-23).
CPP_PARAMS = {
    "deeplabv3_resnet18": 3977323,
    "deeplabv3_resnet18_slim": 996411,
    "segformer_b0": 695947,
    "segformer_b2": 3279819,
}


def create_model(name):
    if name not in PRESETS:
        raise ValueError(f"unknown model '{name}' (known: {', '.join(PRESETS)})")
    return PRESETS[name]()


def is_transformer(name):
    return name.startswith("segformer")


def count_parameters(module):
    return sum(p.numel() for p in module.parameters())
