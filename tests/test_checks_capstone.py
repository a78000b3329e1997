"""autograder.checks.capstone: each check passes on the reference objects and fails, with expected /
got, on buggy variants; the checks stay independent; the data set (and so the input shape,
thresholds and budgets) follows COURSE_DATA, tested on tiny CIFAR-10 files."""
from __future__ import annotations

import math
import pickle
import time

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from autograder.checks import Skipped
from autograder.checks import capstone as checks
from autograder.data import mnist_splits
from reference import capstone as R
from reference.capstone import CapstoneCNN, make_loaders, make_model, seed_everything, train_model
from tests.planted import planted_source
from tests.judging import fails, fails_here, passes

CHECKS = ["interface", "param_budget", "time_budget", "accuracy", "gpu"]
MAX_PARAMS = {"mnist": 250_000, "fashion_mnist": 250_000, "cifar10": 250_000}
TRAIN_SECONDS = {"mnist": 90, "fashion_mnist": 100, "cifar10": 100}
N_TRAIN = 700          # training digits for the quick runs here (about 2 s each on one core)
ACCURACY = 0.65        # for those runs: the reference reaches 0.77 on the test split, a loop without zero_grad 0.53


@pytest.fixture(autouse=True)
def _environment(monkeypatch):
    torch.set_num_threads(1)
    for name in ("COURSE_DATA", "COURSE_GRADING", "COURSE_DEVICE", "COURSE_SCORING_DIR"):
        monkeypatch.delenv(name, raising=False)


def _splits():
    splits = mnist_splits()
    X, y = splits["train"].tensors
    Xv, yv = splits["val"].tensors
    return {"train": TensorDataset(X[:N_TRAIN], y[:N_TRAIN]), "val": TensorDataset(Xv[:200], yv[:200])}


def _locked_cell(make, train):
    """What the notebook's locked training cell does; a step that raises leaves its names unbound (None)."""
    seed_everything(0)
    train_loader, val_loader = make_loaders(_splits(), batch_size=64)
    try:
        model = make()
    except Exception:  # noqa: BLE001
        return None, None, None
    try:
        start = time.perf_counter()
        history = train(model, train_loader, val_loader, "cpu")
        seconds = time.perf_counter() - start
    except Exception:  # noqa: BLE001
        return model, None, None
    return model, history, seconds


@pytest.fixture(scope="module")
def trained():
    """The reference, trained as the locked cell does on 700 digits: (model, history, seconds)."""
    torch.set_num_threads(1)
    return _locked_cell(make_model, train_model)


# --------------------------------------------------------------------------- interface
def test_interface_passes(trained):
    model, history, _ = trained
    passes(checks.interface, make_model, history)
    passes(checks.interface, lambda: CapstoneCNN(1, 10, (8, 8, 8), hidden=16), {"train_loss": [1], "val_loss": [2.0], "val_acc": [1]})


def _wide_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 2000), nn.ReLU(), nn.Linear(2000, 10))


def test_a_model_over_the_budget_loses_the_budget_only():
    """Its first weight (1,568,000 values, over witness.BIG) reaches a probed check as its shape
    only, a meta tensor: the interface check fed the student's CPU model a batch on `meta` and
    failed it too (red team: over budget cost interface, budget and accuracy)."""
    passes(checks.interface, _wide_mlp, _history())
    fails(checks.param_budget, _wide_mlp(), MAX_PARAMS, contains=("≤ 250,000", "got 1,590,010"))


def _history(**changes):
    h = {"train_loss": [1.0, 0.5], "val_loss": [0.9, 0.6], "val_acc": [0.7, 0.8]}
    h.update(changes)
    return h


class Crashes(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16 * 26 * 26, 10)      # a flatten size for a padding that is not there

    def forward(self, x):
        return self.fc(torch.flatten(x, 1))


@pytest.mark.parametrize("make, contains", [
    (lambda: CapstoneCNN, ("make_model()", "an nn.Module", "type", "not the class")),
    (lambda: CapstoneCNN(in_channels=3), ("[2, 1, 28, 28] batch of mnist images", "RuntimeError", "1×28×28")),
    (lambda: CapstoneCNN(num_classes=11), ("logits for a [2, 1, 28, 28] batch", "shape (2, 10)", "(2, 11)")),
    (lambda: nn.Sequential(CapstoneCNN(), nn.Softmax(dim=1), nn.Flatten(0)), ("shape (2, 10)", "(20,)")),
    (Crashes, ("RuntimeError", "flatten size")),
    (lambda: 1 / 0, ("make_model()", "ZeroDivisionError")),
])
def test_interface_fails_on_the_model(make, contains):
    fails(checks.interface, make, _history(), contains=contains)


@pytest.mark.parametrize("history, contains", [
    ([1.0, 0.9], ("a dict with keys train_loss, val_loss, val_acc", "list")),
    ({"loss": [1.0]}, ("keys train_loss, val_loss, val_acc", "got keys loss", "add train_loss, val_loss, val_acc")),
    (_history(val_acc=[70.0, 80.0]), ("history['val_acc'] at epoch 1", "a fraction in [0, 1]", "got 70", "percentage")),
    (_history(val_acc=[0.7]), ("history lengths", "train_loss 2, val_loss 2, val_acc 1")),
    (_history(train_loss=[torch.tensor(1.0), torch.tensor(0.5)]), ("a Python number", "Tensor", ".item()")),
    (_history(train_loss=[1.0, math.nan]), ("epoch 2", "a finite number", "nan")),
    (_history(val_loss=[]), ("history['val_loss']", "at least one value", "an empty list")),
    (_history(val_loss=0.5), ("one value per epoch", "float")),
    (_history(val_loss=[-0.1, 0.2]), ("a loss ≥ 0", "-0.1")),
])
def test_interface_fails_on_the_history(history, contains):
    fails(checks.interface, make_model, history, contains=contains)


# --------------------------------------------------------------------------- param_budget
def test_param_budget(trained):
    checks.param_budget(trained[0], MAX_PARAMS)
    checks.param_budget(CapstoneCNN(), 33_018)                     # exactly at the budget passes
    fails(checks.param_budget, CapstoneCNN(), 33_017, contains=("≤ 33,017", "got 33,018"))
    big = CapstoneCNN(hidden=4096)
    fails(checks.param_budget, big, MAX_PARAMS,
           contains=("your CNN parameters (mnist)", "≤ 250,000", "got 330,618", "fc1 266,240", "global average pooling"))
    frozen = CapstoneCNN(hidden=4096)
    for p in frozen.parameters():
        p.requires_grad_(False)
    fails(checks.param_budget, frozen, MAX_PARAMS, contains=("330,618",))  # frozen parameters count too
    fails(checks.param_budget, "model", MAX_PARAMS, contains=("str", "the trained model"))
    fails(checks.param_budget, CapstoneCNN(), {"cifar10": 10**6}, contains=("'mnist'", "keys ['cifar10']"))


def test_param_budget_on_lazy_layers():
    lazy = nn.Sequential(nn.LazyConv2d(8, 3), nn.Flatten(), nn.LazyLinear(10))
    fails(checks.param_budget, lazy, MAX_PARAMS, contains=("ValueError", "forward pass"))
    lazy(torch.zeros(2, 1, 28, 28))
    checks.param_budget(lazy, MAX_PARAMS)


# --------------------------------------------------------------------------- time_budget
def test_time_budget(trained):
    checks.time_budget(trained[2], TRAIN_SECONDS)
    checks.time_budget(90.0, TRAIN_SECONDS)
    fails_here(checks.time_budget, 95.2, TRAIN_SECONDS, contains=("training time (mnist)", "≤ 90 s", "got 95.2 s", "fewer epochs"))
    fails_here(checks.time_budget, 10.0, 5, contains=("≤ 5 s", "10.0 s"))
    fails_here(checks.time_budget, None, TRAIN_SECONDS, contains=("None", "run the training cell"))
    fails_here(checks.time_budget, math.inf, TRAIN_SECONDS, contains=("inf",))


# --------------------------------------------------------------------------- accuracy
def test_accuracy(trained):
    model = trained[0].train()
    checks.accuracy(model, "val", {"mnist": ACCURACY, "fashion_mnist": 1.0, "cifar10": 1.0})
    checks.accuracy(model, "test", ACCURACY)
    assert model.training                                          # the check restores the mode
    message = fails_here(checks.accuracy, model, "test", {"mnist": 0.99},
                     contains=("your CNN accuracy on the hidden test split: expected ≥ 0.99, got 0.", "validation curve"))
    assert 0.7 < float(message.split("got ")[1].split(" ")[0]) < 0.99


def test_accuracy_of_an_untrained_or_broken_model():
    seed_everything(0)
    fails(checks.accuracy, CapstoneCNN(), "val", ACCURACY, contains=("validation split", "≥ 0.65"))
    fails(checks.accuracy, CapstoneCNN(in_channels=3), "val", ACCURACY, contains=("RuntimeError", "interface check"))


def test_accuracy_while_grading_submits_the_model(trained, tmp_path, monkeypatch):
    """While grading, the test split is not evaluated in the notebook: the model is saved for the scorer."""
    monkeypatch.setenv("COURSE_SCORING_DIR", str(tmp_path))
    checks.accuracy(CapstoneCNN(), "test", 0.99)                   # an untrained model: nothing judged here
    assert [p.name for p in tmp_path.iterdir()] == ["your_CNN.mnist.pt"]
    spec = checks.SCORED["accuracy"]
    assert spec.threshold.format(dataset="mnist") == "accuracy_mnist" and spec.dataset == "capstone"


# --------------------------------------------------------------------------- gpu
def test_gpu(trained, capsys, monkeypatch):
    model = trained[0]
    checks.gpu(model)                                              # no CUDA here: a note, not a failure
    assert "skipped" in capsys.readouterr().out
    fails(checks.gpu, CapstoneCNN(), contains=("capstone training device", "none recorded"))
    monkeypatch.setenv("COURSE_GRADING", "1")
    with pytest.raises(Skipped):
        checks.gpu(model)


# --------------------------------------------------------------------------- another data set on disk
def _write_cifar10(root, n: int = 4) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8), "labels": [0, 1, 2, 3][:n]}
        with open(folder / name, "wb") as fh:
            pickle.dump(entry, fh, protocol=2)


def test_checks_follow_the_data_set_on_disk(tmp_path, monkeypatch):
    _write_cifar10(tmp_path)
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    # here only: the tests' check process was started before this test's COURSE_DATA (a grader
    # starts its check processes and judges in one environment)
    fails_here(checks.interface, make_model, _history(),       # the digits' model: 1 input channel
           contains=("[2, 3, 32, 32] batch of cifar10 images", "3×32×32", "3 channels"))
    cifar_model = lambda: CapstoneCNN(3, 10, (32, 64, 128))    # noqa: E731
    checks.interface(cifar_model, _history())
    fails_here(checks.param_budget, cifar_model(), {"mnist": 10**6, "fashion_mnist": 10**6, "cifar10": 100_000},
           contains=("parameters (cifar10)", "≤ 100,000", "111,274"))
    fails_here(checks.time_budget, 120.0, TRAIN_SECONDS, contains=("training time (cifar10)", "≤ 100 s"))
    checks.accuracy(cifar_model(), "val", {"mnist": 1.0, "fashion_mnist": 1.0, "cifar10": 0.0})
    fails_here(checks.accuracy, cifar_model(), "val", {"mnist": 0.0, "fashion_mnist": 0.0, "cifar10": 1.01})


# --------------------------------------------------------------------------- planted bugs, in process
def _failed(make, train) -> set[str]:
    model, history, seconds = _locked_cell(make, train)
    calls = {
        "interface": lambda: checks.interface(make, history),
        "param_budget": lambda: checks.param_budget(model, MAX_PARAMS),
        "time_budget": lambda: checks.time_budget(seconds, TRAIN_SECONDS),
        "accuracy": lambda: checks.accuracy(model, "test", ACCURACY),
        "gpu": lambda: checks.gpu(model),
    }
    failed = set()
    for name, call in calls.items():
        try:
            call()
        except AssertionError:
            failed.add(name)
    return failed


def _bugs():
    from tests.planted.capstone import BUGS
    return BUGS


def test_reference_fails_nothing(trained):
    model, history, seconds = trained
    for call in (lambda: checks.interface(make_model, history), lambda: checks.param_budget(model, MAX_PARAMS),
                 lambda: checks.time_budget(seconds, TRAIN_SECONDS), lambda: checks.accuracy(model, "test", ACCURACY),
                 lambda: checks.gpu(model)):
        call()


@pytest.mark.parametrize("b", _bugs(), ids=lambda b: b.name)
def test_planted_bug_fails_exactly_its_checks(b):
    """Each bug of tests/planted/capstone.py in the reference cell it names, trained as the locked
    cell does on 700 digits (the notebook-level run, on all 3,500 digits with course.yml's
    thresholds, is the grader's test)."""
    assert b.fails <= set(CHECKS)
    namespace = dict(vars(R))                      # the notebook's names: CapstoneCNN, DATASET, augment, ...
    exec(compile(planted_source(R, b), f"<planted {b.name}>", "exec"), namespace)  # noqa: S102
    make = namespace["make_model"] if b.cell == "make_model" else make_model
    train = namespace["train_model"] if b.cell == "train_model" else train_model
    assert _failed(make, train) == set(b.fails)


def test_unanswered_cells_propagate_not_implemented(trained):
    """A blank answer cell raises NotImplementedError; the grader reports it as 'not answered yet'."""
    def blank():
        raise NotImplementedError()

    class Blank(nn.Module):
        def forward(self, x):
            raise NotImplementedError()

    for call in (lambda: checks.interface(blank, trained[1]), lambda: checks.interface(Blank, trained[1]),
                 lambda: checks.accuracy(Blank(), "val", 0.5)):
        with pytest.raises(NotImplementedError):
            call()


def test_exports_are_the_course_checks():
    assert checks.__all__ == CHECKS
