"""Checks of lab capstone (a CNN of your own, on the GPU). Names and points: course.yml.

The data set is the grader's (`capstone_dataset()`: Fashion-MNIST or CIFAR-10 when on disk, else
the embedded digits). Thresholds and budgets come per data set, as dicts keyed by its name
(`{"mnist": ..., "fashion_mnist": ..., "cifar10": ...}`, from course.yml's `accuracy_<name>`,
`max_params_<name>`, `train_seconds_<name>`); each check picks its own entry.

Independent of each other: a model that cannot take the data set's images fails `interface`
(and `accuracy`, which needs it to run); a history in the wrong shape fails `interface` alone; a
model over the parameter budget fails `param_budget` alone; slow training fails `time_budget`
alone; a model that trained badly fails `accuracy` alone. The hidden accuracy is scored by the
grader in a separate process (`SCORED`).
"""
from __future__ import annotations

import math
from numbers import Real

import torch
from torch import nn

from autograder import witness
from autograder.checks import count_params, shape_text
from autograder.checks import (
    Scored,
    call_student,
    error_line,
    expect,
    expect_gpu_execution,
    expect_split_accuracy,
    fail,
    model_device,
)
from autograder.data import DATASETS, capstone_dataset
from autograder.i18n import Domain

_ = Domain("capstone").gettext
ngettext = Domain("capstone").ngettext


def N_(message: str) -> str:
    """A msgid of the lab's catalog kept in English where it is defined (Babel extracts `N_("...")`),
    translated with `_()` where it is shown."""
    return message


__all__ = ["interface", "param_budget", "time_budget", "accuracy", "gpu"]

_NAME = "your CNN"           # also names the file the scored model is saved to: never translated there
_SHOWN_NAME = N_("your CNN")  # the same words in this lab's own messages, translated where shown
_HISTORY_KEYS = ("train_loss", "val_loss", "val_acc")
_CRASH = N_("the model cannot run on the test images ([N, C, H, W] floats in [0, 1]): make the interface check pass first")
_LOW = N_("follow the validation curve, not the test split: train longer, add capacity within the parameter budget, "
          "tune the learning rate, add augmentation")
SCORED = {"accuracy": Scored(model=_NAME, threshold="accuracy_{dataset}", crash_hint=_CRASH, low_hint=_LOW,
                             dataset="capstone")}


def _dataset() -> str:
    """The data set graded on: the grader's (from course.yml's data.root) while judging."""
    graders = witness.SESSION.facts.get("datasets", {}) if witness.judging() else {}
    return graders["capstone"] if isinstance(graders.get("capstone"), str) else capstone_dataset()


def _for_dataset(value, dataset: str, what: str) -> float:
    """`value[dataset]` for a per-data-set dict, or `value` itself when it is one number."""
    if isinstance(value, dict):
        if dataset not in value:
            fail(what, _("a value for data set {dataset}").format(dataset=repr(dataset)),
                 _("keys {keys}").format(keys=sorted(value)), _("pass the dict the notebook defines"))
        return value[dataset]
    return value


def interface(make_model, history) -> None:
    """`make_model()` returns an nn.Module whose logits are [N, 10] for a batch of the data set's
    images, and `history` (what train_model returned) is lab 07's: per-epoch lists of numbers
    train_loss, val_loss and val_acc (a fraction in [0, 1]), all of the same length ≥ 1."""
    dataset = _dataset()
    c, h, w = DATASETS[dataset][1]
    model = call_student(make_model, "make_model()", hint=_("make_model() takes no arguments and returns a new model"))
    if not isinstance(model, nn.Module):
        fail("make_model()", _("an nn.Module"), type(model).__name__,
             _("return an instance, MyCNN(...), not the class or a function"))
    batch = (2, c, h, w)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(torch.zeros(batch, device=model_device(model)))
    except NotImplementedError:
        raise  # an answer cell not filled in yet
    except Exception as err:  # noqa: BLE001 — a student's forward may raise anything
        fail(_("{name} on a {batch} batch of {dataset} images").format(name=_(_SHOWN_NAME), batch=shape_text(batch, '[]'),
                                                                        dataset=dataset),
             _("logits of shape (2, 10)"), error_line(err),
             ngettext("{dataset} images are {c}×{h}×{w}: the first convolution takes {c} channel; "
                      "print the shape after each layer to find the flatten size",
                      "{dataset} images are {c}×{h}×{w}: the first convolution takes {c} channels; "
                      "print the shape after each layer to find the flatten size", c).format(dataset=dataset, c=c, h=h, w=w))
    finally:
        model.train(was_training)
    got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
    expect(got == (2, 10), _("{name} logits for a {batch} batch").format(name=_(_SHOWN_NAME), batch=shape_text(batch, '[]')),
           _("shape (2, 10)"), str(got), _("one row of 10 class scores per image (logits: no softmax, no extra outputs)"))

    if not isinstance(history, dict):
        fail(_("train_model's history"), _("a dict with keys {keys}").format(keys=", ".join(_HISTORY_KEYS)),
             type(history).__name__, _("return the history dict (lab 07's fit)"))
    missing = [k for k in _HISTORY_KEYS if k not in history]
    if missing:
        fail(_("train_model's history"), _("keys {keys}").format(keys=", ".join(_HISTORY_KEYS)),
             _("keys {keys}").format(keys=", ".join(map(str, history)) or _("none")),
             _("add {keys}: one value per epoch").format(keys=", ".join(missing)))
    lengths = {k: len(history[k]) if isinstance(history[k], (list, tuple)) else None for k in _HISTORY_KEYS}
    for key, n in lengths.items():
        if n is None:
            fail(f"history[{key!r}]", _("a list with one value per epoch"), type(history[key]).__name__,
                 _("append one number per epoch"))
        if n == 0:
            fail(f"history[{key!r}]", _("at least one value"), _("an empty list"), _("append one value per epoch"))
    if len(set(lengths.values())) > 1:
        fail(_("history lengths"), _("the same number of epochs in each list"),
             ", ".join(f"{k} {n}" for k, n in lengths.items()), _("append train_loss, val_loss and val_acc once per epoch"))
    for key in _HISTORY_KEYS:
        for epoch, value in enumerate(history[key], 1):
            where = _("{history} at epoch {epoch}").format(history=f"history[{key!r}]", epoch=epoch)
            if isinstance(value, bool) or not isinstance(value, Real):
                fail(where, _("a Python number"), type(value).__name__, _("append loss.item() / a float, not a tensor"))
            if not math.isfinite(value):
                fail(where, _("a finite number"), repr(value), _("the loss diverged: lower the learning rate"))
            if key == "val_acc" and not 0.0 <= value <= 1.0:
                fail(where, _("a fraction in [0, 1]"), f"{value:g}", _("correct / count, not a percentage"))
            if key != "val_acc" and value < 0:
                fail(where, _("a loss ≥ 0"), f"{value:g}", _("cross-entropy is never negative"))


def param_budget(model: nn.Module, budgets) -> None:
    """The trained model has at most the data set's budget of parameters (all of them, trainable or not)."""
    dataset = _dataset()
    limit = int(_for_dataset(budgets, dataset, _("parameter budget")))
    what = _("{name} parameters ({dataset})").format(name=_(_SHOWN_NAME), dataset=dataset)
    if not isinstance(model, nn.Module):
        fail(what, f"≤ {limit:,}", type(model).__name__, _("pass the trained model"))
    try:
        sizes = {name: count_params(module) for name, module in model.named_children()}
        total = count_params(model)
    except ValueError as err:  # lazy layers before their first forward pass
        fail(what, f"≤ {limit:,}", error_line(err), _("lazy layers count only after a forward pass: train the model first"))
    if total <= limit:
        return
    largest = sorted(sizes.items(), key=lambda kv: -kv[1])[:2]
    where = ", ".join(f"{name} {n:,}" for name, n in largest if n)
    fail(what, f"≤ {limit:,}", f"{total:,}",
         _("largest: {where}; a Linear on a big flattened map costs most: pool first (global average pooling) "
           "or use fewer channels").format(where=where))


def time_budget(seconds, budgets) -> None:
    """The graded training call (the locked training cell measures it) took at most the data set's
    budget. While grading, the time is the grader's own measure of the whole notebook's wall
    time (training included), never the notebook's clock."""
    dataset = _dataset()
    limit = float(_for_dataset(budgets, dataset, _("time budget")))
    what = _("training time ({dataset})").format(dataset=dataset)
    if witness.active():
        if not witness.judging():
            return                        # the probe: the grader measures the time itself
        outside = witness.measured("notebook_seconds")
        if outside is None:
            fail(what, f"≤ {limit:g} s", _("no measure"), _("the grader measures the time itself"))
        seconds = outside
        what = _("the notebook's wall time, training included, measured by the grader ({dataset})").format(dataset=dataset)
    if isinstance(seconds, bool) or not isinstance(seconds, Real) or not math.isfinite(seconds):
        fail(what, f"≤ {limit:g} s", repr(seconds)[:60], _("run the training cell above: it measures train_seconds"))
    expect(seconds <= limit, what, f"≤ {limit:g} s", f"{seconds:.1f} s",
           _("fewer epochs, fewer channels at full resolution (pool early), or the GPU (device = get_device())"))


def accuracy(model: nn.Module, split: str = "test", thresholds=0.9) -> None:
    """Accuracy of `model` on `dataset_splits(capstone_dataset())[split]` ≥ the data set's threshold
    (the "test" split is scored by the grader in a separate process)."""
    dataset = _dataset()
    threshold = float(_for_dataset(thresholds, dataset, _("accuracy threshold")))
    expect_split_accuracy(model, split, threshold, _NAME, _(_CRASH), _(_LOW), dataset=dataset)


def gpu(model: nn.Module) -> None:
    """`model` was trained with its parameters and batches on the device the grader offered
    (skipped without CUDA: course.yml's grading.gpu policy decides the point)."""
    expect_gpu_execution(_("capstone training"), model)
