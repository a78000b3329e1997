"""Planted bugs of lab 11 (vgg): AlexNet, vgg_block, VGG and the VGG configurations.

A layer without parameters that is wrong (a padding, a missing avgpool) keeps the parameter
counts and fails torchvision_match; a wrong configuration fails both. vgg_block and VGG are also
the SmallVGG that is trained: a bug that stops it from running on 28x28 digits fails accuracy
too (training crashes after some layers ran, so gpu keeps its point: skipped on CPU, on the
right device with CUDA); a hidden size VGG ignores changes nothing in torchvision's models and
breaks only SmallVGG.
"""
from tests.planted import bug

BUGS = [
    # the lecture's AlexNet: no padding on conv1 (55x55 becomes 54x54, and 6x6 becomes 5x5)
    bug("vgg-block-no-padding", "vgg_block", "kernel_size=3, padding=1)", "kernel_size=3)",
        {"vgg_block", "torchvision_match", "accuracy"}),
    # the hidden size hard-coded to torchvision's 4096: right for VGG-11/16, wrong for SmallVGG
    bug("alexnet-conv1-no-padding", "AlexNet", "kernel_size=11, stride=4, padding=2)", "kernel_size=11, stride=4, padding=0)",
        {"torchvision_match"}),
    # VGG-13's configuration (two convolutions in blocks 3-5) under VGG-16's name
    bug("vgg16-with-vgg13-cfg", "vgg16", "(3, 256), (3, 512), (3, 512)", "(2, 256), (2, 512), (2, 512)",
        {"param_counts", "torchvision_match"}),
    # 3x3 convolutions without padding shrink each map by 2: SmallVGG's 28x28 runs out of pixels
    bug("vgg-hidden-hard-coded", "VGG", "nn.Linear(in_channels * pool * pool, hidden)",
        "nn.Linear(in_channels * pool * pool, 4096)", {"accuracy"}),
    # flatten without keeping the batch dimension: [N·C·7·7] cannot enter the classifier
    bug("vgg-flatten-whole-batch", "VGG", "x = torch.flatten(x, 1)", "x = torch.flatten(x)",
        {"torchvision_match", "accuracy"}),
    # AlexNet's forward skips the adaptive pooling: fine at 224, a crash at any other size
    bug("alexnet-forward-skips-avgpool", "AlexNet", "x = self.avgpool(self.features(x))", "x = self.features(x)",
        {"torchvision_match"}),
]
