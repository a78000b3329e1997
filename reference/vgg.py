"""Lab vgg — AlexNet and VGG (seeds 000, 004).

AlexNet (Krizhevsky et al., 2012) and VGG (Simonyan & Zisserman, 2014) written so that
torchvision's `state_dict` loads into them strictly: the same module names (`features`,
`avgpool`, `classifier`) and the same layer positions inside each `nn.Sequential`.

AlexNet, torchvision's variant (one tower; 64-192-384-256-256 filters), on a 3x224x224 image:
    conv 11x11/4, pad 2  → 64x55x55    (224 + 4 − 11) // 4 + 1 = 55       23,296 params
    max 3x3/2            → 64x27x27    (55 − 3) // 2 + 1 = 27
    conv 5x5, pad 2      → 192x27x27                                    307,392
    max 3x3/2            → 192x13x13
    conv 3x3, pad 1      → 384x13x13                                    663,936
    conv 3x3, pad 1      → 256x13x13                                    884,992
    conv 3x3, pad 1      → 256x13x13                                    590,080
    max 3x3/2            → 256x6x6
    adaptive avg 6x6     → 256x6x6 (a no-op at 224; other sizes are resampled to 6x6)
    fc 9,216 → 4,096 → 4,096 → 1,000 (dropout before the first two)   58,631,144
                                                                     = 61,100,840
The seed's AlexNet has no padding on conv1: (224 − 11) // 4 + 1 = 54 → 26 → 26 → 12 → 12
→ 5, so its `nn.Linear(128*6*6, ...)` never receives the 128·5·5 = 3,200 features it gets.

VGG: blocks of `num_convs` 3x3 convolutions (padding 1: the size is kept) each followed by a
ReLU, and a 2x2 max pooling that halves the size. `cfg = ((num_convs, out_channels), ...)`:
    VGG-11  ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))   132,863,336 params
    VGG-16  ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))   138,357,544 params
224 → 112 → 56 → 28 → 14 → 7; then 512·7·7 = 25,088 → 4,096 → 4,096 → 1,000.
"""
from __future__ import annotations

import torch
from torch import nn

from autograder.data import mnist_splits
from autograder.runtime import count_params, get_device, seed_everything
from reference.lenet import accuracy, random_shift, train_classifier  # the training loop of lab 10 (lenet)

__all__ = [
    "conv_output_size",
    "SeedAlexNetFeatures",
    "AlexNet",
    "vgg_block",
    "VGG",
    "vgg11",
    "vgg16",
    "SmallVGG",
    "random_shift",
    "train_classifier",
    "accuracy",
    "count_params",
    "get_device",
    "mnist_splits",
    "seed_everything",
    "TRAIN_SETTINGS",
]

# The settings the notebook trains SmallVGG with (course.yml's thresholds.accuracy for vgg
# comes from a measurement with these; reference/tests/test_vgg.py keeps them in step).
TRAIN_SETTINGS = {"epochs": 5, "lr": 2e-3, "batch_size": 64}


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """Height (or width) after a convolution or pooling layer: ⌊(n + 2p − k) / s⌋ + 1."""
    return (size + 2 * padding - kernel_size) // stride + 1


class SeedAlexNetFeatures(nn.Sequential):
    """The lecture's AlexNet feature extractor (seed 000), kept as it was for the lesson.

    x: [N, in_channels, 224, 224] → [N, 128, 5, 5] — not the 128x6x6 that the lecture's
    `nn.Linear(128*6*6, 2048)` expects: conv1 has no padding, so (224 − 11) // 4 + 1 = 54
    and the pooling steps give 54 → 26 → 12 → 5.
    """

    def __init__(self, in_channels: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, 48, kernel_size=11, stride=4, padding=0),  # [N, 48, 54, 54]
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(size=5, k=2),
            nn.MaxPool2d(kernel_size=3, stride=2),                            # [N, 48, 26, 26]
            nn.Conv2d(48, 128, kernel_size=5, stride=1, padding=2),          # [N, 128, 26, 26]
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(size=5, k=2),
            nn.MaxPool2d(kernel_size=3, stride=2),                            # [N, 128, 12, 12]
            nn.Conv2d(128, 192, kernel_size=3, stride=1, padding=1),         # [N, 192, 12, 12]
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(size=5, k=2),
            nn.Conv2d(192, 192, kernel_size=3, stride=1, padding=1),         # [N, 192, 12, 12]
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(size=5, k=2),
            nn.Conv2d(192, 128, kernel_size=3, stride=1, padding=1),         # [N, 128, 12, 12]
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(size=5, k=2),
            nn.MaxPool2d(kernel_size=3, stride=2),                            # [N, 128, 5, 5]
        )


class AlexNet(nn.Module):
    """AlexNet as torchvision builds it: 61,100,840 parameters for 1,000 classes and RGB input.

    x: [N, in_channels, H, W] (224x224 in the paper; anything from 63x63 runs) → logits
    [N, num_classes]. `features` (indices 0-12: conv 11x11/4 pad 2, ReLU, max 3x3/2, conv 5x5
    pad 2, ReLU, max 3x3/2, three conv 3x3 pad 1 each with its ReLU, max 3x3/2; 64-192-384-256-256
    filters) → [N, 256, 6, 6] at 224 → `avgpool` AdaptiveAvgPool2d((6, 6)) → flatten [N, 9216] →
    `classifier` Dropout, Linear(9216, 4096), ReLU, Dropout, Linear(4096, 4096), ReLU,
    Linear(4096, num_classes) (indices 0-6). No softmax: the loss applies it.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2),  # 0: [N, 64, 55, 55]
            nn.ReLU(inplace=True),                                           # 1
            nn.MaxPool2d(kernel_size=3, stride=2),                            # 2: [N, 64, 27, 27]
            nn.Conv2d(64, 192, kernel_size=5, padding=2),                     # 3: [N, 192, 27, 27]
            nn.ReLU(inplace=True),                                           # 4
            nn.MaxPool2d(kernel_size=3, stride=2),                            # 5: [N, 192, 13, 13]
            nn.Conv2d(192, 384, kernel_size=3, padding=1),                    # 6: [N, 384, 13, 13]
            nn.ReLU(inplace=True),                                           # 7
            nn.Conv2d(384, 256, kernel_size=3, padding=1),                    # 8: [N, 256, 13, 13]
            nn.ReLU(inplace=True),                                           # 9
            nn.Conv2d(256, 256, kernel_size=3, padding=1),                    # 10: [N, 256, 13, 13]
            nn.ReLU(inplace=True),                                           # 11
            nn.MaxPool2d(kernel_size=3, stride=2),                            # 12: [N, 256, 6, 6]
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))                           # [N, 256, 6, 6]
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),                                            # 0
            nn.Linear(256 * 6 * 6, 4096),                                     # 1: [N, 4096]
            nn.ReLU(inplace=True),                                           # 2
            nn.Dropout(p=dropout),                                            # 3
            nn.Linear(4096, 4096),                                            # 4: [N, 4096]
            nn.ReLU(inplace=True),                                           # 5
            nn.Linear(4096, num_classes),                                     # 6: [N, num_classes]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))   # [N, 256, 6, 6]
        x = torch.flatten(x, 1)              # [N, 9216]
        return self.classifier(x)            # [N, num_classes]


def vgg_block(num_convs: int, in_channels: int, out_channels: int) -> list[nn.Module]:
    """One VGG block as a list of layers (to splice into a flat nn.Sequential):
    `num_convs` times [Conv2d 3x3 padding 1, ReLU], then MaxPool2d(2, 2).

    [N, in_channels, H, W] → [N, out_channels, H // 2, W // 2]; the first convolution maps
    in_channels → out_channels, the others out_channels → out_channels.
    """
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
        in_channels = out_channels
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return layers


class VGG(nn.Module):
    """VGG from `cfg = ((num_convs, out_channels), ...)`, one `vgg_block` per pair, all spliced
    into one flat `features` Sequential (torchvision's keys: features.0.weight, ...).

    x: [N, in_channels, H, W] → `features` [N, C, H / 2^B, W / 2^B] (C = cfg[-1][1], B blocks)
    → `avgpool` AdaptiveAvgPool2d((pool, pool)) [N, C, pool, pool] → flatten [N, C·pool²]
    → `classifier` Linear(C·pool², hidden), ReLU, Dropout, Linear(hidden, hidden), ReLU,
    Dropout, Linear(hidden, num_classes) (indices 0-6) → logits [N, num_classes].
    The defaults (hidden 4096, pool 7, dropout 0.5) are torchvision's.
    """

    def __init__(self, cfg: tuple[tuple[int, int], ...], num_classes: int = 1000, in_channels: int = 3,
                 hidden: int = 4096, pool: int = 7, dropout: float = 0.5):
        super().__init__()
        layers: list[nn.Module] = []
        for num_convs, out_channels in cfg:
            layers += vgg_block(num_convs, in_channels, out_channels)   # spliced, not nested
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.classifier = nn.Sequential(
            nn.Linear(in_channels * pool * pool, hidden),   # 0
            nn.ReLU(inplace=True),                          # 1
            nn.Dropout(p=dropout),                          # 2
            nn.Linear(hidden, hidden),                      # 3
            nn.ReLU(inplace=True),                          # 4
            nn.Dropout(p=dropout),                          # 5
            nn.Linear(hidden, num_classes),                 # 6
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))   # [N, C, pool, pool]
        x = torch.flatten(x, 1)              # [N, C·pool²]
        return self.classifier(x)            # [N, num_classes]


def vgg11(num_classes: int = 1000, in_channels: int = 3) -> VGG:
    """VGG-11 (configuration A): 8 convolutions + 3 fully connected layers, 132,863,336 parameters."""
    return VGG(((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)), num_classes, in_channels)


def vgg16(num_classes: int = 1000, in_channels: int = 3) -> VGG:
    """VGG-16 (configuration D): 13 convolutions + 3 fully connected layers, 138,357,544 parameters."""
    return VGG(((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)), num_classes, in_channels)


class SmallVGG(VGG):
    """VGG scaled down for 1x28x28 digits: the same blocks, fewer filters, a small classifier.

    x: [N, 1, 28, 28] → block 1 [N, 16, 14, 14] → block 2 [N, 32, 7, 7] → block 3 (two
    convolutions) [N, 64, 3, 3] → avgpool (3, 3) (a no-op here) → flatten [N, 576]
    → 256 → 256 → logits [N, num_classes].
    """

    def __init__(self, num_classes: int = 10):
        super().__init__(((1, 16), (1, 32), (2, 64)), num_classes, in_channels=1, hidden=256, pool=3, dropout=0.3)


