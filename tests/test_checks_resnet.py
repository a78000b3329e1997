"""autograder.checks.resnet: each check passes on the reference objects and fails, with
expected / got / hint in one or two lines, on buggy variants; the planted bugs of
tests/planted/resnet.py are applied to the reference source in-process and fail exactly the
checks they declare (the notebook-level run is the grader's test)."""
from __future__ import annotations

import inspect
import textwrap
import time

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import reference.resnet as R
from autograder.checks import resnet as checks
from tests.planted.resnet import BUGS
from tests.judging import fails, fails_here

CHECKS = ["basic_block", "bottleneck", "make_layer", "param_counts", "torchvision_match", "accuracy", "gpu"]
BUILDERS = (R.resnet18, R.resnet34, R.resnet50)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", autouse=True)
def torchvision_models():
    """Build (and cache in the check module) torchvision's three networks once, before any test
    replaces the initialisation."""
    for name in ("resnet18", "resnet34", "resnet50"):
        checks._torchvision(name)


@pytest.fixture
def fast_init(monkeypatch):
    """Skip the random initialisation of convolutions and linear layers while building the
    student's networks: param_counts counts, torchvision_match loads torchvision's weights over
    them, so neither depends on it (ResNet-50's init is most of the time these tests take)."""
    monkeypatch.setattr(nn.init, "kaiming_normal_", lambda tensor, *args, **kwargs: tensor)
    monkeypatch.setattr(nn.Conv2d, "reset_parameters", lambda self: None)
    monkeypatch.setattr(nn.Linear, "reset_parameters", lambda self: None)


@pytest.fixture(scope="module")
def trained():
    """The reference SmallResNet after one quick epoch (about 1.5 s on one core): ~0.9 accuracy."""
    torch.set_num_threads(1)
    R.seed_everything(0)
    model = R.SmallResNet()
    R.train_classifier(model, R.mnist_splits()["train"], epochs=1, lr=1e-2, batch_size=64, one_cycle=True, device="cpu")
    return model


def test_accuracy_is_scored_by_the_grader():
    assert set(checks.SCORED) == {"accuracy"} and checks.SCORED["accuracy"].threshold == "accuracy"


def test_reference_passes_and_leaves_the_generator_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    start = time.perf_counter()
    checks.basic_block(R.BasicBlock)
    checks.bottleneck(R.Bottleneck)
    checks.make_layer(R.make_layer)
    assert time.perf_counter() - start < 3
    checks.param_counts(*BUILDERS)
    checks.torchvision_match(*BUILDERS)
    assert torch.equal(torch.get_rng_state(), state)


def test_unfilled_cells_propagate_not_implemented(trained):
    def blank(*args, **kwargs):
        raise NotImplementedError()

    class BlankBlock(R.BasicBlock):
        def forward(self, x):
            raise NotImplementedError()

    class BlankModel(R.SmallResNet):
        def forward(self, x):
            raise NotImplementedError()

    calls = [lambda: checks.basic_block(type("B", (R.BasicBlock,), {"__init__": blank})),
             lambda: checks.basic_block(BlankBlock),
             lambda: checks.bottleneck(type("B", (R.Bottleneck,), {"__init__": blank})),
             lambda: checks.make_layer(blank), lambda: checks.param_counts(R.resnet18, blank, R.resnet50),
             lambda: checks.torchvision_match(blank, blank, blank), lambda: checks.accuracy(BlankModel(), "val", 0.9)]
    for call in calls:
        with pytest.raises(NotImplementedError):
            call()


# ----------------------------------------------------------------------------- basic_block
class NoSkip(R.BasicBlock):
    def forward(self, x):
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


class IgnoresDownsample(R.BasicBlock):
    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + x)  # x even when the shapes differ


class StrideOnConv2(R.BasicBlock):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__(inplanes, planes, stride, downsample)
        self.conv1 = R.conv3x3(inplanes, planes)
        self.conv2 = R.conv3x3(planes, planes, stride)


class ReluBeforeAdd(R.BasicBlock):
    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        return self.relu(out + identity)


class SwappedNorms(R.BasicBlock):
    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn1(self.conv2(self.relu(self.bn2(self.conv1(x)))))  # both are BatchNorm2d(planes)
        return self.relu(out + identity)


class SequentialBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.body = nn.Sequential(R.conv3x3(inplanes, planes, stride), nn.BatchNorm2d(planes), nn.ReLU(),
                                  R.conv3x3(planes, planes), nn.BatchNorm2d(planes))
        self.downsample = downsample

    def forward(self, x):
        return F.relu(self.body(x) + (x if self.downsample is None else self.downsample(x)))


@pytest.mark.parametrize("cls, contains", [
    (NoSkip, ("residual branch zeroed (bn2 = 0)", "relu(x)", "add the input x")),
    (IgnoresDownsample, ("BasicBlock(16, 32, stride=2, downsample): expected an output, got RuntimeError",)),
    (StrideOnConv2, ("conv1 output", "(2, 32, 4, 4)", "(2, 32, 8, 8)", "block's stride")),
    (ReluBeforeAdd, ("in eval mode output", "its layers agree with torchvision's", "relu(out + identity)")),
    (SwappedNorms, ("output of bn1 (the first that differs)",)),
    (SequentialBlock, ("BasicBlock(16, 16).conv1", "an nn.Conv2d", "torchvision's names")),
    (type("NoExpansion", (R.BasicBlock,), {"expansion": 2}), ("BasicBlock.expansion", "expected 1, got 2")),
])
def test_basic_block_fails(cls, contains):
    fails(checks.basic_block, cls, contains=contains)


def test_basic_block_instance_not_class():
    fails(checks.basic_block, R.BasicBlock(4, 4), contains=("the class",))


# ----------------------------------------------------------------------------- bottleneck
class V1Stride(R.Bottleneck):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__(inplanes, planes, stride, downsample)
        self.conv1 = R.conv1x1(inplanes, planes, stride)
        self.conv2 = R.conv3x3(planes, planes)


class NoMiddleRelu(R.Bottleneck):
    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class BottleneckNoSkip(R.Bottleneck):
    def forward(self, x):
        out = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        return self.relu(self.bn3(self.conv3(out)))


@pytest.mark.parametrize("cls, contains", [
    (V1Stride, ("conv1 output: expected shape (2, 32, 8, 8), got (2, 32, 4, 4)", "v1.5")),
    (NoMiddleRelu, ("output of conv3 (the first that differs)",)),
    (BottleneckNoSkip, ("bn3", "relu(x)")),
    (type("Expansion1", (R.Bottleneck,), {"expansion": 1}), ("Bottleneck.expansion", "expected 4, got 1")),
])
def test_bottleneck_fails(cls, contains):
    fails(checks.bottleneck, cls, contains=contains)


def test_a_basic_block_is_not_a_bottleneck():
    fails(checks.bottleneck, R.BasicBlock, contains=("Bottleneck.expansion",))


# ----------------------------------------------------------------------------- make_layer
def _layer(downsample_rule="torchvision", all_stride=False, with_bn=True, as_list=False, extra=0):
    def make_layer(block, inplanes, planes, blocks, stride=1):
        out = planes * block.expansion
        need = {"torchvision": stride != 1 or inplanes != out, "stride": stride != 1, "always": True}[downsample_rule]
        down = None
        if need:
            down = nn.Sequential(R.conv1x1(inplanes, out, stride), *([nn.BatchNorm2d(out)] if with_bn else []))
        layers = [block(inplanes, planes, stride, down)]
        layers += [block(out, planes, stride if all_stride else 1,
                         R.conv1x1(out, out, stride) if all_stride and stride != 1 else None) for _ in range(1, blocks + extra)]
        return layers if as_list else nn.Sequential(*layers)
    return make_layer


@pytest.mark.parametrize("fn, contains", [
    (_layer("stride"), ("make_layer(Bottleneck, 8, 8, 2, stride=1) state_dict", "0.downsample.0.weight (32, 8, 1, 1)",
                        "no such key", "inplanes != planes·expansion")),
    (_layer("always"), ("make_layer(BasicBlock, 8, 8, 2, stride=1) state_dict", "extra entry 0.downsample.0.weight",)),
    (_layer(all_stride=True), ("[1] stride: expected 1, got 2", "only the first block strides")),
    (_layer(with_bn=False), ("0.downsample.1.weight", "no such key")),
    (_layer(extra=1), ("blocks: expected 2 × BasicBlock, got 3",)),
    (_layer(as_list=True), ("an nn.Module", "list")),
])
def test_make_layer_fails(fn, contains):
    fails(checks.make_layer, fn, contains=contains)


def test_make_layer_is_independent_of_the_blocks():
    """It runs the student's make_layer on torchvision's blocks: a broken BasicBlock cannot fail it."""
    calls = []

    def spy(block, *args, **kwargs):
        calls.append(block.__module__)
        return R.make_layer(block, *args, **kwargs)

    checks.make_layer(spy)
    assert set(calls) == {"torchvision.models.resnet"}


# ----------------------------------------------------------------------------- param_counts
def test_param_counts_fail(fast_init):
    fails(checks.param_counts, R.resnet18, lambda: R.ResNet(R.BasicBlock, [3, 4, 5, 3]), R.resnet50,
           contains=("resnet34 parameters: expected 21,797,672, got 20,617,000", "layer3 has 5,641,728, expected 6,822,400"))
    fails(checks.param_counts, lambda: R.ResNet(R.BasicBlock, [2, 2, 2, 2], num_classes=10), R.resnet34, R.resnet50,
           contains=("resnet18 parameters", "fc has 5,130, expected 513,000"))

    def with_extra():
        model = R.resnet18()
        model.head = nn.Linear(1000, 10)
        return model
    fails(checks.param_counts, with_extra, R.resnet34, R.resnet50, contains=("11,699,522", "remove the extra module"))
    fails(checks.param_counts, R.ResNet, R.resnet34, R.resnet50, contains=("resnet18()", "TypeError"))


def test_param_counts_ignore_what_has_no_parameters(fast_init):
    class NoMaxpool(R.ResNet):
        def forward(self, x):
            x = self.layer4(self.layer3(self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    checks.param_counts(lambda: NoMaxpool(R.BasicBlock, [2, 2, 2, 2]), R.resnet34, R.resnet50)


# ----------------------------------------------------------------------------- torchvision_match
def test_torchvision_match_fails_on_the_first_difference(fast_init):
    class NoMaxpool(R.ResNet):
        def forward(self, x):
            x = self.relu(self.bn1(self.conv1(x)))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    fails(checks.torchvision_match, lambda: NoMaxpool(R.BasicBlock, [2, 2, 2, 2]), R.resnet34, R.resnet50,
           contains=("resnet18 (eval) output of layer1.0.conv1 (the first that differs)", "(2, 64, 16, 16)",
                     "(2, 64, 32, 32)"))

    class Renamed(R.ResNet):
        def __init__(self, *args):
            super().__init__(*args)
            self.classifier = self.fc
            del self.fc

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.classifier(torch.flatten(self.avgpool(x), 1))

    fails(checks.torchvision_match, R.resnet18, lambda: Renamed(R.BasicBlock, [3, 4, 6, 3]), R.resnet50,
           contains=("resnet34 state_dict", "an entry fc.weight (1000, 512)", "no such key"))

    class Softmax(R.ResNet):
        def forward(self, x):
            return F.softmax(super().forward(x), dim=1)

    fails(checks.torchvision_match, lambda: Softmax(R.BasicBlock, [2, 2, 2, 2]), R.resnet34, R.resnet50,
           contains=("resnet18 (eval) output: expected torchvision's", "different values"))


def test_torchvision_match_v1_bottleneck(fast_init):
    class V1(R.Bottleneck):
        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__(inplanes, planes, stride, downsample)
            self.conv1 = R.conv1x1(inplanes, planes, stride)
            self.conv2 = R.conv3x3(planes, planes)

    fails(checks.torchvision_match, R.resnet18, R.resnet34, lambda: R.ResNet(V1, [3, 4, 6, 3]),
           contains=("resnet50 (eval) output of layer2.0.conv1", "(2, 128, 16, 16)", "(2, 128, 8, 8)"))


# ----------------------------------------------------------------------------- accuracy, gpu
def test_accuracy(trained):
    trained.train()
    checks.accuracy(trained, "val", 0.85)
    assert trained.training
    R.seed_everything(0)
    message = fails_here(checks.accuracy, R.SmallResNet(), "test", 0.93,
                     contains=("SmallResNet accuracy on the hidden test split: expected ≥ 0.93, got 0.",))
    assert float(message.split("got ")[1].split(" ")[0]) < 0.3

    class NoPool(R.SmallResNet):
        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            return self.fc(torch.flatten(self.layer3(self.layer2(self.layer1(x))), 1))

    fails(checks.accuracy, NoPool(), "val", 0.93, contains=("RuntimeError", "cannot run on [N, 1, 28, 28]"))


def test_gpu(trained):
    checks.gpu(trained)  # trained in train mode with gradients: on CPU it says skipped and passes
    fails(checks.gpu, R.SmallResNet(), contains=("SmallResNet training device", "none recorded"))


# ----------------------------------------------------------------------------- planted bugs
def _planted_module(b):
    """reference.resnet with bug `b` planted in the source of its cell, as a fresh namespace."""
    module_src = inspect.getsource(R)
    cell_src = textwrap.dedent(inspect.getsource(getattr(R, b.cell)))
    assert module_src.count(cell_src) == 1
    namespace = {"__name__": f"planted_{b.name.replace('-', '_')}"}
    exec(compile(module_src.replace(cell_src, b.apply(cell_src)), f"<planted {b.name}>", "exec"), namespace)  # noqa: S102
    return namespace


def _failing(ns, monkeypatch) -> set[str]:
    """The architecture checks that fail on the planted module (initialisation skipped, see fast_init)."""
    builders = (ns["resnet18"], ns["resnet34"], ns["resnet50"])
    calls = {"basic_block": lambda: checks.basic_block(ns["BasicBlock"]),
             "bottleneck": lambda: checks.bottleneck(ns["Bottleneck"]),
             "make_layer": lambda: checks.make_layer(ns["make_layer"]),
             "param_counts": lambda: checks.param_counts(*builders),
             "torchvision_match": lambda: checks.torchvision_match(*builders)}
    failed = set()
    for name, call in calls.items():
        with monkeypatch.context() as patch:
            if name in ("param_counts", "torchvision_match"):  # the others build torchvision's blocks themselves
                patch.setattr(nn.init, "kaiming_normal_", lambda tensor, *args, **kwargs: tensor)
                patch.setattr(nn.Conv2d, "reset_parameters", lambda self: None)
                patch.setattr(nn.Linear, "reset_parameters", lambda self: None)
            try:
                call()
            except AssertionError:
                failed.add(name)
    return failed


@pytest.mark.parametrize("b", BUGS, ids=lambda b: b.name)
def test_planted_bug_fails_exactly_its_checks(b, trained, monkeypatch):
    assert b.fails <= set(CHECKS)
    ns = _planted_module(b)
    failed = _failing(ns, monkeypatch)
    # accuracy and gpu depend on SmallResNet and what it is built from: train it quickly when the
    # bug can reach it (the notebook trains 3 epochs; one epoch here, with a lower threshold)
    model = trained
    if b.cell in ("SmallResNet", "BasicBlock", "make_layer"):
        R.seed_everything(0)
        model = ns["SmallResNet"]()
        try:
            R.train_classifier(model, R.mnist_splits()["train"], epochs=1, lr=1e-2, batch_size=64, one_cycle=True,
                               device="cpu")
        except RuntimeError:
            pass  # the notebook's training cell fails the same way; the checks still run
    for name, call in (("accuracy", lambda: checks.accuracy(model, "val", 0.85)), ("gpu", lambda: checks.gpu(model))):
        try:
            call()
        except AssertionError:
            failed.add(name)
    assert failed == set(b.fails)
