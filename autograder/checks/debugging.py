"""Checks of lab debugging (course.yml: lab `debugging`): one check per bug of the seed's script.

The student starts from the lecture's script with its bugs and fixes it. Each check looks for one
bug and, while it is there, says what it **observes** (what the script does, the numbers it gets)
and where to look, never the fix: finding it is the exercise (the fixes are in the solution
notebook). The checks are independent, so that on the unfixed script every one of them fails,
and a script with one bug left fails only that bug's check:

- `Net` holds five bugs. `network_assignment` builds `Net()` as it is; the others build it through
  `_build`, which turns the seed's `self.network==nn.Sequential(...)` into the assignment it
  meant. `flatten_size` pushes a batch through the layers in order (whatever forward does);
  `block_wiring` watches what forward hands each block; `dropout_rate` and `softmax_before_loss`
  look at the layers (and at the output, when the forward pass runs);
- `mlp_forward`, `accuracy_denominator`, `patience_counter`, `best_epoch_report`,
  `percent_correct`, `class_accuracy` and `nms_names` call the student's function on data of their
  own; `fit_runs` and `validation_per_epoch` run the student's `fit` on a model that logs what it
  is fed, with the course's own train, evaluate, EarlyStopping and epoch_report standing in (so
  that their bugs cost their own checks); `gpu` reads what the notebook's training recorded.
No check trains a model: the record that `gpu` reads comes from the notebook's training alone.
Messages are msgids of the lab's catalog (autograder/locale/<lang>/LC_MESSAGES/debugging.po); like
the English, a translation says what a check observes and never the fix.
"""
from __future__ import annotations

import contextlib
import io
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from autograder import witness
from autograder.checks import drawn, call_student as _call
from autograder.checks import error_line, expect, expect_gpu_execution, fail, given, keeps_rng, shape_text
from autograder.i18n import Domain

_ = Domain("debugging").gettext

__all__ = ["network_assignment", "flatten_size", "dropout_rate", "softmax_before_loss", "block_wiring",
           "mlp_forward", "accuracy_denominator", "patience_counter", "best_epoch_report", "fit_runs",
           "validation_per_epoch", "gpu", "percent_correct", "class_accuracy", "nms_names"]


def _floor() -> str:
    """Hint: what a loss does on outputs that went through a softmax (a msgid, made in the language of
    the moment)."""
    return _("the loss cannot fall below ln(1 + 9/e) ≈ 1.46 on such outputs: look at what the network returns")


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
        fail("Net", _("an nn.Module class"), type(Net).__name__, _("pass the class Net itself"))

    class Probe(Net):  # type: ignore[misc, valid-type]
        def __getattr__(self, name: str) -> Any:
            try:
                return super().__getattr__(name)
            except AttributeError:
                if name.startswith("_"):
                    raise
                return _Unassigned(self, name)

    Probe.__name__, Probe.__qualname__ = Net.__name__, Net.__qualname__   # the student's messages read as theirs
    model = _call(Probe, "Net()", hint=_("the constructor must run without arguments"))
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


def _printed(fn: Callable, *args: Any) -> tuple[Any, str]:
    """(fn(*args), what it printed). While grading, run in the notebook's process (a boundary):
    the printed text is the probe's word, the value is judged."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        value = fn(*args)
    return value, out.getvalue()[:2000]


def _runs(items: list[str]) -> str:
    """'train ×6, then valid' for a list of names: repeats counted."""
    runs: list[list] = []
    for item in items:
        if runs and runs[-1][0] == item:
            runs[-1][1] += 1
        else:
            runs.append([item, 1])
    return _(", then ").join(f"{name} ×{n}" if n > 1 else name for name, n in runs) or _("nothing")


# --- Net ----------------------------------------------------------------------------------------


@keeps_rng
def network_assignment(Net: Callable) -> None:
    """`Net()` builds, and the model holds its classifier's layers."""
    try:
        model = Net()
    except NotImplementedError:
        raise
    except AttributeError as err:
        unset = f"'{getattr(Net, '__name__', 'Net')}' object has no attribute" in str(err)
        fail("Net()", _("a model"), error_line(err),
             _("the constructor reads an attribute that nothing ever stored: look closely at the line that "
               "builds it, character by character") if unset else
             _("read the error: a name that does not exist where it is used"))
    except Exception as err:  # noqa: BLE001
        fail("Net()", _("a model"), error_line(err), _("the constructor must run without arguments"))
    expect(isinstance(model, nn.Module), "Net()", _("an nn.Module"), type(model).__name__,
           _("subclass nn.Module and call super().__init__() first"))
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    expect(len(linears) > 0, _("Net() fully connected layers"), _("the classifier's nn.Linear layers"), _("none"),
           _("the classifier is built, yet the model does not hold it: look closely at the line that builds it"))


@keeps_rng
def flatten_size(Net: Callable) -> None:
    """A [2, 1, 28, 28] batch, pushed through Net's layers one by one in the order they were
    built (as the notebook's layer-by-layer cell does, whatever forward does), comes out [2, 10]."""
    model = _build(Net)
    model.eval()
    layers = [(name, m) for name, m in model.named_modules() if name and not list(m.children())]
    what = _("Net's layers, one by one, on a [2, 1, 28, 28] batch")
    x: Any = torch.zeros(2, 1, 28, 28)
    for name, layer in layers:
        before = shape_text(x, "[]")
        try:
            with torch.no_grad():
                x = layer(x)
        except NotImplementedError:
            raise
        except Exception as err:  # noqa: BLE001 — the student's layers may raise anything
            fail(what, _("outputs of shape (2, 10)"),
                 _("{error} (in {name}, given {shape})").format(error=error_line(err), name=name, shape=before),
                 _("print the shape after each layer: what does {name} receive, and what was it built for?").format(
                     name=name))
    got = shape_text(x)
    expect(got == "(2, 10)", what, _("outputs of shape (2, 10)"), got,
           _("the classifier ends with 10 outputs, one per digit"))


@keeps_rng
def dropout_rate(Net: Callable) -> None:
    """Every dropout layer of Net drops 20% (p = 0.2), as the seed's comments say."""
    model = _build(Net)
    layers = [(name, m) for name, m in model.named_modules()
              if isinstance(m, nn.modules.dropout._DropoutNd) or
              ("dropout" in type(m).__name__.lower() and isinstance(getattr(m, "p", None), (int, float)))]
    expect(len(layers) > 0, _("Net dropout layers"), _("a dropout layer after each hidden layer"), _("none"),
           _("the lecture's classifier has dropout after both hidden layers"))
    for name, m in layers:
        if m.p != 0.2:
            extra = f", inplace={m.inplace!r}" if getattr(m, "inplace", False) else ""
            fail(_("Net dropout layer {name}").format(name=name), _("p = 0.2 (20% of the nodes, as the comment says)"),
                 f"p = {m.p}{extra}", _("print the layer: what did each number you passed become?"))


@keeps_rng
def softmax_before_loss(Net: Callable) -> None:
    """Net returns logits, the scores nn.CrossEntropyLoss takes (it applies log-softmax itself): none
    of its layers is a softmax, and its outputs are not probabilities."""
    model = _build(Net)
    for name, m in model.named_modules():
        if isinstance(m, (nn.Softmax, nn.Softmin, nn.Softmax2d)):
            fail(_("Net layer {name}").format(name=name),
                 _("logits: scores of any size, as nn.CrossEntropyLoss takes them"),
                 _("{layer}, whose outputs are probabilities").format(layer=repr(m)), _floor())
    gen = drawn(0)
    out, err = _forward(model, torch.rand(16, 1, 28, 28, generator=gen))
    if err is not None or not isinstance(out, torch.Tensor) or out.dim() != 2:
        return  # the forward pass is flatten_size's and block_wiring's to check
    rows = out.double().sum(dim=1)
    if bool(((out >= 0) & (out <= 1)).all()) and bool(torch.allclose(rows, torch.ones_like(rows), atol=1e-4)):
        fail(_("Net outputs on 16 images"), _("logits (any real numbers)"), _("rows in [0, 1] that sum to 1"), _floor())


# what each part of Net receives from forward on a [N, 1, 28, 28] batch (after the batch dimension)
_PART_INPUTS = {"block1": (1, 28, 28), "block2": (16, 14, 14), "block3": (32, 7, 7), "network": (64, 3, 3)}


@keeps_rng
def block_wiring(Net: Callable) -> None:
    """Net's forward hands each part the output of the one before: on a [2, 1, 28, 28] batch block1
    gets [2, 1, 28, 28], block2 [2, 16, 14, 14], block3 [2, 32, 7, 7] and the classifier
    (`network`) [2, 64, 3, 3] (watched with forward pre-hooks)."""
    model = _build(Net)
    parts = dict(model.named_children())
    missing = [name for name in _PART_INPUTS if name not in parts]
    expect(not missing, _("Net's parts"), ", ".join(_PART_INPUTS), ", ".join(parts) or _("none"),
           _("the lecture's Net has three blocks and a classifier; missing: {names}").format(names=", ".join(missing)))
    seen: dict[str, str] = {}

    def record(name: str):
        def hook(_module, args) -> None:  # must return None, or it would replace the input
            if name not in seen:
                seen[name] = shape_text(args[0], "[]") if args and isinstance(args[0], torch.Tensor) else _("no tensor")
        return hook

    handles = [parts[name].register_forward_pre_hook(record(name)) for name in _PART_INPUTS]
    try:
        _output, err = _forward(model, torch.zeros(2, 1, 28, 28))
    finally:
        for h in handles:
            h.remove()
    what = _("Net's forward on a [2, 1, 28, 28] batch")
    expected = {name: shape_text((2, *dims), "[]") for name, dims in _PART_INPUTS.items()}
    for name in _PART_INPUTS:   # what the parts got, then the parts that got nothing
        if name in seen and seen[name] != expected[name]:
            origin = _(" (the input batch's shape)") if seen[name] == "[2, 1, 28, 28]" else ""
            fail(_("{what}: the input of {name}").format(what=what, name=name), expected[name], f"{seen[name]}{origin}",
                 _("look at what forward hands to {name}").format(name=name))
    for name in _PART_INPUTS:
        if name not in seen:
            fail(_("{what}: the input of {name}").format(what=what, name=name), expected[name],
                 _("forward stopped first: {error}").format(error=error_line(err)) if err is not None
                 else _("{name} never called").format(name=name),
                 _("look at what forward hands to each block, one line at a time"))


# --- MLP ----------------------------------------------------------------------------------------


@keeps_rng
def mlp_forward(MLP: Callable) -> None:
    """MLP() builds and, called on a [2, 1, 28, 28] batch, returns [2, 10] logits."""
    model = _call(MLP, "MLP()", hint=_("the constructor must run without arguments"))
    what = _("MLP()(x), x of shape [2, 1, 28, 28]")
    try:
        model.eval()
        with torch.no_grad():
            out = model(torch.zeros(2, 1, 28, 28))
    except NotImplementedError as err:
        if 'missing the required "forward" function' not in str(err):
            raise  # an answer cell not filled in yet
        fail(what, _("outputs of shape (2, 10)"), error_line(err),
             _("MLP() builds, yet nn.Module finds no forward in it: look at where forward is written, and whose it is"))
    except Exception as err:  # noqa: BLE001
        fail(what, _("outputs of shape (2, 10)"), error_line(err), _("read the error: the last line names the problem"))
    got = shape_text(out)
    expect(got == "(2, 10)", what, _("outputs of shape (2, 10)"), got, _("forward returns the network's output"))


# --- training -----------------------------------------------------------------------------------


@keeps_rng
def accuracy_denominator(evaluate: Callable) -> None:
    """evaluate(model, loader, device) returns (mean loss per sample, fraction right) for loaders of
    100 samples in batches of 100, 32 (a short last batch) and 7."""
    gen = drawn(0)
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
        what = _("evaluate(model, loader, 'cpu') on 100 samples in batches of {size}").format(size=batch_size)
        with torch.no_grad():  # whatever evaluate does, no training forward pass is recorded (see gpu)
            got = _call(evaluate, what, model, loader, "cpu", hint="evaluate(model, loader, device) -> (loss, accuracy)")
        if not (isinstance(got, tuple) and len(got) == 2):
            fail(what, _("a tuple (loss, accuracy)"), repr(got)[:80], _("return loss, accuracy"))
        loss, acc = got
        try:
            loss, acc = float(loss), float(acc)
        except (TypeError, ValueError):
            fail(what, _("two numbers (loss, accuracy)"), repr(got)[:80], _("return Python floats (.item())"))
        if abs(acc - expected[1]) > 1e-6:
            hint = _("look at how the right answers are counted, and what divides them")
            if acc > 0 and abs(right / acc - round(right / acc)) < 1e-6:
                hint = _("that is {right} / {divisor}: look at where {divisor} comes from").format(
                    right=right, divisor=round(right / acc))
            fail(_("{what}: accuracy").format(what=what),
                 _("{value} ({right} right of 100)").format(value=f"{expected[1]:.4f}", right=right), f"{acc:.6g}", hint)
        if abs(loss - expected[0]) > 1e-4 * max(1.0, abs(expected[0])):
            fail(_("{what}: loss").format(what=what), f"{expected[0]:.4f}", f"{loss:.6g}",
                 _("the mean loss per sample: batches of different sizes must weigh what they hold"))


def patience_counter(EarlyStopping: Callable) -> None:
    """EarlyStopping(patience=2).step over 1.0, 0.9, 0.95, 0.96 → False, False, False, True; the
    counter resets on an improvement (1.0, 1.1, 0.9, 1.0, 1.1 → stop at the last)."""
    for losses, expected in (([1.0, 0.9, 0.95, 0.96], [False, False, False, True]),
                             ([1.0, 1.1, 0.9, 1.0, 1.1], [False, False, False, False, True])):
        stopper = _call(EarlyStopping, "EarlyStopping(patience=2)", 2)
        got, counters = [], []
        for loss in losses:
            got.append(_call(stopper.step, f"EarlyStopping(patience=2).step({loss})", loss))
            counter = getattr(stopper, "counter", None)
            counters.append(repr(counter) if isinstance(counter, (int, float)) else "?")
        if [bool(g) for g in got] != expected or not all(isinstance(g, bool) for g in got):
            hint = _("after each step the counter reads {counters}: follow it through the steps; "
                     "when would it reach the patience of 2?").format(counters=", ".join(counters))
            if not any(got) and _call(stopper.step, "EarlyStopping(patience=2).step(2.0)", 2.0) is True:
                hint = _("it says stop one epoch later than the patience of 2 (counter {counters})").format(
                    counters=", ".join(counters))
            fail(_("EarlyStopping(patience=2).step(...) for val losses {losses}").format(losses=losses), str(expected),
                 str([g if isinstance(g, bool) else repr(g) for g in got]), hint)


# --- fit and its report -------------------------------------------------------------------------

_REPORT_HISTORY = {"train_loss": [0.9, 0.8, 0.7], "val_loss": [1.0, 0.8, 0.9], "val_acc": [0.5, 0.6, 0.7]}
_REPORTS = {   # (epoch, best epoch) → the line, written out
    (2, 2): "epoch 2/6: train loss 0.800, valid loss 0.800, valid accuracy 0.600, best valid loss 0.800 (epoch 2)",
    (3, 2): "epoch 3/6: train loss 0.700, valid loss 0.900, valid accuracy 0.700, best valid loss 0.800 (epoch 2)",
}


def best_epoch_report(epoch_report: Callable) -> None:
    """epoch_report(epoch, 6, history, best_epoch) gives the epoch's line with the best
    validation loss so far, for the best epoch itself and for a later one."""
    for (epoch, best_epoch), expected in _REPORTS.items():
        history = {key: values[:epoch] for key, values in _REPORT_HISTORY.items()}
        what = _("epoch_report({epoch}, 6, history, best_epoch={best_epoch}) with val losses {losses}").format(
            epoch=epoch, best_epoch=best_epoch, losses=history["val_loss"])
        got = _call(epoch_report, what, epoch, 6, history, best_epoch, wanted=repr(expected),
                    hint=_("read the error: which object is asked for the attribute, and what is it?"))
        expect(got == expected, what, repr(expected), repr(got)[:200],
               _("compare the two lines: which number differs, and where does the function take it from?"))


# What fit is given: a model that logs what it is fed and answers with these figures, per epoch.
# Patience 2: epochs 3 and 4 do not improve on 0.8, so fit stops after epoch 4.
_TRAIN_LOSSES = [2.0, 1.5, 1.25, 1.125, 1.0, 0.875]
_VAL_LOSSES = [1.0, 0.8, 0.9, 0.95, 0.7, 0.6]
_VAL_ACCS = [0.5, 0.625, 0.6, 0.55, 0.7, 0.75]
_EPOCHS, _PATIENCE, _STOP = 6, 2, 4
_LOADERS = {0.25: "train_loader", 0.75: "valid_loader"}


class _Log(nn.Module):
    """fit's model while it is checked: each batch the stand-ins feed it is [helper, loader]
    (0 train / 1 evaluate, the loader's mark); it logs (helper, loader) and answers with the
    figures of the epoch trained last: [train loss] or [val loss, val accuracy]. It has no
    parameters: no training step of it is recorded (see gpu)."""

    def __init__(self) -> None:
        super().__init__()
        self.fed: list[tuple[str, str]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        helper = "evaluate" if float(x[0]) else "train"
        self.fed.append((helper, _LOADERS.get(round(float(x[1]), 2), "another loader")))
        k = min(max(sum(h == "train" for h, _ in self.fed), 1), _EPOCHS) - 1
        if helper == "train":
            return torch.tensor([_TRAIN_LOSSES[k]], dtype=torch.float64)
        return torch.tensor([_VAL_LOSSES[k], _VAL_ACCS[k]], dtype=torch.float64)


def _mark(loader: Any) -> float:
    """The check's mark of a loader (the first value of its first batch); -1 for another."""
    try:
        return float(next(iter(loader))[0].flatten()[0])
    except Exception:  # noqa: BLE001 — whatever fit passes
        return -1.0


def _train_given(model: nn.Module, loader: Any, optimizer: Any, device: Any) -> float:
    """train's stand-in: one batch [0, the loader's mark] through the model; its answer."""
    return float(model(torch.tensor([0.0, _mark(loader)]))[0])


def _evaluate_given(model: nn.Module, loader: Any, device: Any) -> tuple[float, float]:
    """evaluate's stand-in: one batch [1, the loader's mark] through the model; its answer."""
    out = model(torch.tensor([1.0, _mark(loader)]))
    return float(out[0]), float(out[1])


class _Stopper:
    """EarlyStopping's stand-in (the course's rule; restore changes nothing)."""

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best, self.counter, self.best_state = float("inf"), 0, None

    def step(self, val_loss: float, model: Any = None) -> bool:
        improved = val_loss < self.best - self.min_delta
        self.best = min(self.best, val_loss) if improved else self.best
        self.counter = 0 if improved else self.counter + 1
        return self.counter >= self.patience

    def restore(self, model: Any) -> Any:
        return model


def _early_stopping_given(patience: int, min_delta: float = 0.0) -> _Stopper:
    return _Stopper(patience, min_delta)


def _epoch_report_given(epoch: int, epochs: int, history: Any, best_epoch: int) -> str:
    return f"epoch {epoch}/{epochs}"


_FIT = f"fit(model, train_loader, valid_loader, optimizer, 'cpu', epochs={_EPOCHS}, patience={_PATIENCE})"


def _script() -> str:
    """The validation losses the check's model reports, for a message."""
    return _("(val losses {losses})").format(losses=", ".join(map(str, _VAL_LOSSES)))


def _run_fit(fit: Callable) -> tuple[list[tuple[str, str]], Any, BaseException | None]:
    """The student's fit on the check's model and loaders, with the stand-ins given: (what the
    model was fed, fit's result or None, its error or None)."""
    model = _Log()
    train_loader = [(torch.full((1, 1), 0.25), torch.zeros(1, dtype=torch.long))]
    valid_loader = [(torch.full((1, 1), 0.75), torch.zeros(1, dtype=torch.long))]
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)   # passed on, never stepped
    with given(fit, train=_train_given, evaluate=_evaluate_given, EarlyStopping=_early_stopping_given,
               epoch_report=_epoch_report_given):
        try:
            history = fit(model, train_loader, valid_loader, optimizer, "cpu", _EPOCHS, _PATIENCE)
        except NotImplementedError:
            raise
        except Exception as err:  # noqa: BLE001 — the student's loop may raise anything
            return list(model.fed), None, err
    return list(model.fed), history, None


def fit_runs(fit: Callable) -> None:
    """fit runs to the end and validates on the loader it was given as valid_loader (with the
    course's own train, evaluate, EarlyStopping and epoch_report while it runs)."""
    fed, history, err = _run_fit(fit)
    if err is not None:
        fail(_FIT, _("a history of {n} epochs").format(n=_STOP),
             _("{error} (after: {fed})").format(error=error_line(err), fed=_runs([h for h, _ in fed])),
             _("read the error: where in fit is that name meant to come from?") if isinstance(err, NameError) else
             _("read the error: the last line names the problem"))
    loaders = [loader for helper, loader in fed if helper == "evaluate"]
    expect(bool(loaders), _("{fit}: validation").format(fit=_FIT), _("batches of valid_loader"),
           _("none: evaluate was never called"), _("fit evaluates the model on valid_loader after training"))
    wrong = sorted({loader for loader in loaders if loader != "valid_loader"})
    expect(not wrong, _("{fit}: what evaluate got").format(fit=_FIT), "valid_loader",
           ", ".join(_("another loader") if loader == "another loader" else loader for loader in wrong),
           _("look at which loader fit hands to evaluate"))
    keys = ["train_loss", "val_loss", "val_acc"]
    expect(isinstance(history, dict) and all(isinstance(history.get(k), list) for k in keys), _FIT,
           _("a dict of lists train_loss, val_loss, val_acc"), repr(history)[:120], _("fit returns its history"))


def validation_per_epoch(fit: Callable) -> None:
    """fit validates after every epoch: fed train, valid, train, valid, ... and, with validation
    losses 1.0, 0.8, 0.9, 0.95 and patience 2, stops after epoch 4, returning 4 values per list."""
    fed, history, err = _run_fit(fit)
    order = [helper.replace("evaluate", "valid") for helper, _ in fed]
    expected = ", ".join(["train, valid"] * _STOP)
    hint = _("look at which lines run inside the epoch loop, and which once, after it")
    for k in range(1, len(order)):
        if order[k] == order[k - 1] == "train":
            fail(_("{fit}: what the model was fed").format(fit=_FIT),
                 _("a validation after every epoch ({order})").format(order=expected), _runs(order), hint)
    if err is not None:
        return  # fit stopped before its second epoch: fit_runs says why
    expect(order == ["train", "valid"] * _STOP,
           _("{fit} {losses}: what the model was fed").format(fit=_FIT, losses=_script()),
           _("{order} (no improvement in epochs 3 and 4: stop)").format(order=expected), _runs(order),
           _("follow what the early stopper says after each epoch") if len(order) > 2 * _STOP else hint)
    if isinstance(history, dict):
        for key, values in (("train_loss", _TRAIN_LOSSES), ("val_loss", _VAL_LOSSES), ("val_acc", _VAL_ACCS)):
            got = history.get(key)
            expect(got == values[:_STOP], f"{_FIT} {_script()}: history['{key}']", str(values[:_STOP]),
                   repr(got)[:120], _("one value per epoch, appended as each epoch ends"))


def gpu() -> None:
    """The notebook's Net training ran on the device the grader offered (skipped without CUDA)."""
    expect_gpu_execution(_("Net training"))


# --- test accuracy, overall and per class -------------------------------------------------------


def _classifier(rows: list[tuple[int, int]]) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A 3-class model that predicts class p for the input one_hot(p), and (inputs, labels) for
    `rows` of (prediction, label)."""
    model = nn.Linear(3, 3)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3))
        model.bias.zero_()
    x = torch.eye(3)[[p for p, _ in rows]]
    y = torch.tensor([label for _, label in rows])
    return model, x, y


@keeps_rng
def percent_correct(percent_correct: Callable) -> None:
    """percent_correct(model, test_loader, 'cpu') on 40 samples (30 right) in batches of 16 returns
    75.0, and the line it prints names the test accuracy."""
    rows = [(k % 3, k % 3) for k in range(30)] + [(k % 3, (k + 1) % 3) for k in range(10)]
    model, x, y = _classifier(rows)
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    what = _("percent_correct(model, test_loader, 'cpu'), test_loader: 40 samples in batches of 16")
    try:
        got, printed = witness.boundary("printed", _printed, percent_correct, model, loader, "cpu")
    except NotImplementedError:
        raise
    except Exception as err:  # noqa: BLE001
        fail(what, _("75.0 (30 right of 40)"), error_line(err), _("read the error: the last line names the problem"))
    try:
        accuracy = float(got)
    except (TypeError, ValueError):
        fail(what, _("a number, 75.0"), repr(got)[:80], _("return the percentage"))
    if abs(accuracy - 75.0) > 1e-6:
        hint = _("look at what the number right is divided by")
        if accuracy > 0 and abs(3000 / accuracy - round(3000 / accuracy)) < 1e-6:
            hint = _("that is 100 · 30 / {divisor}: the loader holds 40 samples; "
                     "where does {divisor} come from?").format(divisor=round(3000 / accuracy))
        fail(what, _("75.0 (30 right of 40)"), f"{accuracy:.6g}", hint)
    line = printed.strip() if isinstance(printed, str) else ""
    expect("test" in line.lower() and "train" not in line.lower(), _("{what}: the line it prints").format(what=what),
           _("the test accuracy, called so"), repr(line[:120]) or _("nothing printed"),
           _("every sample counted came from test_loader: read how the line names the figure"))


@keeps_rng
def class_accuracy(class_accuracy: Callable) -> None:
    """class_accuracy(model, test_loader, ['cat', 'dog', 'frog'], 'cpu') gives each class's
    percentage right: 70, 50 and 100 on one loader, 70, 50 and 0 on another."""
    classes = ["cat", "dog", "frog"]
    cases = [   # (right, wrong) per class
        ((7, 3), (4, 4), (6, 0)),
        ((7, 3), (4, 4), (0, 6)),
    ]
    for counts in cases:
        rows = []
        for label, (right, wrong) in enumerate(counts):
            rows += [(label, label)] * right + [((label + 1) % 3, label)] * wrong
        model, x, y = _classifier(rows)
        loader = DataLoader(TensorDataset(x, y), batch_size=7)
        expected = {name: 100.0 * r / (r + w) for name, (r, w) in zip(classes, counts)}
        total_right = sum(r for r, _ in counts)
        what = (f"class_accuracy(model, test_loader, {classes}, 'cpu'), test_loader: "
                + ", ".join(_("{name} {right} right of {total}").format(name=name, right=r, total=r + w)
                            for name, (r, w) in zip(classes, counts)))
        got = _call(class_accuracy, what, model, loader, classes, "cpu", wanted=str(expected),
                    hint=_("{right} of the {total} samples are right: follow one class's counts through the loop").format(
                        right=total_right, total=len(rows)))
        same = isinstance(got, dict) and set(got) == set(expected) and all(
            isinstance(got[k], (int, float)) and abs(got[k] - v) < 1e-6 for k, v in expected.items())
        hint = _("follow one class's counts through the loop: which samples add to its total?")
        if isinstance(got, dict) and got and all(v == 100 for v in got.values()):
            hint = _("{right} of the {total} samples are right, yet every class scores 100%: "
                     "which samples add to a class's total?").format(right=total_right, total=len(rows))
        expect(same, what, str(expected), repr(got)[:160], hint)


# --- NMS ----------------------------------------------------------------------------------------


def _show(rows: Any) -> str:
    try:
        return "[" + ", ".join(_("(class {c}, score {s})").format(c=int(r[0]), s=f"{float(r[1]):g}") for r in rows) + "]"
    except (TypeError, ValueError, IndexError):
        return repr(rows)[:120]


def nms_names(nms_rows: Callable) -> None:
    """nms_rows runs (no NameError) and keeps the right rows: one row; two overlapping rows of one
    class; rows of two classes; an IoU equal to the threshold survives."""
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
            fail(what, _show([snapshot[i] for i in keep]), error_line(err),
                 _("read the error: which name is missing, and under which name was that value stored?"))
        except Exception as err:  # noqa: BLE001
            fail(what, _show([snapshot[i] for i in keep]), error_line(err),
                 _("rows are [class, score, x1, y1, x2, y2]; compare boxes with iou(row[2:], other[2:])"))
        expected = [snapshot[i] for i in keep]
        same = isinstance(got, list) and len(got) == len(expected) and all(
            [float(v) for v in g] == [float(v) for v in e] for g, e in zip(got, expected))
        hint = _("sort by score, keep the best row, drop the rows of its class with IoU > threshold, repeat")
        if len(rows) == 4:
            hint = _("rows 0 and 1 overlap with IoU exactly 0.5: a row survives when IoU <= threshold "
                     "(torchvision's rule)")
        expect(same, what, _show(expected), _show(got), hint)
        expect(rows == snapshot, _("{what}: the rows passed in").format(what=what), _("left as they were"), _show(rows),
               _("sort a copy (sorted(rows, ...)) instead of the list itself"))
