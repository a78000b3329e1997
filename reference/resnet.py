"""Lab resnet — ResNet (seeds 000, 004).

He et al. (2015), "Deep residual learning for image recognition": stacking more layers on a
plain network eventually makes it *worse on its own training data* (degradation: not
overfitting, an optimisation problem). A residual block learns F(x) and outputs F(x) + x, so
a block that has nothing to add only has to push F towards 0, and the gradient reaches early
layers through the identity path unchanged.

The ImageNet networks here are torchvision's, layer for layer (same module names, so
torchvision's `state_dict` loads strictly): ResNet-18 / 34 with BasicBlock, ResNet-50 with
Bottleneck in torchvision's "v1.5" form (the stride of a downsampling bottleneck sits on its
3x3 convolution, not on the first 1x1 as in the paper).

Shapes through ResNet on a 224x224 image (C = 64·expansion: 64 for BasicBlock, 256 for Bottleneck):
    x        [N, 3, 224, 224]
    conv1    [N, 64, 112, 112]   7x7, stride 2, padding 3, no bias; bn1, relu
    maxpool  [N, 64, 56, 56]     3x3, stride 2, padding 1
    layer1   [N, C, 56, 56]      stride 1
    layer2   [N, 2C, 28, 28]     stride 2 (its first block)
    layer3   [N, 4C, 14, 14]     stride 2
    layer4   [N, 8C, 7, 7]       stride 2
    avgpool  [N, 8C, 1, 1]       AdaptiveAvgPool2d: any input size works
    fc       [N, num_classes]
Parameters: resnet18 11,689,512, resnet34 21,797,672, resnet50 25,557,032.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from autograder.data import mnist_splits
from autograder.runtime import count_params, get_device, seed_everything
from reference.lenet import accuracy  # the helpers of lab 10 (lenet)

__all__ = [
    "conv3x3",
    "conv1x1",
    "BasicBlock",
    "Bottleneck",
    "make_layer",
    "ResNet",
    "resnet18",
    "resnet34",
    "resnet50",
    "SmallResNet",
    "PlainBlock",
    "deep_net",
    "train_classifier",
    "accuracy",
    "count_params",
    "get_device",
    "mnist_splits",
    "seed_everything",
    "TRAIN_SETTINGS",
    "DEGRADATION_SETTINGS",
]

# How the notebook trains SmallResNet: Adam with a one-cycle schedule peaking at lr (course.yml's
# thresholds.accuracy is measured with these, benchmarks/resnet.py).
TRAIN_SETTINGS = {"epochs": 3, "lr": 1e-2, "batch_size": 64, "one_cycle": True}
# The degradation experiment: a shallow plain net, a deep plain net and the same deep net with
# skip connections, all trained identically (Adam, constant lr) on the first n_train digits.
DEGRADATION_SETTINGS = {"shallow_blocks": 2, "deep_blocks": 10, "width": 16, "n_train": 1000,
                        "epochs": 2, "lr": 3e-3, "batch_size": 50}


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (a BatchNorm follows it): [N, in, H, W] → [N, out, H/stride, W/stride]."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias: mixes channels at each position; [N, in, H, W] → [N, out, H/stride, W/stride]."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """The residual block of ResNet-18/34: two 3x3 convolutions and a skip connection.

    x [N, inplanes, H, W] → out [N, planes, H/stride, W/stride]:
        out = relu(bn1(conv1(x)))          conv1: 3x3, stride `stride`
        out = bn2(conv2(out))              conv2: 3x3, stride 1
        out = relu(out + identity)         identity = x, or downsample(x) when given
    `downsample` (e.g. conv1x1 with the same stride + BatchNorm2d) makes x match out's shape
    when the block changes the number of channels or the resolution. Submodules conv1, bn1,
    relu, conv2, bn2, downsample, as in torchvision.
    """

    expansion = 1  # output channels = planes * expansion

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)  # [N, planes, H', W']
        out = self.relu(self.bn1(self.conv1(x)))                          # [N, planes, H', W']
        out = self.bn2(self.conv2(out))                                   # [N, planes, H', W']
        return self.relu(out + identity)                                  # F(x) + x, then ReLU


class Bottleneck(nn.Module):
    """The residual block of ResNet-50 and deeper: 1x1 reduce, 3x3, 1x1 expand (×4), skip.

    x [N, inplanes, H, W] → out [N, 4·planes, H/stride, W/stride]:
        out = relu(bn1(conv1(x)))          conv1: 1x1, inplanes → planes, stride 1
        out = relu(bn2(conv2(out)))        conv2: 3x3, planes → planes, stride `stride` (v1.5)
        out = bn3(conv3(out))              conv3: 1x1, planes → 4·planes
        out = relu(out + identity)         identity = x, or downsample(x) when given
    The 1x1 convolutions make the 3x3 one cheap: it works on `planes` channels, a quarter of the
    block's output. torchvision ("v1.5") strides the 3x3 conv2; the paper strided the first 1x1,
    which throws away three of every four positions before looking at them.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)  # [N, 4·planes, H', W']
        out = self.relu(self.bn1(self.conv1(x)))                          # [N, planes, H, W]
        out = self.relu(self.bn2(self.conv2(out)))                        # [N, planes, H', W']
        out = self.bn3(self.conv3(out))                                   # [N, 4·planes, H', W']
        return self.relu(out + identity)


def make_layer(block: type[nn.Module], inplanes: int, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """One stage of a ResNet: `blocks` blocks in an nn.Sequential (children "0", "1", ...).

    x [N, inplanes, H, W] → [N, planes·block.expansion, H/stride, W/stride]. Only the first block
    strides and changes the width; it gets a `downsample` = Sequential(conv1x1(inplanes,
    planes·expansion, stride), BatchNorm2d(planes·expansion)) when stride != 1 or inplanes !=
    planes·expansion (otherwise none). The others map planes·expansion to itself, stride 1.
    """
    out_planes = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out_planes:
        downsample = nn.Sequential(conv1x1(inplanes, out_planes, stride), nn.BatchNorm2d(out_planes))
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(out_planes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """torchvision's ResNet: x [N, 3, H, W] → logits [N, num_classes].

    conv1 (7x7, 3 → 64, stride 2, padding 3, no bias), bn1, relu, maxpool (3x3, stride 2,
    padding 1), then four stages from make_layer with planes 64, 128, 256, 512 and strides
    1, 2, 2, 2 (`layers` = number of blocks per stage), avgpool (AdaptiveAvgPool2d((1, 1))),
    flatten, fc (512·block.expansion → num_classes). Convolutions start as Kaiming normal
    (fan_out, relu); every BatchNorm with weight 1 and bias 0.
    """

    def __init__(self, block: type[nn.Module], layers: list[int], num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)  # [N, 64, H/2, W/2]
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)                   # [N, 64, H/4, W/4]
        e = block.expansion
        self.layer1 = make_layer(block, 64, 64, layers[0])                                # [N, 64e, H/4, W/4]
        self.layer2 = make_layer(block, 64 * e, 128, layers[1], stride=2)                 # [N, 128e, H/8, W/8]
        self.layer3 = make_layer(block, 128 * e, 256, layers[2], stride=2)                # [N, 256e, H/16, W/16]
        self.layer4 = make_layer(block, 256 * e, 512, layers[3], stride=2)                # [N, 512e, H/32, W/32]
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))                                       # [N, 512e, 1, 1]
        self.fc = nn.Linear(512 * e, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))   # [N, 64, H/4, W/4]
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # [N, 512e, H/32, W/32]
        x = torch.flatten(self.avgpool(x), 1)                  # [N, 512e]
        return self.fc(x)                                      # [N, num_classes]


def resnet18(num_classes: int = 1000) -> ResNet:
    """ResNet-18: BasicBlock, [2, 2, 2, 2] blocks per stage; 11,689,512 parameters."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes)


def resnet34(num_classes: int = 1000) -> ResNet:
    """ResNet-34: BasicBlock, [3, 4, 6, 3] blocks per stage; 21,797,672 parameters."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50: Bottleneck, [3, 4, 6, 3] blocks per stage; 25,557,032 parameters."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes)


class SmallResNet(nn.Module):
    """A ResNet for 1x28x28 digits, built from the same BasicBlock and make_layer.

    x: [N, 1, 28, 28] → logits [N, num_classes] (no softmax).
    Submodules, in order (torchvision's names): conv1 (3x3, 1 → 8 channels, padding 1, no bias),
    bn1, relu, maxpool (2x2), then three stages of one BasicBlock each, made by make_layer:
    layer1 8 → 8 channels (stride 1), layer2 8 → 16 (stride 2), layer3 16 → 32 (stride 2);
    avgpool (global average), flatten, fc (32 → num_classes). Work out each stage's output and
    skip in the table above (19,810 parameters in all). The ImageNet stem (7x7 stride 2, then a
    stride-2 max pool) would shrink 28 pixels to 7 before the first block.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = conv3x3(1, 8)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(2)
        self.layer1 = make_layer(BasicBlock, 8, 8, 1)
        self.layer2 = make_layer(BasicBlock, 8, 16, 1, stride=2)
        self.layer3 = make_layer(BasicBlock, 16, 32, 1, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))     # [N, 8, 14, 14]
        x = self.layer3(self.layer2(self.layer1(x)))             # [N, 32, 4, 4]
        return self.fc(torch.flatten(self.avgpool(x), 1))        # [N, num_classes]


class PlainBlock(BasicBlock):
    """A BasicBlock without its skip connection: relu(bn2(conv2(relu(bn1(conv1(x)))))).

    The same layers and parameters as BasicBlock; only the `+ identity` is gone.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)))


def deep_net(block: type[nn.Module], num_blocks: int, width: int = 16, num_classes: int = 10) -> nn.Sequential:
    """A deep network of `num_blocks` blocks at one width, for the degradation experiment.

    x [N, 1, 28, 28] → conv3x3(1, width, stride 2), BatchNorm, ReLU, 2x2 max pool [N, width, 7, 7]
    → `num_blocks` blocks (PlainBlock or BasicBlock) [N, width, 7, 7] → global average pool
    → Linear(width, num_classes). 2·num_blocks + 2 weight layers; the plain and the residual
    version have exactly the same parameters.
    """
    return nn.Sequential(
        conv3x3(1, width, stride=2), nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        make_layer(block, width, width, num_blocks),
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(width, num_classes),
    )


def train_classifier(
    model: nn.Module,
    dataset: TensorDataset,
    epochs: int = 3,
    lr: float = 1e-3,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    one_cycle: bool = False,
    per_step: bool = False,
) -> list[float]:
    """Train `model` on an in-memory `TensorDataset` (X [N, ...], y int64 [N]) with Adam and
    cross-entropy. Returns the mean training loss of each epoch (per sample), or with
    `per_step=True` the loss of every mini-batch.

    `one_cycle`: `lr` is the peak of a one-cycle schedule (OneCycleLR: warm up from lr/25 over
    the first 30% of the steps, then anneal to almost 0), stepped after every batch; otherwise
    the learning rate stays `lr`.

    Mini-batches come from a random permutation drawn from torch's global generator (no
    DataLoader workers), so after `seed_everything(seed)` a CPU run repeats exactly.
    `device`: where to train (default: `get_device()`); the model and every batch go there.
    """
    device = torch.device(device) if device is not None else get_device()
    model.to(device)
    X, y = dataset.tensors[0], dataset.tensors[1]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(y) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps) if one_cycle else None
    losses: list[float] = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y))
        total = 0.0
        for start in range(0, len(y), batch_size):
            idx = order[start:start + batch_size]
            xb, yb = X[idx].to(device), y[idx].to(device)
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            if per_step:
                losses.append(loss.item())
            total += loss.item() * len(idx)
        if not per_step:
            losses.append(total / len(y))
    return losses


