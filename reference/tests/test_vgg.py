"""reference.vgg against torchvision and the numbers of LABS.md (AlexNet, VGG-11, VGG-16).

The big models are compared on the meta device (keys, shapes, counts: no memory) and, for the
outputs, built once with real weights: torchvision's model is materialised with cheap
pseudo-random weights and its state_dict is loaded into ours with `assign=True`, so the two
share one copy of the weights.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.data import TensorDataset

from autograder import runtime
from reference import vgg as R
from reference.vgg import (AlexNet, SeedAlexNetFeatures, SmallVGG, VGG, accuracy, conv_output_size, count_params,
                           mnist_splits, seed_everything, train_classifier, vgg11, vgg16, vgg_block)

MODELS = {  # ours, torchvision's, parameters (LABS.md), an input size the adaptive pooling allows
    "alexnet": (AlexNet, torchvision.models.alexnet, 61_100_840, 96),
    "vgg11": (vgg11, torchvision.models.vgg11, 132_863_336, 64),
    "vgg16": (vgg16, torchvision.models.vgg16, 138_357_544, 32),
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models; and on a shared machine a second thread mostly waits
    yield
    torch.set_num_threads(threads)


def _meta(factory, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return factory(**kwargs)


def _hand_count(model: nn.Module) -> int:
    """Parameters from the layer definitions: conv out·in·k·k + out, linear out·in + out."""
    total = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            total += m.out_channels * m.in_channels * m.kernel_size[0] * m.kernel_size[1] + m.out_channels
        elif isinstance(m, nn.Linear):
            total += m.out_features * m.in_features + m.out_features
    return total


@pytest.mark.parametrize("name", MODELS)
def test_parameter_counts(name):
    ours, theirs, count, _ = MODELS[name]
    model = _meta(ours)
    assert count_params(model) == count == _hand_count(model) == count_params(_meta(theirs, weights=None))
    assert count_params is runtime.count_params


def test_counts_by_hand():
    convs = 64 * 3 * 121 + 64 + 192 * 64 * 25 + 192 + 384 * 192 * 9 + 384 + 256 * 384 * 9 + 256 + 256 * 256 * 9 + 256
    fcs = 9216 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000
    assert (convs, fcs, convs + fcs) == (2_469_696, 58_631_144, 61_100_840)
    alexnet = _meta(AlexNet)
    assert (count_params(alexnet.features), count_params(alexnet.classifier)) == (convs, fcs)

    def vgg_convs(cfg):
        total, cin = 0, 3
        for n, cout in cfg:
            for _ in range(n):
                total += cout * cin * 9 + cout
                cin = cout
        return total

    head = 25088 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 1000 + 1000
    a = vgg_convs(((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)))
    d = vgg_convs(((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)))
    assert (a + head, d + head) == (132_863_336, 138_357_544)
    assert count_params(_meta(vgg16).features) == d and count_params(_meta(vgg11).classifier) == head


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_keys_and_shapes_are_torchvisions(name):
    ours, theirs, _, _ = MODELS[name]
    for kwargs in ({}, {"num_classes": 10}):
        mine = {k: tuple(v.shape) for k, v in _meta(ours, **kwargs).state_dict().items()}
        tv = {k: tuple(v.shape) for k, v in _meta(theirs, weights=None, **kwargs).state_dict().items()}
        assert list(mine) == list(tv) and mine == tv
    gray = _meta(ours, num_classes=10, in_channels=1).state_dict()
    assert gray["features.0.weight"].shape[1] == 1 and gray["classifier.6.bias"].shape == (10,)


@pytest.mark.parametrize("name", MODELS)
def test_same_layers_as_torchvision(name):
    ours, theirs, _, _ = MODELS[name]
    mine = [(n, repr(m).replace("inplace=True", "")) for n, m in _meta(ours).named_modules() if n and not list(m.children())]
    tv = [(n, repr(m).replace("inplace=True", "")) for n, m in _meta(theirs, weights=None).named_modules() if n and not list(m.children())]
    assert mine == tv


@pytest.mark.parametrize("name", MODELS)
def test_torchvision_state_dict_loads_strictly_and_outputs_are_identical(name):
    ours, theirs, _, size = MODELS[name]
    tv = _meta(theirs, weights=None).to_empty(device="cpu").eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in tv.parameters():  # cheap weights at He scale (torch's init takes seconds here)
            fan_in = p[0].numel() if p.dim() > 1 else 1
            flat = p.view(-1)
            base = torch.randn(10_007, generator=g) * math.sqrt(2 / fan_in)
            whole = flat.numel() // base.numel()
            if whole:
                flat[:whole * base.numel()].view(whole, -1).copy_(base.expand(whole, -1))
            flat[whole * base.numel():].copy_(base[:flat.numel() - whole * base.numel()])
    model = _meta(ours)
    result = model.load_state_dict(tv.state_dict(), strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    model.eval()
    x = torch.randn(2, 3, size, size, generator=g)
    with torch.no_grad():
        expected, got = tv(x), model(x)
    assert got.shape == (2, 1000) and expected.abs().max() > 0
    assert torch.equal(got, expected)


def test_alexnet_at_224_and_other_sizes():
    model = _meta(AlexNet)
    x = torch.zeros(1, 3, 224, 224, device="meta")
    shapes = []
    for layer in model.features:
        x = layer(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes[0] == (64, 55, 55) and shapes[2] == (64, 27, 27) and shapes[5] == (192, 13, 13)
    assert shapes[-1] == (256, 6, 6)
    for size in (63, 224, 300):
        assert model(torch.zeros(2, 3, size, size, device="meta")).shape == (2, 1000)
    with pytest.raises(RuntimeError):
        model(torch.zeros(1, 3, 62, 62, device="meta"))  # the last pooling gets a 2x2 map
    assert AlexNet(num_classes=7, in_channels=1)(torch.zeros(1, 1, 64, 64)).shape == (1, 7)


def test_seed_alexnet_is_5x5_not_6x6():
    """The lecture's AlexNet: no padding on conv1, so 224 → 54 → 26 → 26 → 12 → 5."""
    n = 224
    for k, s, p in ((11, 4, 0), (3, 2, 0), (5, 1, 2), (3, 2, 0), (3, 1, 1), (3, 1, 1), (3, 1, 1), (3, 2, 0)):
        n = conv_output_size(n, k, s, p)
    assert n == 5
    out = SeedAlexNetFeatures()(torch.zeros(1, 1, 224, 224))
    assert out.shape == (1, 128, 5, 5) and out.flatten(1).shape[1] == 3200 != 128 * 6 * 6
    with pytest.raises(RuntimeError):
        nn.Linear(128 * 6 * 6, 2048)(out.flatten(1))
    # the paper's 227 input, and torchvision's padding 2 at 224, give 55 → 27 → 13 → 6
    assert conv_output_size(227, 11, 4) == conv_output_size(224, 11, 4, 2) == 55
    assert conv_output_size(conv_output_size(conv_output_size(55, 3, 2), 3, 2), 3, 2) == 6


def test_conv_output_size_matches_torch():
    for n, k, s, p in ((28, 5, 1, 2), (224, 11, 4, 2), (7, 3, 2, 0), (7, 3, 1, 1), (10, 3, 3, 0), (6, 2, 2, 0)):
        x = torch.zeros(1, 1, n, n)
        assert nn.Conv2d(1, 1, k, s, p)(x).shape[-1] == conv_output_size(n, k, s, p)


def test_vgg_block():
    layers = vgg_block(2, 3, 64)
    assert isinstance(layers, list) and not isinstance(layers, nn.Module)
    assert [type(m) for m in layers] == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU, nn.MaxPool2d]
    assert (layers[0].in_channels, layers[0].out_channels, layers[2].in_channels) == (3, 64, 64)
    assert all(m.kernel_size == (3, 3) and m.padding == (1, 1) for m in layers if isinstance(m, nn.Conv2d))
    assert nn.Sequential(*layers)(torch.zeros(2, 3, 8, 6)).shape == (2, 64, 4, 3)
    assert len(vgg_block(3, 5, 7)) == 7 and count_params(nn.Sequential(*vgg_block(1, 1, 16))) == 16 * 9 + 16


def test_vgg_is_flat_and_generic():
    model = VGG(((1, 8), (2, 16)), num_classes=5, in_channels=1, hidden=32, pool=2, dropout=0.1)
    assert all(not isinstance(m, nn.Sequential) for m in model.features)
    assert [k for k in model.state_dict() if k.startswith("features")] == [
        "features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias", "features.5.weight",
        "features.5.bias"]
    assert model(torch.zeros(3, 1, 16, 16)).shape == (3, 5)
    assert model.classifier[0].in_features == 16 * 2 * 2 and model.classifier[2].p == 0.1


def test_vgg16_shapes_at_224_on_meta():
    model = _meta(vgg16)
    x = torch.zeros(1, 3, 224, 224, device="meta")
    ends = []
    for layer in model.features:
        x = layer(x)
        if isinstance(layer, nn.MaxPool2d):
            ends.append(tuple(x.shape[1:]))
    assert ends == [(64, 112, 112), (128, 56, 56), (256, 28, 28), (512, 14, 14), (512, 7, 7)]
    assert model.classifier[0].in_features == 512 * 7 * 7 == 25_088
    assert count_params(model.classifier[0]) == 102_764_544


def test_small_vgg():
    model = SmallVGG()
    assert isinstance(model, VGG)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    ends = []
    x = torch.zeros(1, 1, 28, 28)
    for layer in model.features:
        x = layer(x)
        if isinstance(layer, nn.MaxPool2d):
            ends.append(tuple(x.shape[1:]))
    assert ends == [(16, 14, 14), (32, 7, 7), (64, 3, 3)]
    assert count_params(model) == 276_298 == _hand_count(model)


def test_training_is_reproducible_and_learns():
    X, y = mnist_splits()["train"].tensors
    small = TensorDataset(X[:256], y[:256])
    runs = []
    for _ in range(2):
        seed_everything(0)
        model = SmallVGG()
        losses = train_classifier(model, small, epochs=2, lr=2e-3, batch_size=64, device="cpu")
        runs.append((losses, model.state_dict()))
    assert runs[0][0] == runs[1][0] and runs[0][0][1] < runs[0][0][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])
    model = SmallVGG().train()
    assert 0.0 <= accuracy(model, TensorDataset(X[:50], y[:50])) <= 1.0 and not model.training


def test_train_settings_are_the_notebooks():
    """course.yml's threshold was measured with TRAIN_SETTINGS; the notebook must train with them."""
    s = R.TRAIN_SETTINGS
    template = (Path(R.__file__).parent / "notebooks" / "vgg.py.j2").read_text()
    assert template.count(f"epochs={s['epochs']}, lr={s['lr']:.0e}".replace("e-0", "e-") + f", batch_size={s['batch_size']}") == 1
