"""The checks of lab debugging: the fixed script passes every one; each seed bug, put back alone,
fails exactly its own check (and `self.network==` also `gpu`: nothing can train); the whole seed
script fails every check, each naming its own bug; other buggy variants fail with expected / got.

The notebook is replayed in process: the answer cells (the reference's fixed source, with bugs
put back) are executed into one namespace that holds the notebook's globals (`train_loader`), a
short training run stands in for the notebook's (for `gpu`), then every check runs.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import reference.debugging as R
from autograder.checks import debugging as checks
from autograder.runtime import reset_training_devices
from tests.planted.debugging import BUGS
from tests.judging import fails

CHECKS = ["network_assignment", "flatten_size", "dropout_rate", "softmax_before_loss",
          "accuracy_denominator", "patience_counter", "gpu", "nms_names"]
ARGUMENT = {"network_assignment": "Net", "flatten_size": "Net", "dropout_rate": "Net", "softmax_before_loss": "Net",
            "accuracy_denominator": "evaluate", "patience_counter": "EarlyStopping", "nms_names": "nms_rows"}


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.delenv("COURSE_GRADING", raising=False)   # gpu: a note on CPU, not Skipped
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- replaying the notebook ---------------------------------------------------------------------

_TRAIN = TensorDataset(torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,)))


def _script(bugs) -> dict:
    """The namespace of the notebook after its answer cells ran with `bugs` put back."""
    namespace = {"torch": torch, "nn": nn, "F": F, "math": math, "__name__": "notebook",
                 "train_loader": DataLoader(_TRAIN, batch_size=16)}
    for cell in R.CELLS:
        exec(compile(R.broken_source(cell, bugs), f"<cell {cell}>", "exec"), namespace)  # noqa: S102
    return namespace


def _train_like_the_notebook(ns: dict) -> None:
    """What the notebook's training cell records for `gpu`: a fresh record, then two batches."""
    reset_training_devices()
    try:
        model = ns["Net"]()
        ns["train"](model, DataLoader(_TRAIN, batch_size=16), torch.optim.Adam(model.parameters()), "cpu")
    except Exception:  # noqa: BLE001 — the notebook's cell fails the same way; the checks still run
        pass


def _results(ns: dict) -> dict[str, str | None]:
    """check name → its failure message, or None when it passes."""
    _train_like_the_notebook(ns)
    out = {}
    for name in CHECKS:
        try:
            getattr(checks, name)(*([ns[ARGUMENT[name]]] if name in ARGUMENT else []))
            out[name] = None
        except AssertionError as err:
            out[name] = str(err)
    return out


def test_checks_are_the_public_functions_in_notebook_order():
    assert checks.__all__ == CHECKS


def test_the_fixed_script_passes_every_check(capsys):
    assert _results(_script([])) == dict.fromkeys(CHECKS)
    assert "skipped: no CUDA" in capsys.readouterr().out or torch.cuda.is_available()


def test_the_reference_objects_pass():
    for name, arg in ARGUMENT.items():
        getattr(checks, name)(getattr(R, arg))


# what each check's message must name while its bug is there (the seed's broken text)
NAMES_ITS_BUG = {
    "network_assignment": "self.network==nn.Sequential",
    "flatten_size": "64*29*29",
    "dropout_rate": "nn.Dropout(0,2)",
    "softmax_before_loss": "softmax before nn.CrossEntropyLoss",
    "accuracy_denominator": "len(train_loader)",
    "patience_counter": "counter = 1",
    "gpu": "none recorded",
    "nms_names": "chose_box",
}


def test_the_seed_script_fails_every_check_each_naming_its_bug():
    results = _results(_script(R.SEED_BUGS))
    for name in CHECKS:
        assert results[name] is not None, f"{name} passes on the seed's script"
        assert NAMES_ITS_BUG[name] in results[name], results[name]
        assert results[name].count("\n") <= 1 and "expected" in results[name] and "got" in results[name]


@pytest.mark.parametrize("b", BUGS, ids=lambda b: b.name)
def test_each_planted_seed_bug_fails_exactly_its_checks(b):
    seed_bug = next(s for s in R.SEED_BUGS if (s.cell, s.fixed, s.broken) == (b.cell, b.old, b.new))
    results = _results(_script([seed_bug]))
    failed = {name for name, message in results.items() if message is not None}
    assert failed == set(b.fails), results
    assert NAMES_ITS_BUG[seed_bug.check] in results[seed_bug.check]


def test_planted_bugs_are_the_seed_bugs():
    assert [(b.cell, b.old, b.new) for b in BUGS] == [(s.cell, s.fixed, s.broken) for s in R.SEED_BUGS]
    assert len({b.name for b in BUGS}) == len(BUGS)


def test_checks_leave_the_global_rng_and_the_training_record_alone():
    from autograder.runtime import training_devices

    reset_training_devices()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    for name, arg in ARGUMENT.items():
        getattr(checks, name)(getattr(R, arg))
    assert torch.equal(torch.get_rng_state(), state)
    assert training_devices() == {"parameters": set(), "batches": set()}   # only the notebook's training counts


# --- network_assignment / the probe -------------------------------------------------------------


class Compared(R.Net):
    """The seed's `self.network==` on a working network: Net() fails on reading self.network."""

    def __init__(self):
        nn.Module.__init__(self)
        self.features = nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.MaxPool2d(8))
        self.network == nn.Sequential(nn.Flatten(), nn.Linear(64 * 3 * 3, 10))  # noqa: B015


def test_network_assignment_fails_on_a_comparison():
    fails(checks.network_assignment, Compared, contains=("AttributeError", "no attribute 'network'", "=="))


def test_the_other_checks_see_the_layers_a_comparison_threw_away():
    checks.flatten_size(Compared)      # the probe assigned what `==` compared: the network runs
    model = checks._build(Compared)
    assert type(model) is Compared and isinstance(model.network, nn.Sequential)
    assert not hasattr(model, "anything_else")   # the probe is gone once the model is built


def test_network_assignment_fails_without_linear_layers():
    class NoClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Conv2d(1, 10, 28)

        def forward(self, x):
            return self.features(x).flatten(1)

    fails(checks.network_assignment, NoClassifier, contains=("nn.Linear", "none"))


def test_network_assignment_other_constructor_errors():
    class NeedsArgs(nn.Module):
        def __init__(self, width):
            super().__init__()

    fails(checks.network_assignment, NeedsArgs, contains=("TypeError", "without arguments"))


# --- flatten_size / dropout_rate / softmax_before_loss variants ----------------------------------


def _net(**changes):
    """R.Net with layers of its classifier replaced: changes = {index: module}."""
    class Variant(R.Net):
        def __init__(self):
            super().__init__()
            for i, m in changes.items():
                self.network[int(i)] = m
    return Variant


def test_flatten_size_fails_on_other_wrong_sizes():
    fails(checks.flatten_size, _net(**{"1": nn.Linear(64 * 7 * 7, 256)}), contains=("2x576", "64·3·3 = 576"))
    fails(checks.flatten_size, _net(**{"7": nn.Linear(64, 11)}), contains=("(2, 10)", "(2, 11)"))


def test_dropout_rate_variants():
    fails(checks.dropout_rate, _net(**{"3": nn.Dropout(0.5)}), contains=("network.3", "p = 0.5", "20%"))
    fails(checks.dropout_rate, _net(**{"3": nn.Identity(), "6": nn.Identity()}), contains=("none",))
    checks.dropout_rate(_net(**{"3": nn.Dropout(p=0.2)}))


def test_softmax_before_loss_variants():
    class SoftmaxInForward(R.Net):
        def forward(self, x):
            return F.softmax(super().forward(x), dim=1)

    class LogSoftmaxInForward(R.Net):   # harmless: log-softmax of log-probabilities changes nothing
        def forward(self, x):
            return F.log_softmax(super().forward(x), dim=1)

    fails(checks.softmax_before_loss, SoftmaxInForward, contains=("rows in [0, 1] that sum to 1",))
    fails(checks.softmax_before_loss, _net(**{"7": nn.Sequential(nn.Linear(64, 10), nn.Softmax(dim=-1))}),
           contains=("network.7.1", "Softmax"))
    checks.softmax_before_loss(LogSoftmaxInForward)


def test_net_checks_want_the_class():
    fails(checks.flatten_size, R.Net(), contains=("class",))


# --- accuracy_denominator -----------------------------------------------------------------------


def _evaluate(mean_per_batch=False, divide_by_batches=False, no_eval=False):
    def evaluate(model, loader, device):
        if not no_eval:
            model.eval()
        losses, accs, total, correct, count = [], [], 0.0, 0, 0
        for x, y in loader:
            pred = model(x)
            losses.append(F.cross_entropy(pred, y).item())
            accs.append((pred.argmax(1) == y).float().mean().item())
            total += F.cross_entropy(pred, y, reduction="sum").item()
            correct += (pred.argmax(1) == y).sum().item()
            count += len(y)
        if mean_per_batch:
            return sum(losses) / len(losses), sum(accs) / len(accs)
        return total / count, correct / (len(loader) if divide_by_batches else count)
    return evaluate


def test_accuracy_denominator_variants():
    checks.accuracy_denominator(_evaluate())
    checks.accuracy_denominator(_evaluate(no_eval=True))   # no dropout here: the same numbers
    fails(checks.accuracy_denominator, _evaluate(mean_per_batch=True), contains=("batches of 32", "accuracy"))
    fails(checks.accuracy_denominator, _evaluate(divide_by_batches=True), contains=("not by the number of batches",))
    fails(checks.accuracy_denominator, lambda m, l, d: 0.5, contains=("a tuple (loss, accuracy)",))
    fails(checks.accuracy_denominator, lambda m, l, d: (1 / 0, 1), contains=("ZeroDivisionError",))


# --- patience_counter ---------------------------------------------------------------------------


def _stopper(step):
    return type("Stopper", (R.EarlyStopping,), {"step": step})


def test_patience_counter_variants():
    def stops_one_late(self, val_loss, model=None):
        if val_loss < self.best:
            self.best, self.counter = val_loss, 0
        else:
            self.counter += 1
        return self.counter > self.patience

    def never_resets(self, val_loss, model=None):
        if val_loss < self.best:
            self.best = val_loss
        else:
            self.counter += 1
        return self.counter >= self.patience

    fails(checks.patience_counter, _stopper(stops_one_late), contains=("one epoch late",))

    def sets_to_one(self, val_loss, model=None):   # the seed's counter
        if val_loss < self.best:
            self.best, self.counter = val_loss, 0
        else:
            self.counter = 1
        return self.counter >= self.patience

    fails(checks.patience_counter, _stopper(sets_to_one), contains=("never counts", "counter = 1"))
    message = fails(checks.patience_counter, _stopper(never_resets), contains=("[1.0, 1.1, 0.9, 1.0, 1.1]",))
    assert "reset to 0" in message


# --- nms_names ----------------------------------------------------------------------------------


def test_nms_names_variants():
    def keeps_ties_out(rows, t):
        rows, kept = sorted(rows, key=lambda r: r[1], reverse=True), []
        while rows:
            best = rows.pop(0)
            rows = [r for r in rows if r[0] != best[0] or R.iou(best[2:], r[2:]) < t]
            kept.append(best)
        return kept

    def sorts_in_place(rows, t):
        rows.sort(key=lambda r: r[1], reverse=True)
        return R.nms_rows(rows, t)

    fails(checks.nms_names, keeps_ties_out, contains=("IoU exactly 0.5",))
    fails(checks.nms_names, sorts_in_place, contains=("the rows passed in",))
    fails(checks.nms_names, lambda rows, t: rows, contains=("(class 0, score 0.8)",))
    fails(checks.nms_names, lambda rows, t: rows[0][7], contains=("IndexError",))


# --- gpu and unanswered cells -------------------------------------------------------------------


def test_gpu_fails_when_nothing_trained():
    reset_training_devices()
    fails(checks.gpu, contains=("none recorded",))


def test_gpu_is_skipped_while_grading_without_cuda(monkeypatch):
    from autograder.checks import Skipped

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _train_like_the_notebook(_script([]))
    monkeypatch.setenv("COURSE_GRADING", "1")
    with pytest.raises(Skipped):
        checks.gpu()


def test_not_implemented_propagates():
    def blank(*args, **kwargs):
        raise NotImplementedError()

    class BlankNet(nn.Module):
        def __init__(self):
            raise NotImplementedError()

    for name in ("accuracy_denominator", "patience_counter", "nms_names"):
        with pytest.raises(NotImplementedError):
            getattr(checks, name)(blank)
    for name in ("network_assignment", "flatten_size", "dropout_rate", "softmax_before_loss"):
        with pytest.raises(NotImplementedError):
            getattr(checks, name)(BlankNet)


def test_network_assignment_other_attribute_errors_get_no_comparison_hint():
    class Typo(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2D(1, 8, 3)

    message = fails(checks.network_assignment, Typo, contains=("Conv2D",))
    assert "==" not in message
