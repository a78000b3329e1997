"""reference.transfer against PyTorch / torchvision and the lab's claims: freezing, new heads on
torchvision's architectures, the shipped digit backbone (reproduced by re-running the
pre-training), transfer beating scratch, and the ImageNet path on a weights file generated here."""
from __future__ import annotations

import torch
import torchvision
from torch import nn
from torch.utils.data import TensorDataset

from autograder import pretrained
from autograder.runtime import count_params
from reference import transfer
from reference.transfer import (
    PRETRAIN,
    TRANSFER,
    DigitCNN,
    ImageNetDigits,
    accuracy,
    few_shot,
    fit,
    freeze,
    imagenet_input,
    load_digit_backbone,
    load_imagenet_resnet18,
    mnist_splits,
    replace_head,
    seed_everything,
    select_digits,
    trainable_parameters,
    transfer_experiment,
    transfer_models,
)

torch.set_num_threads(1)  # small convolutions: one thread is the fastest on a shared machine


def _hand_count(model: nn.Module) -> int:
    total = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            total += m.out_channels * m.in_channels * m.kernel_size[0] * m.kernel_size[1] + m.out_channels
        elif isinstance(m, nn.Linear):
            total += m.out_features * m.in_features + m.out_features
    return total


# ------------------------------------------------------------------------------ DigitCNN
def test_digit_cnn_shapes_and_parameters():
    model = DigitCNN()
    x = torch.zeros(3, 1, 28, 28)
    shapes = []
    for layer in model.features:
        x = layer(x)
        if isinstance(layer, nn.MaxPool2d):
            shapes.append(tuple(x.shape[1:]))
    assert shapes == [(16, 14, 14), (32, 7, 7), (64, 3, 3)] and x.shape == (3, 576)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 5) and DigitCNN(10)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    assert count_params(model) == _hand_count(model) == 26_181 == 160 + 4_640 + 18_496 + 2_885
    assert isinstance(model.fc, nn.Linear) and model.fc.in_features == 576


# ------------------------------------------------------------------------------ freeze
def test_freeze_every_parameter_and_nothing_else():
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert freeze(model) is model
    assert not any(p.requires_grad for p in model.parameters()) and model.training  # the mode is not touched
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # no parameter receives a gradient, even when the input wants one
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and all(p.grad is None for p in model.parameters())


def test_what_does_not_freeze():
    model = DigitCNN()
    model.eval()
    model.requires_grad = False  # an attribute of the module object, not of its parameters
    assert all(p.requires_grad for p in model.parameters())
    assert trainable_parameters(freeze(model)) == 0


# ------------------------------------------------------------------------------ replace_head
# torchvision's architectures, built on the meta device (no memory, no time): the head's place
# and in_features of each, and the layers that must survive
HEADS = {
    "resnet18": ("fc", 512),
    "resnet50": ("fc", 2048),
    "alexnet": ("classifier.6", 4096),
    "vgg16": ("classifier.6", 4096),
    "densenet121": ("classifier", 1024),
    "mobilenet_v3_small": ("classifier.3", 1024),
}


def _module(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path)


def test_replace_head_on_torchvision_architectures():
    for name, (path, in_features) in HEADS.items():
        with torch.device("meta"):
            model = getattr(torchvision.models, name)()
        freeze(model)
        old = _module(model, path)
        others = {n: m for n, m in model.named_modules() if n and n != path and not n.startswith(path + ".")}
        assert replace_head(model, 7) is model
        new = _module(model, path)
        assert isinstance(new, nn.Linear) and new is not old, name
        assert (new.in_features, new.out_features) == (in_features, 7) and new.bias is not None, name
        assert new.weight.device.type == "meta"  # created where the old head lived
        assert all(p.requires_grad for p in new.parameters())
        assert trainable_parameters(model) == in_features * 7 + 7, name
        survivors = {n: m for n, m in model.named_modules() if n and n != path and not n.startswith(path + ".")}
        assert survivors.keys() == others.keys() and all(survivors[n] is others[n] for n in others), name


def test_replace_head_runs_and_keeps_dtype():
    torch.manual_seed(0)
    model = replace_head(freeze(torchvision.models.resnet18()), 3)
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 3)
    model = DigitCNN().double()
    replace_head(model, 4)
    assert model.fc.weight.dtype == torch.float64 and model(torch.zeros(1, 1, 28, 28, dtype=torch.float64)).shape == (1, 4)


def test_replace_head_without_a_head_raises():
    import pytest

    with pytest.raises(ValueError, match="no `fc`"):
        replace_head(nn.Sequential(nn.Conv2d(1, 2, 3)), 3)


# ------------------------------------------------------------------------------ trainable_parameters
def test_trainable_parameters_matches_count_params():
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    assert trainable_parameters(model) == count_params(model, trainable=True) == 11_689_512
    for p in model.layer1.parameters():
        p.requires_grad_(False)
    assert trainable_parameters(model) == count_params(model, trainable=True) == 11_689_512 - 147_968
    replace_head(freeze(model), 5)
    assert trainable_parameters(model) == 512 * 5 + 5
    assert isinstance(trainable_parameters(model), int)

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = self.a  # one layer, two names
    assert trainable_parameters(Tied()) == 20


# ------------------------------------------------------------------------------ data
def test_select_digits_relabels_in_order():
    X = torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1).expand(10, 1, 2, 2).clone()
    y = torch.tensor([5, 0, 9, 7, 5, 3, 6, 8, 9, 1])
    part = select_digits(TensorDataset(X, y), range(5, 10))
    Xs, ys = part.tensors
    assert ys.tolist() == [0, 4, 2, 0, 1, 3, 4] and Xs[:, 0, 0, 0].tolist() == [0, 2, 3, 4, 6, 7, 8]
    assert select_digits(TensorDataset(X, y), [9, 5]).tensors[1].tolist() == [1, 0, 1, 0]
    splits = mnist_splits()
    assert len(select_digits(splits["train"], range(5))) == 1750 and len(select_digits(splits["test"], range(5, 10))) == 500


def test_few_shot_is_balanced_and_its_own_random_stream():
    target = select_digits(mnist_splits()["train"], range(5, 10))
    torch.manual_seed(123)
    a = few_shot(target, 5, seed=2)
    torch.manual_seed(456)
    b = few_shot(target, 5, seed=2)
    assert torch.equal(a.tensors[0], b.tensors[0]) and a.tensors[1].tolist() == [c for c in range(5) for _ in range(5)]
    assert not torch.equal(few_shot(target, 5, seed=3).tensors[0], a.tensors[0])
    X, y = target.tensors
    for image, label in zip(*a.tensors):  # real examples of their class
        assert any(torch.equal(image, X[i]) for i in torch.nonzero(y == label).flatten())


# ------------------------------------------------------------------------------ fit and the three models
def test_fit_trains_only_what_is_trainable():
    labelled = few_shot(select_digits(mnist_splits()["train"], range(5, 10)), 2, seed=0)
    seed_everything(0)
    model = replace_head(freeze(DigitCNN()), 5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = fit(model, labelled, epochs=3, lr=1e-2, batch_size=5, device="cpu")
    assert len(losses) == 3 and losses[-1] < losses[0]
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"fc.weight", "fc.bias"}
    import pytest

    with pytest.raises(ValueError, match="no trainable parameter"):
        fit(freeze(DigitCNN()), labelled, 1, 1e-3)


def test_transfer_models():
    weights = load_digit_backbone()
    seed_everything(0)
    models = transfer_models(weights, num_classes=5)
    assert list(models) == ["scratch", "feature_extraction", "fine_tuning"]
    counts = {name: trainable_parameters(m) for name, m in models.items()}
    assert counts == {"scratch": 26_181, "feature_extraction": 2_885, "fine_tuning": 26_181}
    for name in ("feature_extraction", "fine_tuning"):
        state = models[name].state_dict()
        assert all(torch.equal(state[k], v) for k, v in weights.items() if not k.startswith("fc."))
        assert not torch.equal(state["fc.weight"], weights["fc.weight"])  # a new head
    assert not torch.equal(models["scratch"].state_dict()["features.0.weight"], weights["features.0.weight"])


def test_transfer_beats_scratch_on_the_notebooks_draw():
    """The notebook's run (TRANSFER: 5 labelled digits per class, seed 2): both transferred models
    beat the same network trained from scratch by several points on the test digits 5-9."""
    result = transfer_experiment(TRANSFER["per_class"], TRANSFER["seed"], TRANSFER["lr"], TRANSFER["epochs"],
                                 TRANSFER["batch_size"], device="cpu")
    assert result["feature_extraction"] >= result["scratch"] + 0.04, result
    assert result["fine_tuning"] >= result["scratch"] + 0.04, result
    assert min(result["feature_extraction"], result["fine_tuning"]) >= 0.85, result


# ------------------------------------------------------------------------------ the shipped backbone
def test_shipped_weights_are_small_and_good():
    path = pretrained.DIGIT_BACKBONE_FILE
    assert path.is_file() and path.stat().st_size < 300_000
    weights = load_digit_backbone()
    model = DigitCNN(num_classes=5)
    model.load_state_dict(weights)  # strict: every key and shape of DigitCNN
    assert all(v.device.type == "cpu" and v.dtype == torch.float32 for v in weights.values())
    assert accuracy(model, select_digits(mnist_splits()["test"], range(5))) >= 0.99


def test_pretraining_reproduces_the_shipped_weights(tmp_path, capsys):
    """`python -m reference.transfer --out FILE` re-runs the pre-training (one CPU thread): the
    weights it writes are as good as the shipped ones (on the machine that made them, and on
    this one when tested: identical, bit for bit)."""
    out = tmp_path / "digits.pt"
    torch.set_num_threads(2)
    try:
        transfer.main(["--out", str(out)])
        assert torch.get_num_threads() == 2  # pretrain_backbone ran on one thread and restored the count
    finally:
        torch.set_num_threads(1)
    assert "test accuracy 0.9" in capsys.readouterr().out
    again, shipped = pretrained.load_digit_backbone(out), load_digit_backbone()
    assert again.keys() == shipped.keys() and all(again[k].shape == shipped[k].shape for k in shipped)
    test = select_digits(mnist_splits()["test"], range(5))
    accuracies = []
    for weights in (again, shipped):
        model = DigitCNN()
        model.load_state_dict(weights)
        accuracies.append(accuracy(model, test))
    assert accuracies[0] >= 0.99 and abs(accuracies[0] - accuracies[1]) <= 0.005
    assert PRETRAIN == {"epochs": 5, "lr": 3e-3, "batch_size": 32, "shift": 2, "seed": 0}


# ------------------------------------------------------------------------------ the ImageNet path
def _torch_home(tmp_path, monkeypatch):
    """An empty TORCH_HOME, and any download attempt an error."""
    def no_download(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"


def test_imagenet_weights_absent(tmp_path, monkeypatch):
    import pytest

    path = _torch_home(tmp_path, monkeypatch)
    assert pretrained.imagenet_resnet18_file() == path
    assert load_imagenet_resnet18() is None
    with pytest.raises(FileNotFoundError, match="resnet18-f37072fd.pth"):
        load_imagenet_resnet18(required=True)
    assert not path.exists()


def test_imagenet_resnet18_from_a_generated_weights_file(tmp_path, monkeypatch):
    """Random values in torchvision's key layout, saved under the name torchvision expects. It
    loads both through our loader and through torchvision's own `weights=` (whose
    `check_hash=True` only applies to downloads: a cached file is not verified)."""
    path = _torch_home(tmp_path, monkeypatch)
    torch.manual_seed(1)
    fake = torchvision.models.resnet18().state_dict()
    path.parent.mkdir(parents=True)
    torch.save(fake, path)

    model = load_imagenet_resnet18()
    assert not model.training and model.fc.out_features == 1000
    assert all(torch.equal(v, fake[k]) for k, v in model.state_dict().items())
    ours = torchvision.models.resnet18(weights=torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
    assert all(torch.equal(v, fake[k]) for k, v in ours.state_dict().items())

    # feature extraction on digits with the same two functions; frozen BatchNorms keep their statistics
    replace_head(freeze(model), 5)
    assert trainable_parameters(model) == 512 * 5 + 5
    net = ImageNetDigits(model, size=32)
    labelled = few_shot(select_digits(mnist_splits()["train"], range(5, 10)), 2, seed=0)
    seed_everything(0)
    fit(net, labelled, epochs=2, lr=1e-2, batch_size=10, device="cpu")
    assert net.training and not model.bn1.training and model.layer1[0].conv1.training
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, fake.get(k, torch.empty(0)))}
    assert changed == {"fc.weight", "fc.bias"}
    assert net(labelled.tensors[0]).shape == (10, 5)


def test_imagenet_input():
    x = torch.rand(2, 1, 28, 28)
    out = imagenet_input(x, size=56)
    assert out.shape == (2, 3, 56, 56)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    grey = out * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)   # undo the normalisation
    assert torch.allclose(grey[:, 0], grey[:, 1], atol=1e-6) and torch.allclose(grey[:, 0], grey[:, 2], atol=1e-6)
    assert torch.allclose(imagenet_input(torch.ones(1, 1, 28, 28))[0, :, 0, 0], (1 - mean) / std)
