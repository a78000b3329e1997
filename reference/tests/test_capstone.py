"""reference.capstone against PyTorch and the numbers of LABS.md / the seeds: the CNN's shapes and
parameter counts, augmentation, evaluation, the training loop and its history, and the
Fashion-MNIST / CIFAR-10 path on tiny files written in the real formats (IDX, CIFAR pickles)."""
from __future__ import annotations

import importlib
import inspect
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from autograder import runtime
from autograder.data import DATASETS, capstone_dataset, dataset_splits, mnist_splits
from reference import capstone
from reference.capstone import (
    TRAIN_SETTINGS,
    BaselineCNN,
    CapstoneCNN,
    baseline_train,
    SeedCifarNet,
    SeedLeNetAsWritten,
    augment,
    count_params,
    evaluate,
    make_loaders,
    make_model,
    seed_everything,
    train_model,
)


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)   # small convolutions: one thread is as fast, and never waits for a busy core


def _hand_count(model: nn.Module) -> int:
    """Parameters from the layer definitions: conv out·in·k·k (+ out with a bias), BatchNorm 2·c,
    linear out·in + out."""
    total = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            total += m.out_channels * m.in_channels * kh * kw + (m.out_channels if m.bias is not None else 0)
        elif isinstance(m, nn.BatchNorm2d):
            total += 2 * m.num_features
        elif isinstance(m, nn.Linear):
            total += m.out_features * m.in_features + m.out_features
    return total


# ---------------------------------------------------------------------------- the network
@pytest.mark.parametrize("in_channels, size, widths, features, params", [
    (1, 28, (16, 32, 64), (64, 3, 3), 33_018),      # the digits
    (1, 28, (32, 64, 128), (128, 3, 3), 110_698),   # Fashion-MNIST
    (3, 32, (32, 64, 128), (128, 4, 4), 111_274),   # CIFAR-10
])
def test_shapes_and_parameter_counts(in_channels, size, widths, features, params):
    model = CapstoneCNN(in_channels, 10, widths)
    assert count_params(model) == params == _hand_count(model)
    x = torch.rand(3, in_channels, size, size)
    blocks = [m for m in model.features if isinstance(m, nn.ReLU)]
    seen = []
    hooks = [b.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape))) for b in blocks]
    logits = model.eval()(x)
    for h in hooks:
        h.remove()
    sizes = [size // 2, size // 4, size // 8]
    assert seen == [(3, w, s, s) for w, s in zip(widths, sizes)]
    assert seen[-1] == (3, *features)
    assert logits.shape == (3, 10)


def test_the_digits_count_by_hand():
    # convs (no bias) 1·16·9 + 16·32·9 + 32·64·9, BatchNorms 2·(16+32+64), fc1 64·128+128, fc2 128·10+10
    assert 144 + 4_608 + 18_432 + 224 + 8_320 + 1_290 == 33_018
    assert count_params(CapstoneCNN(1, 10, (16, 32, 64)).features) == 144 + 4_608 + 18_432 + 224


def test_pooling_comes_before_batchnorm_and_relu():
    kinds = [type(m) for m in CapstoneCNN().features]
    assert kinds == [nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d, nn.ReLU] * 3


def test_global_average_pooling_is_a_channel_mean():
    model = CapstoneCNN().eval()
    x = torch.rand(2, 1, 28, 28)
    feats = model.features(x)
    assert torch.allclose(torch.flatten(model.pool(feats), 1), feats.mean(dim=(2, 3)), atol=1e-6)
    assert model(torch.rand(2, 1, 40, 36)).shape == (2, 10)   # any size: the head sees only channels


def test_make_model_follows_the_data_set(monkeypatch):
    assert capstone.DATASET == capstone_dataset() and capstone.INPUT_SHAPE == DATASETS[capstone.DATASET][1]
    a, b = make_model(), make_model()
    assert a is not b and a.fc2.out_features == 10
    for name, shape, params in (("mnist", (1, 28, 28), 33_018), ("fashion_mnist", (1, 28, 28), 110_698),
                                ("cifar10", (3, 32, 32), 111_274)):
        monkeypatch.setattr(capstone, "DATASET", name)
        monkeypatch.setattr(capstone, "INPUT_SHAPE", shape)
        model = make_model()
        assert count_params(model) == params
        assert model.eval()(torch.zeros(2, *shape)).shape == (2, 10)


# ---------------------------------------------------------------------------- the seeds' networks
def test_seed_cifar_net_shapes_and_count():
    model = SeedCifarNet().eval()
    assert count_params(model) == 434_534 == _hand_count(model)
    convs = sum(count_params(m) for m in (model.conv1, model.conv2, model.conv3))
    assert convs == 2_432 + 51_264 + 204_928 == 258_624
    assert count_params(model) - convs == 175_910
    x = torch.zeros(2, 3, 32, 32)
    x = model.pool(model.conv1(x))
    assert x.shape == (2, 32, 15, 15)                  # (28 + 2 - 2) / 2 + 1: the pool's padding 1
    x = model.pool(model.conv2(x))
    assert x.shape == (2, 64, 6, 6)
    x = model.pool(model.conv3(x))
    assert x.shape == (2, 128, 2, 2)                   # so 128 * 2 * 2 is right
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_seed_lenet_as_written_has_no_forward():
    model = SeedLeNetAsWritten()
    assert "forward" not in vars(SeedLeNetAsWritten)
    assert count_params(model) == 62_006             # the layers are there: 3·6·25+6 + 6·16·25+16 + 400·120+120 + ...
    with pytest.raises(NotImplementedError, match='missing the required "forward" function'):
        model(torch.zeros(1, 3, 32, 32))


@pytest.mark.parametrize("in_channels, size, params", [(1, 28, 44_426), (3, 32, 62_006)])
def test_baseline_is_the_seeds_lenet_with_its_forward(in_channels, size, params):
    """BaselineCNN is seed 001's network: on CIFAR-10 its layers are SeedLeNetAsWritten's, shape
    for shape; its forward is a method; on the digits the flattened map is 16·4·4."""
    model = BaselineCNN(in_channels, size)
    assert "forward" in vars(BaselineCNN) and count_params(model) == _hand_count(model) == params
    assert model(torch.zeros(2, in_channels, size, size)).shape == (2, 10)
    if size == 32:
        seed = SeedLeNetAsWritten().state_dict()
        assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in seed.items()}
    else:
        assert model.fc1.in_features == 16 * 4 * 4


def test_baseline_train_is_plain_and_stays_below_the_threshold():
    """The plain recipe (Adam 1e-3, 3 epochs) learns, and stays below the accuracy the capstone
    asks for: a baseline to beat, not an answer (seed 0: 0.88-0.91 over seeds 0-4)."""
    seed_everything(0)
    train, val = make_loaders(mnist_splits())
    model = BaselineCNN()
    history = baseline_train(model, train, val, "cpu")
    assert [len(v) for v in history.values()] == [3, 3, 3]
    threshold = yaml.safe_load((Path(capstone.__file__).parents[1] / "course.yml").read_text())
    threshold = next(lab for lab in threshold["labs"] if lab["id"] == "capstone")["thresholds"]["accuracy_mnist"]
    assert 0.5 < history["val_acc"][-1] < threshold
    assert evaluate(model, val, "cpu") == pytest.approx((history["val_loss"][-1], history["val_acc"][-1]))


# ---------------------------------------------------------------------------- augmentation
def _shifted(x: torch.Tensor, dy: int, dx: int, s: int = 2) -> torch.Tensor:
    """x moved by (dy - s, dx - s) with zero fill, written with F.pad and slicing."""
    H, W = x.shape[-2:]
    return F.pad(x, (s, s, s, s))[..., dy:dy + H, dx:dx + W]


def _matches(out: torch.Tensor, x: torch.Tensor, flips: bool) -> list[bool]:
    """Per image: is `out` a shift of `x` (or, with flips, of x mirrored)?"""
    found = []
    for o, img in zip(out, x):
        candidates = [img, img.flip(2)] if flips else [img]
        found.append(any(torch.equal(o, _shifted(c, dy, dx)) for c in candidates for dy in range(5) for dx in range(5)))
    return found


def test_augment_shifts_digits_and_never_mirrors_them():
    x = mnist_splits()["train"].tensors[0][:32]
    seed_everything(0)
    out = augment(x)
    assert out.shape == x.shape and out.dtype == x.dtype and not torch.equal(out, x)
    assert all(_matches(out, x, flips=False))
    assert x.sum() > 0 and torch.equal(augment(torch.zeros(3, 1, 28, 28)), torch.zeros(3, 1, 28, 28))


def test_augment_mirrors_about_half_of_the_colour_images():
    torch.manual_seed(0)
    x = torch.rand(200, 3, 32, 32)
    out = augment(x)
    assert all(_matches(out, x, flips=True))
    unflipped = sum(_matches(out, x, flips=False))
    assert 60 < 200 - unflipped < 140                   # mirrored ones match only once mirrored back


def test_augment_varies_the_shift_per_image():
    x = torch.zeros(32, 1, 8, 8)
    x[:, :, 4, 4] = 1.0                                 # one bright pixel per image
    seed_everything(1)
    positions = {tuple(torch.nonzero(img[0])[0].tolist()) for img in augment(x)}
    assert len(positions) > 5 and all(2 <= r <= 6 and 2 <= c <= 6 for r, c in positions)


# ---------------------------------------------------------------------------- evaluation
def test_evaluate_is_per_sample_and_batch_size_independent():
    seed_everything(0)
    model = CapstoneCNN().train()
    X, y = mnist_splits()["val"].tensors
    ds = TensorDataset(X[:203], y[:203])
    with torch.no_grad():
        logits = model.eval()(X[:203])
    expected = (F.cross_entropy(logits, y[:203]).item(), (logits.argmax(1) == y[:203]).float().mean().item())
    model.train()
    for bs in (500, 64, 37):
        loss, acc = evaluate(model, DataLoader(ds, batch_size=bs), "cpu")
        assert loss == pytest.approx(expected[0], rel=1e-5) and acc == pytest.approx(expected[1])
    assert not model.training


def test_make_loaders():
    splits = mnist_splits()
    train, val = make_loaders(splits, batch_size=64)
    assert train.batch_size == 64 and val.batch_size == 500 and train.num_workers == val.num_workers == 0
    assert len(train) == 55 and len(val) == 1
    seed_everything(0)
    first = next(iter(train))[1]
    seed_everything(0)
    assert torch.equal(first, next(iter(train))[1])     # seeded shuffling repeats


# ---------------------------------------------------------------------------- training
def _small_run(n: int = 640, seed: int = 0):
    X, y = mnist_splits()["train"].tensors
    val = mnist_splits()["val"]
    splits = {"train": TensorDataset(X[:n], y[:n]), "val": TensorDataset(*(t[:200] for t in val.tensors))}
    seed_everything(seed)
    model = make_model()
    train_loader, val_loader = make_loaders(splits, batch_size=64)
    return model, train_model(model, train_loader, val_loader, "cpu")


def test_train_model_history_and_reproducibility():
    runtime.reset_training_devices()
    model, history = _small_run()
    assert set(history) == {"train_loss", "val_loss", "val_acc"}
    epochs = TRAIN_SETTINGS["epochs"]["mnist"]
    assert all(len(v) == epochs and all(isinstance(x, float) for x in v) for v in history.values())
    assert all(0.0 <= a <= 1.0 for a in history["val_acc"])
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["val_acc"][-1] > 0.5                   # 640 digits, 50 steps: it learns (chance: 0.1)
    assert runtime.training_devices(model) == {"parameters": {"cpu"}, "batches": {"cpu"}}
    small, small_history = _small_run(n=128)
    again, again_history = _small_run(n=128)
    assert again_history == small_history
    assert all(torch.equal(a, b) for a, b in zip(small.state_dict().values(), again.state_dict().values()))
    _, other = _small_run(n=128, seed=1)
    assert other != small_history


def test_train_model_final_val_accuracy_is_the_models():
    model, history = _small_run(n=128)
    val = mnist_splits()["val"]
    loader = DataLoader(TensorDataset(*(t[:200] for t in val.tensors)), batch_size=500)
    assert evaluate(model, loader, "cpu") == pytest.approx((history["val_loss"][-1], history["val_acc"][-1]))


def test_train_settings_are_the_notebooks():
    """benchmarks/capstone.py measures TRAIN_SETTINGS; train_model and the locked training cell use them."""
    assert TRAIN_SETTINGS == {"batch_size": 64, "lr": 3e-3, "weight_decay": 1e-4,
                              "epochs": {"mnist": 5, "fashion_mnist": 10, "cifar10": 20}}
    body = inspect.getsource(train_model)
    assert 'epochs = {"mnist": 5, "fashion_mnist": 10, "cifar10": 20}[DATASET]' in body
    assert "lr=3e-3, weight_decay=1e-4" in body and "max_lr=3e-3" in body
    template = (Path(capstone.__file__).parent / "notebooks" / "capstone.py.j2").read_text()
    assert template.count("make_loaders(splits, batch_size=64)") == 1


# ---------------------------------------------------------------------------- Fashion-MNIST / CIFAR-10 on disk
def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: magic (0, 0, 0x08 = uint8, ndim), big-endian dims, raw bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    with open(path, "wb") as fh:
        fh.write(bytes([0, 0, 0x08, array.ndim]))
        fh.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        fh.write(array.tobytes())


def _images_by_class(rng, n: int, c: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """n uint8 images [n, c, size, size] of two classes, easy to learn from a few: class 0 has a
    bright top half, class 1 a bright bottom half, over noise."""
    labels = np.arange(n) % 2
    rng.shuffle(labels)
    images = rng.integers(0, 100, size=(n, c, size, size), dtype=np.uint8)
    for i, label in enumerate(labels):
        rows = slice(0, size // 2) if label == 0 else slice(size // 2, size)
        images[i, :, rows, :] = rng.integers(180, 256, size=(c, size // 2, size), dtype=np.uint8)
    return images, labels


def write_fashion_mnist(root: Path, n_train: int = 100, n_test: int = 40) -> None:
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images, labels = _images_by_class(rng, n, 1, 28)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images[:, 0])
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)


def write_cifar10(root: Path, per_batch: int = 12, n_test: int = 40) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        images, labels = _images_by_class(rng, n, 3, 32)
        entry = {"batch_label": name, "data": images.reshape(n, -1), "labels": labels.tolist(),
                 "filenames": [f"img{i}.png" for i in range(n)]}
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh, protocol=2)


@pytest.mark.parametrize("name, write, shape, widths", [
    ("fashion_mnist", write_fashion_mnist, (1, 28, 28), 32),
    ("cifar10", write_cifar10, (3, 32, 32), 32),
])
def test_torchvision_data_sets_on_disk(tmp_path, monkeypatch, name, write, shape, widths):
    write(tmp_path)
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    assert capstone_dataset() == name
    reloaded = importlib.reload(capstone)            # DATASET and INPUT_SHAPE are read at import
    try:
        assert reloaded.DATASET == name and reloaded.INPUT_SHAPE == shape
        splits = dataset_splits(name)
        for split in splits.values():
            X, y = split.tensors
            assert X.shape[1:] == shape and X.dtype == torch.float32 and y.dtype == torch.int64
            assert 0.0 <= float(X.min()) and float(X.max()) <= 1.0
        model = reloaded.make_model()
        assert model.features[0].in_channels == shape[0] and model.features[0].out_channels == widths
        seed_everything(0)
        train_loader, val_loader = reloaded.make_loaders(splits, batch_size=64)
        history = reloaded.train_model(model, train_loader, val_loader, "cpu")
        assert len(history["val_acc"]) == TRAIN_SETTINGS["epochs"][name]
        test_acc = reloaded.evaluate(model, DataLoader(splits["test"], batch_size=500), "cpu")[1]
        assert test_acc >= 0.9                        # images and labels stay paired through the loaders
    finally:
        monkeypatch.delenv("COURSE_DATA")
        importlib.reload(capstone)
    assert capstone.DATASET == "mnist"
