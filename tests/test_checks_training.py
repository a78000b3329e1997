"""The checks of lab 07 (training): the reference passes every one, and every one can fail.

Each check runs on the reference (must pass) and on buggy variants (must raise an AssertionError
that reads `... expected ..., got ... — hint`). The planted bugs of tests/planted/training.py are
applied to the reference source here too and run through the notebook's pipeline (seed 0, 5
epochs of fit, the threshold of course.yml) to prove each fails exactly the checks it declares
(the notebook-level run of the first two is the grader's test).
"""
from __future__ import annotations

import inspect
import textwrap
import time

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

import reference.training as R
from autograder.checks import training as checks
from tests.planted.training import BUGS
from tests.judging import fails, fails_here

CHECKS = ["mlp", "param_count", "train_one_epoch", "evaluate", "fit", "confusion_matrix", "per_class_accuracy", "accuracy"]
THRESHOLD = 0.85  # course.yml: labs.training.thresholds.accuracy


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the notebook: a small MLP gains nothing from more threads
    yield
    torch.set_num_threads(before)


def _train(namespace: dict) -> nn.Module:
    """The notebook's training cell, with the MLP and fit of `namespace`."""
    R.seed_everything(0)
    train_loader, val_loader, _ = R.make_loaders(R.TRAIN_SETTINGS["batch_size"])
    model = namespace["MLP"]()
    try:
        namespace["fit"](model, train_loader, val_loader, R.TRAIN_SETTINGS["epochs"], R.TRAIN_SETTINGS["lr"], "cpu")
    except RuntimeError:
        pass  # the notebook's training cell fails the same way; the checks still run
    return model


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    """The reference MLP trained as the notebook trains it: test accuracy 0.914."""
    return _train({"MLP": R.MLP, "fit": R.fit})


def test_threshold_matches_course_yml(course):
    assert course.lab("training").thresholds["accuracy"] == THRESHOLD


def test_reference_passes_quickly(trained):
    objects = {"mlp": R.MLP(), "param_count": R.MLP(), "train_one_epoch": R.train_one_epoch,
               "evaluate": R.evaluate, "fit": R.fit}
    for name, obj in objects.items():
        getattr(checks, name)(obj)  # warm-up (first torch calls)
        t0 = time.perf_counter()
        getattr(checks, name)(obj)
        assert time.perf_counter() - t0 < 0.5, name
    t0 = time.perf_counter()
    checks.accuracy(trained, "val", THRESHOLD)
    checks.accuracy(trained, "test", THRESHOLD)
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("name", ["train_one_epoch", "evaluate", "fit"])
def test_unfilled_cell_propagates_not_implemented(name):
    def blank(*args, **kwargs):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        getattr(checks, name)(blank)


def test_unfilled_forward_propagates_not_implemented():
    class Blank(nn.Module):
        def forward(self, x):
            raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        checks.mlp(Blank())
    with pytest.raises(NotImplementedError):
        checks.accuracy(Blank(), "val", THRESHOLD)


def test_checks_leave_the_global_rng_and_modes_alone(trained):
    model = R.MLP().train()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    checks.mlp(model)
    checks.param_count(model)
    checks.train_one_epoch(R.train_one_epoch)
    checks.evaluate(R.evaluate)
    checks.fit(R.fit)
    trained.train()
    checks.accuracy(trained, "val", THRESHOLD)
    assert torch.equal(torch.get_rng_state(), state)
    assert model.training and trained.training


# --- buggy variants, per check ------------------------------------------------------------------


class SoftmaxMLP(R.MLP):
    def forward(self, x):
        return F.softmax(super().forward(x), dim=1)


class LogSoftmaxMLP(R.MLP):
    def forward(self, x):
        return F.log_softmax(super().forward(x), dim=1)


class NoFlatten(R.MLP):
    def forward(self, x):
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class FlattenAll(R.MLP):
    def forward(self, x):
        return super().forward(x.reshape(1, -1).reshape(-1, 784)[:1])  # one sample, whatever N


class Hidden64(R.MLP):
    def __init__(self):
        super().__init__()
        self.fc2, self.fc3 = nn.Linear(256, 64), nn.Linear(64, 10)


class NoBias(R.MLP):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 256, bias=False)


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(784, 256), nn.Linear(256, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


class ExtraLayer(R.MLP):
    def __init__(self):
        super().__init__()
        self.fc4 = nn.Linear(10, 10)


def _loop(model, loader, optimizer, device, zero_grad=True, step=True, train=True, reduce="sample"):
    if train:
        model.train()
    losses, sizes = [], []
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        if zero_grad:
            optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        if step:
            optimizer.step()
        losses.append(loss.item())
        sizes.append(len(y))
    if reduce == "batch":
        return sum(losses) / len(losses)
    if reduce == "last":
        return losses[-1]
    if reduce == "sum":
        return sum(l * n for l, n in zip(losses, sizes))
    return sum(l * n for l, n in zip(losses, sizes)) / sum(sizes)


def toe_no_zero_grad(model, loader, optimizer, device):
    return _loop(model, loader, optimizer, device, zero_grad=False)


def toe_no_step(model, loader, optimizer, device):
    return _loop(model, loader, optimizer, device, step=False)


def toe_mean_of_batches(model, loader, optimizer, device):
    return _loop(model, loader, optimizer, device, reduce="batch")


def toe_last_loss(model, loader, optimizer, device):
    return _loop(model, loader, optimizer, device, reduce="last")


def toe_total(model, loader, optimizer, device):
    return _loop(model, loader, optimizer, device, reduce="sum")


def toe_no_train_mode(model, loader, optimizer, device):
    return _loop(model, loader, optimizer, device, train=False)


def toe_returns_list(model, loader, optimizer, device):
    return [_loop(model, loader, optimizer, device)]


def _eval(model, loader, device, per="sample", mode=True, no_grad=True, percent=False, divide_by=None):
    if mode:
        model.eval()
    losses, accs, total, correct, n = [], [], 0.0, 0, 0
    with torch.set_grad_enabled(not no_grad):
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            losses.append(F.cross_entropy(logits, y).item())
            accs.append((logits.argmax(1) == y).float().mean().item())
            total += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
    if per == "batch":
        return sum(losses) / len(losses), sum(accs) / len(accs)
    d = divide_by(loader) if divide_by else n
    acc = correct / d
    return total / d, 100 * acc if percent else acc


def eval_per_batch(model, loader, device):
    return _eval(model, loader, device, per="batch")


def eval_divides_by_batches(model, loader, device):
    return _eval(model, loader, device, divide_by=len)


def eval_percent(model, loader, device):
    return _eval(model, loader, device, percent=True)


def eval_no_eval_mode(model, loader, device):
    return _eval(model, loader, device, mode=False)


def eval_with_grad(model, loader, device):
    return _eval(model, loader, device, no_grad=False)


def eval_loss_only(model, loader, device):
    return _eval(model, loader, device)[0]


def eval_seed_train_loader_length(model, loader, device):
    """The seed's division by len(train_loader): a fixed 55 batches (3,500 / 64)."""
    return _eval(model, loader, device, divide_by=lambda _: 55)


def _fit(model, train_loader, val_loader, epochs, lr, device, opt=torch.optim.Adam, fixed_lr=None,
         extra_epoch=False, keys=("train_loss", "val_loss", "val_acc"), percent=False):
    model.to(device)
    optimizer = opt(model.parameters(), lr=fixed_lr if fixed_lr is not None else lr)
    history = {k: [] for k in keys}
    for _ in range(epochs + int(extra_epoch)):
        tl = R.train_one_epoch(model, train_loader, optimizer, device)
        vl, va = R.evaluate(model, val_loader, device)
        for k, v in zip(("train_loss", "val_loss", "val_acc"), (tl, vl, 100 * va if percent else va)):
            if k in history:
                history[k].append(v)
    return history


def fit_sgd(*args):
    return _fit(*args, opt=torch.optim.SGD)


def fit_fixed_lr(*args):
    return _fit(*args, fixed_lr=1e-3)


def fit_extra_epoch(*args):
    return _fit(*args, extra_epoch=True)


def fit_missing_key(*args):
    return _fit(*args, keys=("train_loss", "val_loss"))


def fit_percent(*args):
    return _fit(*args, percent=True)


def fit_returns_nothing(*args):
    _fit(*args)


def fit_tuples(*args):
    return {k: tuple(v) for k, v in _fit(*args).items()}


BUGGY = {
    "mlp": [SoftmaxMLP, LogSoftmaxMLP, NoFlatten, FlattenAll],
    "param_count": [Hidden64, NoBias, TwoLayer, ExtraLayer],
    "train_one_epoch": [toe_no_zero_grad, toe_no_step, toe_mean_of_batches, toe_last_loss, toe_total,
                        toe_no_train_mode, toe_returns_list],
    "evaluate": [eval_per_batch, eval_divides_by_batches, eval_percent, eval_no_eval_mode, eval_with_grad,
                 eval_loss_only, eval_seed_train_loader_length],
    "fit": [fit_sgd, fit_fixed_lr, fit_extra_epoch, fit_missing_key, fit_percent, fit_returns_nothing, fit_tuples],
}


def _arg(name, buggy):
    return buggy() if name in ("mlp", "param_count") else buggy


@pytest.mark.parametrize("name,buggy", [(n, b) for n, bs in BUGGY.items() for b in bs],
                         ids=lambda v: getattr(v, "__name__", v))
def test_check_fails_on_buggy_variant(name, buggy):
    fails(getattr(checks, name), _arg(name, buggy))


@pytest.mark.parametrize("buggy,words", [
    (SoftmaxMLP, "no softmax at the end"),
    (LogSoftmaxMLP, "no log_softmax"),
    (NoFlatten, "RuntimeError"),
    (FlattenAll, "keep the batch dimension"),
    (Hidden64, "Linear layer 2 is 256→64, expected 256→128"),
    (NoBias, "Linear layer 1 has no bias"),
    (TwoLayer, "203,530"),
    (ExtraLayer, "extra layer"),
    (toe_no_zero_grad, "zero_grad() for every batch"),
    (toe_no_step, "optimizer.step()"),
    (toe_mean_of_batches, "the last batch holds 2 samples"),
    (toe_last_loss, "last batch's loss"),
    (toe_total, "a total"),
    (toe_no_train_mode, "model.train()"),
    (toe_returns_list, "a number"),
    (eval_per_batch, "mean of the batch"),
    (eval_divides_by_batches, "not of batches"),
    (eval_seed_train_loader_length, "fraction in [0, 1]"),
    (eval_percent, "not a percentage"),
    (eval_no_eval_mode, "model.eval()"),
    (eval_with_grad, "torch.no_grad()"),
    (eval_loss_only, "a pair (loss, accuracy)"),
    (fit_sgd, "torch.optim.Adam"),
    (fit_fixed_lr, "use the lr argument"),
    (fit_extra_epoch, "3 values (one per epoch)"),
    (fit_missing_key, "add val_acc"),
    (fit_percent, "not a percentage"),
    (fit_returns_nothing, "NoneType"),
    (fit_tuples, "a list"),
], ids=lambda v: getattr(v, "__name__", v))
def test_failure_hints_name_the_bug(buggy, words):
    name = next(n for n, bs in BUGGY.items() if buggy in bs)
    fails(getattr(checks, name), _arg(name, buggy), contains=(words,))


def test_evaluate_reports_the_batch_size_that_breaks_it():
    message = fails(checks.evaluate, eval_per_batch)
    assert "batch_size=64" in message and "the last batch of 64 holds 52 samples" in message


def test_mlp_and_param_count_are_independent():
    checks.param_count(SoftmaxMLP())  # a softmax adds no parameters
    checks.mlp(Hidden64())            # a narrower hidden layer still gives logits [N, 10]
    fails(checks.mlp, R.MLP, contains=("an nn.Module", "MLP()"))


# --- accuracy -----------------------------------------------------------------------------------


def test_accuracy_passes_and_restores_the_mode(trained):
    trained.train()
    checks.accuracy(trained, "val", THRESHOLD)
    checks.accuracy(trained, "test", THRESHOLD)
    assert trained.training


def test_accuracy_untrained_fails():
    R.seed_everything(0)
    message = fails_here(checks.accuracy, R.MLP(), "test", THRESHOLD,
                     contains=("MLP accuracy on the hidden test split: expected ≥ 0.85, got 0.",))
    assert float(message.split("got ")[1].split(" ")[0]) < 0.3


def test_accuracy_threshold_is_strict(trained):
    fails(checks.accuracy, trained, "val", 0.999, contains=("≥ 0.999",))


def test_accuracy_broken_model_fails_with_a_message():
    fails(checks.accuracy, NoFlatten(), "val", THRESHOLD, contains=("validation split", "RuntimeError", "fix MLP"))


# --- the confusion matrix and per-class accuracy -------------------------------------------------

def test_confusion_matrix_and_per_class_accuracy_pass_the_reference():
    checks.confusion_matrix(R.confusion_matrix)
    checks.per_class_accuracy(R.per_class_accuracy)


@pytest.mark.parametrize("wrong, contains", [
    (lambda m, loader, n, d: R.confusion_matrix(m, loader, n, d).T, ("row 0 (true class 0)", "swapped")),
    (lambda m, loader, n, d: R.confusion_matrix(m, loader, n, d).float(), ("an integer dtype", "torch.float32")),
    (lambda m, loader, n, d: R.confusion_matrix(m, loader, n, d)[:9], ("shape (10, 10)", "(9, 10)")),
    (lambda m, loader, n, d: R.confusion_matrix(m, [next(iter(loader))], n, d), ("add up to 64, not to the 500",)),
    (lambda m, loader, n, d: [[0] * 10] * 10, ("a tensor [10, 10]", "list")),
])
def test_confusion_matrix_failures_say_what_is_wrong(wrong, contains):
    fails(checks.confusion_matrix, wrong, contains=contains)


@pytest.mark.parametrize("wrong, contains", [
    (lambda c: c.diagonal() / c.sum(dim=0), ("column sums", "precision")),
    (lambda c: c.diagonal() / c.sum(dim=1).clamp(min=1), ("nan (0 / 0)",)),
    (lambda c: c.diagonal() // c.sum(dim=1), ("floats", "torch.int64")),
    (lambda c: 100 * c.diagonal().double() / c.sum(dim=1), ("not a percentage",)),
    (lambda c: (c.diagonal() / c.sum(dim=1)).tolist(), ("a tensor [3]", "list")),
])
def test_per_class_accuracy_failures_say_what_is_wrong(wrong, contains):
    fails(checks.per_class_accuracy, wrong, contains=contains)


# --- planted bugs, applied to the reference source, through the notebook's pipeline -------------

CELLS = ["MLP", "train_one_epoch", "evaluate", "fit", "confusion_matrix", "per_class_accuracy"]


def _namespace(b) -> dict:
    """The exercise cells executed in one namespace, as in the notebook, with bug `b` planted."""
    namespace = {"torch": torch, "nn": nn, "F": F, "DataLoader": DataLoader, "__name__": "planted"}
    for cell in CELLS:
        src = textwrap.dedent(inspect.getsource(getattr(R, cell)))
        if cell == b.cell:
            src = b.apply(src)
        exec(compile(src, f"<planted {b.name}: {cell}>", "exec"), namespace)  # noqa: S102
    return namespace


@pytest.mark.parametrize("b", BUGS, ids=lambda b: b.name)
def test_planted_bug_fails_exactly_its_checks(b, trained):
    assert b.fails <= set(CHECKS)
    ns = _namespace(b)
    # an evaluate bug cannot change the weights training gives: reuse the reference's model
    model = trained if b.cell in ("evaluate", "confusion_matrix", "per_class_accuracy") else _train(ns)
    calls = {
        "mlp": lambda: checks.mlp(ns["MLP"]()),
        "param_count": lambda: checks.param_count(ns["MLP"]()),
        "train_one_epoch": lambda: checks.train_one_epoch(ns["train_one_epoch"]),
        "evaluate": lambda: checks.evaluate(ns["evaluate"]),
        "fit": lambda: checks.fit(ns["fit"]),
        "confusion_matrix": lambda: checks.confusion_matrix(ns["confusion_matrix"]),
        "per_class_accuracy": lambda: checks.per_class_accuracy(ns["per_class_accuracy"]),
        "accuracy": lambda: checks.accuracy(model, "test", THRESHOLD),
    }
    failed = set()
    for name, call in calls.items():
        try:
            call()
        except AssertionError:
            failed.add(name)
    assert failed == set(b.fails)


def test_first_two_bugs_are_the_clearest():
    assert [b.name for b in BUGS[:2]] == ["evaluate-averages-per-batch", "train-one-epoch-no-zero-grad"]


def test_fit_runs_with_stand_ins_so_a_wrong_helper_costs_only_its_own_check():
    """fit's check gives the notebook's fit stand-ins for train_one_epoch and evaluate: a loop
    that never steps and an evaluate that divides by the number of batches fail their own
    checks, not fit's; the notebook's own functions are put back afterwards."""
    namespace = {"__name__": "notebook"}
    exec(compile(inspect.getsource(R), "<notebook>", "exec"), namespace)
    namespace["train_one_epoch"], namespace["evaluate"] = toe_no_step, eval_divides_by_batches
    with pytest.raises(AssertionError):
        checks.evaluate(namespace["evaluate"])
    with pytest.raises(AssertionError):
        checks.train_one_epoch(namespace["train_one_epoch"])
    checks.fit(namespace["fit"])
    assert namespace["train_one_epoch"] is toe_no_step and namespace["evaluate"] is eval_divides_by_batches
