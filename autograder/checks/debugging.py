"""Checks of lab debugging (course.yml: lab `debugging`): one check per bug of the seed's script.

The student starts from the lecture's script with its bugs and fixes it. Each check looks for one
bug and, while it is there, names it. The checks are independent, so that on the unfixed script
every one of them fails for its own bug, and a script with one bug left fails only that bug's check:

- the four bugs of `Net` live in one constructor. `network_assignment` builds `Net()` as it is; the
  other three build it through `_build`, which turns the seed's `self.network==nn.Sequential(...)`
  into the assignment it meant, so that they can look at the layers whatever that bug does;
- `flatten_size` runs a forward pass; `dropout_rate` and `softmax_before_loss` look at the layers
  (and at the output, when the forward pass runs), so a wrong flatten size fails only its own check;
- `accuracy_denominator`, `patience_counter` and `nms_names` call the student's function on data
  of their own; `gpu` reads what the notebook's training recorded.
No check trains a model: the record that `gpu` reads comes from the notebook's training alone.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from autograder import witness
from autograder.checks import call_student as _call
from autograder.checks import error_line, expect, expect_gpu_execution, fail, keeps_rng

__all__ = ["network_assignment", "flatten_size", "dropout_rate", "softmax_before_loss",
           "accuracy_denominator", "patience_counter", "gpu", "nms_names"]

_ASSIGN = ("`self.network==nn.Sequential(...)` compares instead of assigning, so the layers are never stored: "
           "write `self.network = nn.Sequential(...)`")


# --- helpers (private) --------------------------------------------------------------------------


class _Unassigned:
    """Stands for an attribute that `__init__` reads before ever assigning it; comparing it with
    `==` assigns the other side (the seed's `self.network==nn.Sequential(...)` as meant)."""

    def __init__(self, owner: nn.Module, name: str) -> None:
        self._owner, self._name = owner, name

    def __eq__(self, other: Any) -> bool:
        setattr(self._owner, self._name, other)
        return True

    __hash__ = None  # type: ignore[assignment]


def _build(Net: Callable) -> nn.Module:
    """`Net()`, with `self.x == ...` in its constructor read as `self.x = ...` (only while it runs):
    the layers the student wrote, for the checks of the other bugs. While grading, built in the
    probe (a subclass of the student's class is the student's code)."""
    return witness.boundary("build", _build_here, Net)


def _build_here(Net: Callable) -> nn.Module:
    if not isinstance(Net, type) or not issubclass(Net, nn.Module):
        fail("Net", "an nn.Module class", type(Net).__name__, "pass the class Net itself")

    class Probe(Net):  # type: ignore[misc, valid-type]
        def __getattr__(self, name: str) -> Any:
            try:
                return super().__getattr__(name)
            except AttributeError:
                if name.startswith("_"):
                    raise
                return _Unassigned(self, name)

    Probe.__name__, Probe.__qualname__ = Net.__name__, Net.__qualname__   # the student's messages read as theirs
    model = _call(Probe, "Net()", hint="the constructor must run without arguments")
    model.__class__ = Net  # from here on, a plain Net
    return model


def _forward(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor | None, BaseException | None]:
    """model(x) in eval mode without gradients: (output, None), or (None, the error)."""
    model.eval()
    try:
        with torch.no_grad():
            return model(x), None
    except NotImplementedError:
        raise
    except Exception as err:  # noqa: BLE001 — the student's forward may raise anything
        return None, err


# --- Net ----------------------------------------------------------------------------------------


@keeps_rng
def network_assignment(Net: Callable) -> None:
    """`Net()` builds, and the model holds its classifier's layers (no `self.network==...`)."""
    try:
        model = Net()
    except NotImplementedError:
        raise
    except AttributeError as err:
        unset = f"'{getattr(Net, '__name__', 'Net')}' object has no attribute" in str(err)
        fail("Net()", "a model", error_line(err),
             _ASSIGN if unset else "read the error: a name that does not exist where it is used")
    except Exception as err:  # noqa: BLE001
        fail("Net()", "a model", error_line(err), "the constructor must run without arguments")
    expect(isinstance(model, nn.Module), "Net()", "an nn.Module", type(model).__name__,
           "subclass nn.Module and call super().__init__() first")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    expect(len(linears) > 0, "Net() fully connected layers", "the classifier's nn.Linear layers",
           "none", _ASSIGN)


@keeps_rng
def flatten_size(Net: Callable) -> None:
    """A [2, 1, 28, 28] batch goes through Net and comes out [2, 10] (the flatten size fits 28x28 input)."""
    model = _build(Net)
    out, err = _forward(model, torch.zeros(2, 1, 28, 28))
    what = "Net on a [2, 1, 28, 28] batch"
    hint = ("the `64*29*29` flatten size is still there: three 2×2 poolings take 28 to 14, 7 and 3 "
            "(the padded convolutions keep the size), so the classifier gets 64·3·3 = 576 values")
    if err is not None:
        fail(what, "outputs of shape (2, 10)", error_line(err), hint)
    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    expect(got == (2, 10), what, "outputs of shape (2, 10)", str(got), "forward returns the classifier's output")


@keeps_rng
def dropout_rate(Net: Callable) -> None:
    """Every dropout layer of Net drops 20% (p = 0.2), as the seed's comments say."""
    model = _build(Net)
    layers = [(name, m) for name, m in model.named_modules()
              if isinstance(m, nn.modules.dropout._DropoutNd) or
              ("dropout" in type(m).__name__.lower() and isinstance(getattr(m, "p", None), (int, float)))]
    expect(len(layers) > 0, "Net dropout layers", "nn.Dropout(0.2) after the hidden layers", "none",
           "keep the seed's dropout, written nn.Dropout(0.2)")
    for name, m in layers:
        if m.p != 0.2:
            extra = f", inplace={m.inplace!r}" if getattr(m, "inplace", False) else ""
            hint = ("`nn.Dropout(0,2)` is two arguments, p=0 and inplace=2, and drops nothing: "
                    "a comma is not a decimal point, write nn.Dropout(0.2)") if m.p == 0 else \
                "the seed drops 20% of the nodes: nn.Dropout(0.2)"
            fail(f"Net dropout layer {name}", "p = 0.2", f"p = {m.p}{extra}", hint)


@keeps_rng
def softmax_before_loss(Net: Callable) -> None:
    """Net returns logits: no softmax layer, and its outputs are not probabilities (nn.CrossEntropyLoss
    applies log-softmax itself)."""
    model = _build(Net)
    hint = ("the network ends in a softmax before nn.CrossEntropyLoss, which applies log-softmax itself: "
            "the loss cannot fall below ln(1 + 9/e) ≈ 1.46 and the gradients shrink; remove the softmax")
    for name, m in model.named_modules():
        if isinstance(m, (nn.Softmax, nn.Softmin, nn.Softmax2d)):
            fail(f"Net layer {name}", "no softmax (the network returns logits)", repr(m), hint)
    gen = torch.Generator().manual_seed(0)
    out, err = _forward(model, torch.rand(16, 1, 28, 28, generator=gen))
    if err is not None or not isinstance(out, torch.Tensor) or out.dim() != 2:
        return  # the forward pass is flatten_size's to check
    rows = out.double().sum(dim=1)
    if bool(((out >= 0) & (out <= 1)).all()) and bool(torch.allclose(rows, torch.ones_like(rows), atol=1e-4)):
        fail("Net outputs on 16 images", "logits (any real numbers)", "rows in [0, 1] that sum to 1", hint)


# --- training -----------------------------------------------------------------------------------


@keeps_rng
def accuracy_denominator(evaluate: Callable) -> None:
    """evaluate(model, loader, device) returns (mean loss per sample, fraction right) for loaders of
    100 samples in batches of 100, 32 (a short last batch) and 7."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(100, 1, 28, 28, generator=gen)
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
        logits = model(x)
    y = logits.argmax(dim=1)
    y[::3] = torch.randint(0, 10, (len(y[::3]),), generator=gen)   # about 70% right
    right = int((logits.argmax(dim=1) == y).sum())
    expected = (F.cross_entropy(logits, y).item(), right / len(y))
    for batch_size in (100, 32, 7):
        loader = DataLoader(TensorDataset(x, y), batch_size=batch_size)
        what = f"evaluate(model, loader, 'cpu') on 100 samples in batches of {batch_size}"
        with torch.no_grad():  # whatever evaluate does, no training forward pass is recorded (see gpu)
            got = _call(evaluate, what, model, loader, "cpu", hint="evaluate(model, loader, device) -> (loss, accuracy)")
        if not (isinstance(got, tuple) and len(got) == 2):
            fail(what, "a tuple (loss, accuracy)", repr(got)[:80], "return loss, accuracy")
        loss, acc = got
        try:
            loss, acc = float(loss), float(acc)
        except (TypeError, ValueError):
            fail(what, "two numbers (loss, accuracy)", repr(got)[:80], "return Python floats (.item())")
        if abs(acc - expected[1]) > 1e-6:
            hint = ("the accuracy is the number right over the number of samples of this loader; the seed "
                    "divides by len(train_loader), the number of training batches")
            if acc * len(loader) == right or abs(acc * len(loader) - right) < 1e-6:
                hint = "divide the number right by the number of samples, not by the number of batches (len(loader))"
            fail(f"{what}: accuracy", f"{expected[1]:.4f} ({right} right of 100)", f"{acc:.6g}", hint)
        if abs(loss - expected[0]) > 1e-4 * max(1.0, abs(expected[0])):
            fail(f"{what}: loss", f"{expected[0]:.4f}", f"{loss:.6g}",
                 "average the cross-entropy per sample: sum it over the samples, divide by their number")


def patience_counter(EarlyStopping: Callable) -> None:
    """EarlyStopping(patience=2).step over 1.0, 0.9, 0.95, 0.96 → False, False, False, True; the
    counter resets on an improvement (1.0, 1.1, 0.9, 1.0, 1.1 → stop at the last)."""
    for losses, expected in (([1.0, 0.9, 0.95, 0.96], [False, False, False, True]),
                             ([1.0, 1.1, 0.9, 1.0, 1.1], [False, False, False, False, True])):
        stopper = _call(EarlyStopping, "EarlyStopping(patience=2)", 2)
        got = [_call(stopper.step, f"EarlyStopping(patience=2).step({loss})", loss) for loss in losses]
        if [bool(g) for g in got] != expected or not all(isinstance(g, bool) for g in got):
            hint = "count the epochs in a row without improvement (+1 each), reset to 0 on an improvement, stop at counter >= patience"
            if not any(got):
                hint = ("the counter never counts: the seed's `counter = 1` sets it to 1 instead of adding 1 "
                        "(`counter += 1`), so it never reaches a patience of 2")
                if _call(stopper.step, "EarlyStopping(patience=2).step(2.0)", 2.0) is True:
                    hint = "you stop one epoch late: stop when counter >= patience, not counter > patience"
            fail(f"EarlyStopping(patience=2).step(...) for val losses {losses}", str(expected),
                 str([g if isinstance(g, bool) else repr(g) for g in got]), hint)


def gpu() -> None:
    """The notebook's Net training ran on the device the grader offered (skipped without CUDA)."""
    expect_gpu_execution("Net training")


# --- NMS ----------------------------------------------------------------------------------------


def _show(rows: Any) -> str:
    try:
        return "[" + ", ".join(f"(class {int(r[0])}, score {float(r[1]):g})" for r in rows) + "]"
    except (TypeError, ValueError, IndexError):
        return repr(rows)[:120]


def nms_names(nms_rows: Callable) -> None:
    """nms_rows runs (no NameError) and keeps the right rows: one row; two overlapping rows of one
    class; rows of two classes; an IoU equal to the threshold survives."""
    hint_names = ("the seed stores the best box as `chose_box` but uses `chosen_box`, and compares `bbox[2:]` "
                  "where the loop variable is `box`: one name each")
    cases = [
        ([[0, 0.9, 0, 0, 10, 10]], 0.5, [0]),
        ([[0, 0.8, 1, 1, 11, 11], [0, 0.9, 0, 0, 10, 10]], 0.5, [1]),
        ([[1, 0.7, 0, 0, 10, 10], [0, 0.9, 0, 0, 10, 10], [0, 0.6, 20, 20, 30, 30]], 0.5, [1, 0, 2]),
        ([[0, 0.8, 0, 0, 1, 1], [0, 0.9, 0, 0, 2, 1], [1, 0.7, 0, 0, 2, 1], [0, 0.6, 0.1, 0, 2, 1]], 0.5, [1, 0, 2]),
    ]
    for rows, threshold, keep in cases:
        snapshot = [list(r) for r in rows]
        what = f"nms_rows({rows}, {threshold})"
        try:
            got = nms_rows(rows, threshold)
        except NotImplementedError:
            raise
        except NameError as err:
            fail(what, _show([snapshot[i] for i in keep]), error_line(err), hint_names)
        except Exception as err:  # noqa: BLE001
            fail(what, _show([snapshot[i] for i in keep]), error_line(err),
                 "rows are [class, score, x1, y1, x2, y2]; compare boxes with iou(row[2:], other[2:])")
        expected = [snapshot[i] for i in keep]
        same = isinstance(got, list) and len(got) == len(expected) and all(
            [float(v) for v in g] == [float(v) for v in e] for g, e in zip(got, expected))
        hint = "sort by score, keep the best row, drop the rows of its class with IoU > threshold, repeat"
        if len(rows) == 4:
            hint = "rows 0 and 1 overlap with IoU exactly 0.5: a row survives when IoU <= threshold (torchvision's rule)"
        expect(same, what, _show(expected), _show(got), hint)
        expect(rows == snapshot, f"{what}: the rows passed in", "left as they were", _show(rows),
               "sort a copy (sorted(rows, ...)) instead of the list itself")
