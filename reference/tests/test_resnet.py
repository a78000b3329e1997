"""reference.resnet against torchvision (the oracle) and the numbers of LABS.md."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.data import TensorDataset

from reference import resnet as R
from reference.resnet import (
    BasicBlock,
    Bottleneck,
    PlainBlock,
    ResNet,
    SmallResNet,
    count_params,
    deep_net,
    make_layer,
    mnist_splits,
    resnet18,
    resnet34,
    resnet50,
    seed_everything,
    train_classifier,
)

BUILDERS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}
PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032}


@pytest.fixture(autouse=True)
def few_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial affine parameters and running statistics, so that a
    BatchNorm applied in the wrong place changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
    return model


@pytest.fixture(scope="module")
def built():
    """Ours and torchvision's model of each name, built once (ResNet-50's init takes a while)."""
    seed_everything(0)
    return {name: (BUILDERS[name](), getattr(torchvision.models, name)(weights=None)) for name in BUILDERS}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_torchvision_state_dict_loads_strictly_and_outputs_are_identical(name, built):
    ours, theirs = built[name]
    theirs = _randomize_batchnorm(theirs).eval()
    mine, tv = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(tv)                                     # same names, same order
    assert all(mine[k].shape == tv[k].shape for k in tv)
    ours.load_state_dict(tv, strict=True)
    ours.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert got.shape == (2, 1000)
    assert torch.equal(got, expected)                                 # identical, not just close
    assert expected.std() > 0.1                                       # a comparison that can fail


def test_training_mode_matches_torchvision_too():
    seed_everything(1)
    theirs, ours = torchvision.models.resnet18(weights=None, num_classes=7), resnet18(num_classes=7)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(ours.train()(x), theirs.train()(x))
    for a, b in zip(ours.modules(), theirs.modules()):                 # the batch statistics moved alike
        if isinstance(a, nn.BatchNorm2d):
            assert torch.equal(a.running_mean, b.running_mean) and torch.equal(a.running_var, b.running_var)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_parameter_counts(name, built):
    ours, theirs = built[name]
    assert count_params(ours) == PARAMS[name] == count_params(theirs)
    assert count_params(ours.fc) == (ours.fc.in_features + 1) * 1000 and ours.fc.in_features == 512 * type(ours.layer1[0]).expansion


def test_blocks_match_torchvision_blocks():
    from torchvision.models import resnet as tvr

    seed_everything(2)
    down = nn.Sequential(nn.Conv2d(64, 128, 1, stride=2, bias=False), nn.BatchNorm2d(128))
    cases = [(BasicBlock(64, 64), tvr.BasicBlock(64, 64), (2, 64, 8, 8), (2, 64, 8, 8)),
             (BasicBlock(64, 128, 2, down), tvr.BasicBlock(64, 128, 2, nn.Sequential(
                 nn.Conv2d(64, 128, 1, stride=2, bias=False), nn.BatchNorm2d(128))), (2, 64, 8, 8), (2, 128, 4, 4))]
    down = nn.Sequential(nn.Conv2d(256, 512, 1, stride=2, bias=False), nn.BatchNorm2d(512))
    cases += [(Bottleneck(256, 64), tvr.Bottleneck(256, 64), (2, 256, 8, 8), (2, 256, 8, 8)),
              (Bottleneck(256, 128, 2, down), tvr.Bottleneck(256, 128, 2, nn.Sequential(
                  nn.Conv2d(256, 512, 1, stride=2, bias=False), nn.BatchNorm2d(512))), (2, 256, 8, 8), (2, 512, 4, 4))]
    for ours, theirs, shape_in, shape_out in cases:
        _randomize_batchnorm(theirs)
        ours.load_state_dict(theirs.state_dict(), strict=True)
        x = torch.randn(shape_in)
        for mode in (True, False):
            ours.train(mode), theirs.train(mode)
            out = ours(x)
            assert out.shape == shape_out and torch.equal(out, theirs(x))


def test_bottleneck_is_v1_5():
    b = Bottleneck(256, 128, stride=2, downsample=nn.Sequential(nn.Conv2d(256, 512, 1, 2, bias=False), nn.BatchNorm2d(512)))
    assert Bottleneck.expansion == 4 and BasicBlock.expansion == 1
    assert b.conv1.stride == (1, 1) and b.conv2.stride == (2, 2) and b.conv3.stride == (1, 1)
    assert b.conv1.kernel_size == (1, 1) and b.conv2.kernel_size == (3, 3) and b.conv3.out_channels == 512


def test_skip_connection_is_the_identity_when_the_residual_is_zero():
    block = BasicBlock(16, 16).eval()
    nn.init.zeros_(block.bn2.weight)                                  # F(x) = bn2(...) = 0
    x = torch.randn(3, 16, 6, 6)
    assert torch.equal(block(x), torch.relu(x))
    plain = PlainBlock(16, 16).eval()
    plain.load_state_dict(block.state_dict())
    assert torch.equal(plain(x), torch.zeros_like(x))                 # no skip: nothing gets through


def test_make_layer():
    stage = make_layer(BasicBlock, 64, 128, 3, stride=2)
    assert [type(b) for b in stage] == [BasicBlock] * 3
    assert isinstance(stage[0].downsample, nn.Sequential) and stage[1].downsample is None
    assert stage[0].downsample[0].stride == (2, 2) and stage[0].conv1.stride == (2, 2) and stage[1].conv1.stride == (1, 1)
    assert make_layer(BasicBlock, 64, 64, 2)[0].downsample is None    # nothing to match
    first = make_layer(Bottleneck, 64, 64, 3)[0]                      # ResNet-50's layer1: width changes, stride 1
    assert first.downsample is not None and first.downsample[0].stride == (1, 1) and first.downsample[0].out_channels == 256
    assert make_layer(Bottleneck, 64, 64, 3)(torch.zeros(1, 64, 5, 5)).shape == (1, 256, 5, 5)


def test_resnet_stage_shapes():
    model = resnet50().eval()
    seen = {}
    for name in ("conv1", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: seen.update({name: tuple(o.shape)}))
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))
    assert seen == {"conv1": (1, 64, 32, 32), "maxpool": (1, 64, 16, 16), "layer1": (1, 256, 16, 16),
                    "layer2": (1, 512, 8, 8), "layer3": (1, 1024, 4, 4), "layer4": (1, 2048, 2, 2),
                    "avgpool": (1, 2048, 1, 1), "fc": (1, 1000)}
    assert ResNet(BasicBlock, [1, 1, 1, 1], num_classes=5)(torch.zeros(2, 3, 40, 56)).shape == (2, 5)


def test_small_resnet():
    model = SmallResNet()
    assert count_params(model) == 19_810
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert SmallResNet(num_classes=4)(torch.zeros(1, 1, 28, 28)).shape == (1, 4)
    assert [type(m) for m in model.modules()].count(BasicBlock) == 3


def test_deep_nets_differ_only_by_the_skip():
    plain, residual = deep_net(PlainBlock, 10), deep_net(BasicBlock, 10)
    assert count_params(plain) == count_params(residual)
    assert list(plain.state_dict()) == list(residual.state_dict())
    assert plain(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    n_weight_layers = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in plain.modules())
    assert n_weight_layers == 2 * 10 + 2


def test_training_is_reproducible_and_learns():
    X, y = mnist_splits()["train"].tensors
    small = TensorDataset(X[:256], y[:256])
    runs = []
    for _ in range(2):
        seed_everything(0)
        model = SmallResNet()
        losses = train_classifier(model, small, epochs=2, lr=3e-3, batch_size=64, device="cpu")
        runs.append((losses, model.state_dict()))
    assert runs[0][0] == runs[1][0] and runs[0][0][1] < runs[0][0][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])
    seed_everything(0)
    steps = train_classifier(SmallResNet(), small, epochs=1, batch_size=64, device="cpu", per_step=True)
    assert len(steps) == 4


def test_settings_are_the_notebooks():
    """The notebook trains with TRAIN_SETTINGS and DEGRADATION_SETTINGS (course.yml's threshold
    and the notebook's narrative were measured with them, benchmarks/resnet.py)."""
    template = (Path(R.__file__).parent / "notebooks" / "resnet.py.j2").read_text()
    assert R.TRAIN_SETTINGS == {"epochs": 3, "lr": 1e-2, "batch_size": 64, "one_cycle": True}
    assert "epochs=3, lr=1e-2, batch_size=64, one_cycle=True" in template
    d = R.DEGRADATION_SETTINGS
    assert d == {"shallow_blocks": 2, "deep_blocks": 10, "width": 16, "n_train": 1000, "epochs": 2, "lr": 3e-3,
                 "batch_size": 50}
    assert "epochs=2, lr=3e-3, batch_size=50" in template and "width=16" in template and "[:1000]" in template
    assert '("plain, 6 layers", PlainBlock, 2), ("plain, 22 layers", PlainBlock, 10)' in template
