"""Planted bugs of lab 12 (resnet): the blocks, make_layer, the networks and SmallResNet.

torchvision_match compares whole networks, so every bug in a block, in make_layer or in ResNet
fails it; param_counts only when the count changes (a stride or a ReLU has no parameters).
make_layer is checked on torchvision's blocks, so block bugs do not reach it. SmallResNet is
only graded through its accuracy (threshold 0.93, the notebook's training): a shallow network
of three blocks still trains to ~0.96 without skips or with a ReLU before the addition, so
block bugs leave accuracy alone; a SmallResNet that cannot run fails it (and nothing else:
the training cell raises after the first layers ran on the device, so gpu is unaffected).
"""
from tests.planted import bug

BUGS = [
    bug("small-resnet-no-average-pool", "SmallResNet", "self.fc(torch.flatten(self.avgpool(x), 1))",
        "self.fc(torch.flatten(x, 1))", {"accuracy"}),
    bug("bottleneck-v1-stride-on-conv1", "Bottleneck",
        "self.conv1 = conv1x1(inplanes, planes)\n        self.bn1 = nn.BatchNorm2d(planes)\n"
        "        self.conv2 = conv3x3(planes, planes, stride)",
        "self.conv1 = conv1x1(inplanes, planes, stride)\n        self.bn1 = nn.BatchNorm2d(planes)\n"
        "        self.conv2 = conv3x3(planes, planes)",
        {"bottleneck", "torchvision_match"}),
    bug("basic-block-no-skip", "BasicBlock", "return self.relu(out + identity)", "return self.relu(out)",
        {"basic_block", "torchvision_match"}),
    bug("make-layer-downsample-only-when-striding", "make_layer", "if stride != 1 or inplanes != out_planes:",
        "if stride != 1:", {"make_layer", "param_counts", "torchvision_match"}),
    bug("basic-block-relu-before-add", "BasicBlock", "out = self.bn2(self.conv2(out))",
        "out = self.relu(self.bn2(self.conv2(out)))", {"basic_block", "torchvision_match"}),
    bug("resnet-no-maxpool", "ResNet", "x = self.maxpool(self.relu(self.bn1(self.conv1(x))))",
        "x = self.relu(self.bn1(self.conv1(x)))", {"torchvision_match"}),
    bug("resnet50-basic-blocks", "resnet50", "ResNet(Bottleneck, [3, 4, 6, 3], num_classes)",
        "ResNet(BasicBlock, [3, 4, 6, 3], num_classes)", {"param_counts", "torchvision_match"}),
    bug("bottleneck-no-expansion", "Bottleneck", "self.conv3 = conv1x1(planes, planes * self.expansion)\n"
        "        self.bn3 = nn.BatchNorm2d(planes * self.expansion)",
        "self.conv3 = conv1x1(planes, planes)\n        self.bn3 = nn.BatchNorm2d(planes)",
        {"bottleneck", "param_counts", "torchvision_match"}),
]
