"""torchvision's VGG, ResNet, MobileNetV2 and AlexNet written in plain torch.nn, with
torchvision's module and parameter names (so their ``state_dict`` keys are torchvision's),
and width arguments for tiny test versions. Imports torch: import it after
``pytest.importorskip("torch")``.

Written after torchvision/models/{vgg,resnet,mobilenetv2,alexnet}.py: the same modules,
names and forward passes, without weight downloads or init schemes.
"""
import torch
from torch import nn


def _make_divisible(v, divisor=8, min_value=None):
  min_value = min_value or divisor
  new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
  if new_v < 0.9 * v:
    new_v += divisor
  return new_v


class VGG(nn.Module):
  """torchvision.models.vgg16 (``cfg`` widths, 'M' = max pool) [_bn]."""

  def __init__(self, cfg, batch_norm=False, num_classes=1000, hidden=4096, in_channels=3):
    super().__init__()
    layers, c = [], in_channels
    for v in cfg:
      if v == "M":
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        continue
      layers.append(nn.Conv2d(c, v, kernel_size=3, padding=1))
      if batch_norm:
        layers.append(nn.BatchNorm2d(v))
      layers.append(nn.ReLU(inplace=True))
      c = v
    self.features = nn.Sequential(*layers)
    self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    self.classifier = nn.Sequential(
        nn.Linear(c * 7 * 7, hidden), nn.ReLU(True), nn.Dropout(),
        nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(),
        nn.Linear(hidden, num_classes))

  def forward(self, x):
    return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _conv3x3(cin, cout, stride=1):
  return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin, cout, stride=1):
  return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = _conv3x3(inplanes, planes, stride)
    self.bn1 = nn.BatchNorm2d(planes)
    self.relu = nn.ReLU(inplace=True)
    self.conv2 = _conv3x3(planes, planes)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = downsample

  def forward(self, x):
    out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
    identity = x if self.downsample is None else self.downsample(x)
    return self.relu(out + identity)


class Bottleneck(nn.Module):
  """torchvision's ResNet V1.5 bottleneck: the stride is on the 3x3 conv."""
  expansion = 4

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = _conv1x1(inplanes, planes)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = _conv3x3(planes, planes, stride)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = _conv1x1(planes, planes * self.expansion)
    self.bn3 = nn.BatchNorm2d(planes * self.expansion)
    self.relu = nn.ReLU(inplace=True)
    self.downsample = downsample

  def forward(self, x):
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    identity = x if self.downsample is None else self.downsample(x)
    return self.relu(out + identity)


class ResNet(nn.Module):
  """torchvision.models.resnet18/50/101 (``widths``: the four stages' planes, ``stem``: conv1's)."""

  def __init__(self, block, stage_sizes, num_classes=1000, widths=(64, 128, 256, 512), stem=64,
               in_channels=3):
    super().__init__()
    self.inplanes = stem
    self.conv1 = nn.Conv2d(in_channels, stem, kernel_size=7, stride=2, padding=3, bias=False)
    self.bn1 = nn.BatchNorm2d(stem)
    self.relu = nn.ReLU(inplace=True)
    self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    self.layer1 = self._make_layer(block, widths[0], stage_sizes[0])
    self.layer2 = self._make_layer(block, widths[1], stage_sizes[1], stride=2)
    self.layer3 = self._make_layer(block, widths[2], stage_sizes[2], stride=2)
    self.layer4 = self._make_layer(block, widths[3], stage_sizes[3], stride=2)
    self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    self.fc = nn.Linear(widths[3] * block.expansion, num_classes)

  def _make_layer(self, block, planes, blocks, stride=1):
    downsample = None
    if stride != 1 or self.inplanes != planes * block.expansion:
      downsample = nn.Sequential(_conv1x1(self.inplanes, planes * block.expansion, stride),
                                 nn.BatchNorm2d(planes * block.expansion))
    layers = [block(self.inplanes, planes, stride, downsample)]
    self.inplanes = planes * block.expansion
    layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)

  def forward(self, x):
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.fc(torch.flatten(self.avgpool(x), 1))


class ConvBNReLU(nn.Sequential):
  """torchvision's Conv2dNormActivation with ReLU6: keys ``.0`` (conv), ``.1`` (BN)."""

  def __init__(self, cin, cout, kernel_size=3, stride=1, groups=1):
    super().__init__(nn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2, groups=groups,
                               bias=False),
                     nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):

  def __init__(self, inp, oup, stride, expand_ratio):
    super().__init__()
    hidden = int(round(inp * expand_ratio))
    self.use_res_connect = stride == 1 and inp == oup
    layers = [ConvBNReLU(inp, hidden, kernel_size=1)] if expand_ratio != 1 else []
    layers += [ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
               nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
    self.conv = nn.Sequential(*layers)

  def forward(self, x):
    return x + self.conv(x) if self.use_res_connect else self.conv(x)


MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1))


class MobileNetV2(nn.Module):
  """torchvision.models.mobilenet_v2(width_mult=...)."""

  def __init__(self, num_classes=1000, width_mult=1.0, stages=MOBILENET_V2_STAGES, in_channels=3):
    super().__init__()
    cin = _make_divisible(32 * width_mult)
    self.last_channel = _make_divisible(1280 * max(1.0, width_mult))
    features = [ConvBNReLU(in_channels, cin, stride=2)]
    for t, c, n, s in stages:
      cout = _make_divisible(c * width_mult)
      for i in range(n):
        features.append(InvertedResidual(cin, cout, s if i == 0 else 1, expand_ratio=t))
        cin = cout
    features.append(ConvBNReLU(cin, self.last_channel, kernel_size=1))
    self.features = nn.Sequential(*features)
    self.classifier = nn.Sequential(nn.Dropout(p=0.2), nn.Linear(self.last_channel, num_classes))

  def forward(self, x):
    x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
    return self.classifier(torch.flatten(x, 1))


class AlexNet(nn.Module):
  """torchvision.models.alexnet (``widths``: the five convs'; Caffe's are 96/256/384/384/256)."""

  def __init__(self, num_classes=1000, widths=(64, 192, 384, 256, 256), hidden=4096, in_channels=3):
    super().__init__()
    w1, w2, w3, w4, w5 = widths
    self.features = nn.Sequential(
        nn.Conv2d(in_channels, w1, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(w1, w2, kernel_size=5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(w2, w3, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(w3, w4, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(w4, w5, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2))
    self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
    self.classifier = nn.Sequential(
        nn.Dropout(), nn.Linear(w5 * 6 * 6, hidden), nn.ReLU(inplace=True),
        nn.Dropout(), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
        nn.Linear(hidden, num_classes))

  def forward(self, x):
    return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def randomize_(model, seed=0):
  """Seeded random weights at He scale (logits of order 1, where torch's default init shrinks
  them through depth) and non-trivial eval-mode BN: random weight, bias, running mean and
  variance (fresh modules have 1, 0, 0, 1), so the import of each is checked. Eval mode."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, (nn.Conv2d, nn.Linear)):
        fan_in = m.weight[0].numel()
        m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
        if m.bias is not None:
          m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
      if isinstance(m, nn.BatchNorm2d):
        c = m.num_features
        m.weight.copy_(torch.rand(c, generator=g) + 0.5)
        m.bias.copy_(torch.randn(c, generator=g) * 0.1)
        m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
        m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
        m.num_batches_tracked.fill_(7)
    for m in model.modules():  # residual branches start small, or deep streams grow ~2x a block
      last_bn = {BasicBlock: "bn2", Bottleneck: "bn3"}.get(type(m))
      if last_bn:
        getattr(m, last_bn).weight.mul_(0.2)
      if isinstance(m, InvertedResidual) and m.use_res_connect:
        m.conv[-1].weight.mul_(0.2)
  return model.eval()
