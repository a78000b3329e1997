"""Checks of lab training, the training loop: an MLP on MNIST (course.yml: lab `training`).

Each public function takes the student's object (a model, a function) and raises AssertionError
(expected / got / hint). Expectations are computed here with plain torch on small data made from
a fixed seed, never from `reference`. The random tensors are drawn inside `torch.random.fork_rng`,
so a check leaves the notebook's RNG stream as it found it.

Independent of each other: `train_one_epoch`, `evaluate` and `fit` run on a one-layer probe
model of their own, not on the student's MLP. `fit` calls the student's train_one_epoch and
evaluate (as it should), so it uses data on which their averaging does not matter: a
train_one_epoch that never steps, or an evaluate off by a factor even on one batch, fails `fit`
too. `accuracy` scores the trained model itself, without the student's evaluate.
Messages are msgids of the lab's catalog (autograder/locale/<lang>/LC_MESSAGES/training.po).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from autograder.checks import count_params
from autograder.checks import drawn, call_student as _call
from autograder.checks import Scored, as_number, close, expect, expect_gpu_execution, expect_split_accuracy, fail, fmt, given, keeps_rng, model_device
from autograder.i18n import Domain
from autograder.runtime import get_device

_ = Domain("training").gettext


def N_(message: str) -> str:
    """A msgid of the lab's catalog kept in English where it is defined (Babel extracts `N_("...")`),
    translated with `_()` where it is shown."""
    return message


__all__ = ["mlp", "param_count", "train_one_epoch", "evaluate", "fit", "confusion_matrix", "per_class_accuracy",
           "accuracy", "gpu"]

# the MLP's layers (in, out) and the parameter count: 200,960 + 32,896 + 1,290 = 235,146
_LAYERS = ((784, 256), (256, 128), (128, 10))
_TOTAL = sum(i * o + o for i, o in _LAYERS)


# --- helpers (private) --------------------------------------------------------------------------


class _Probe(nn.Module):
    """Flatten → Linear(784, 10), recording (training mode, grad enabled) at every forward."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(784, 10)
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.training, torch.is_grad_enabled()))
        return self.linear(torch.flatten(x, 1))


def _case(n: int, seed: int, device: torch.device) -> tuple[_Probe, torch.Tensor, torch.Tensor]:
    """A probe model and data X [n, 1, 28, 28] in [0, 1], y int64 [n], drawn from `seed`
    (autograder.checks.drawn: a grading run's draw gives cases no notebook saw); the student's
    RNG untouched."""
    gen = drawn(seed)
    with torch.random.fork_rng(devices=[]):
        model = _Probe()
    bound = 1 / math.sqrt(784)                   # nn.Linear's own initialisation range
    with torch.no_grad():
        for p in model.linear.parameters():
            p.uniform_(-bound, bound, generator=gen)
    X = torch.rand(n, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    return model.to(device), X, y


# --- MLP ----------------------------------------------------------------------------------------


def mlp(model: nn.Module) -> None:
    """MLP() maps [N, 1, 28, 28] digits (N = 5 and N = 1) to logits [N, 10]: flattened inside,
    no softmax (or log-softmax) at the end."""
    if not isinstance(model, nn.Module):
        fail("MLP", _("an nn.Module"), type(model).__name__, _("pass an instance, MLP(), not the class"))
    device = model_device(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        x = torch.rand(5, 1, 28, 28)
    was_training = model.training
    model.eval()
    try:
        for n in (5, 1):
            what = f"MLP()(x [{n}, 1, 28, 28])"
            with torch.no_grad():
                out = _call(model, what, x[:n].to(device),
                            hint=_("flatten the image first: torch.flatten(x, 1) gives [N, 784]"))
            if not isinstance(out, torch.Tensor):
                fail(what, _("a tensor of shape ({n}, 10)").format(n=n), type(out).__name__, _("forward returns fc3's output"))
            if tuple(out.shape) != (n, 10):
                fail(what, _("shape ({n}, 10)").format(n=n), _("shape {shape}").format(shape=tuple(out.shape)),
                     _("flatten to [N, 784] with torch.flatten(x, 1) (keep the batch dimension), end with 10 outputs"))
        with torch.no_grad():
            out = model(x.to(device)).detach().double().cpu()
    finally:
        model.train(was_training)
    rows = out.sum(dim=1)
    if bool(((out >= 0) & (out <= 1)).all()) and torch.allclose(rows, torch.ones_like(rows), atol=1e-4):
        fail(_("MLP output rows"), _("logits (any real numbers)"), _("probabilities (every row in [0, 1], summing to 1)"),
             _("no softmax at the end: return fc3's output; F.cross_entropy applies log-softmax itself"))
    lse = torch.logsumexp(out, dim=1)
    if torch.allclose(lse, torch.zeros_like(lse), atol=1e-4):
        fail(_("MLP output rows"), _("logits (any real numbers)"), _("log-probabilities (logsumexp 0 in every row)"),
             _("no log_softmax at the end: return fc3's output; F.cross_entropy applies log-softmax itself"))


def param_count(model: nn.Module) -> None:
    """The MLP has 235,146 parameters: Linear layers 784→256, 256→128, 128→10 with biases."""
    if not isinstance(model, nn.Module):
        fail("MLP", _("an nn.Module"), type(model).__name__, _("pass an instance, MLP(), not the class"))
    total = count_params(model)
    if total == _TOTAL:
        return
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for k, (n_in, n_out) in enumerate(_LAYERS):
        if k >= len(linears):
            fail(_("MLP parameters"), f"{_TOTAL:,}", f"{total:,}",
                 _("{n} Linear layers; expected 3: 784→256, 256→128, 128→10").format(n=len(linears)))
        m = linears[k]
        if (m.in_features, m.out_features) != (n_in, n_out):
            fail(_("MLP parameters"), f"{_TOTAL:,}", f"{total:,}",
                 _("Linear layer {k} is {got}, expected {expected}").format(
                     k=k + 1, got=f"{m.in_features}→{m.out_features}", expected=f"{n_in}→{n_out}"))
        if m.bias is None:
            fail(_("MLP parameters"), f"{_TOTAL:,}", f"{total:,}",
                 _("Linear layer {k} has no bias: keep bias=True").format(k=k + 1))
    fail(_("MLP parameters"), f"{_TOTAL:,}", f"{total:,}",
         _("784·256 + 256 = 200,960, 256·128 + 128 = 32,896, 128·10 + 10 = 1,290: remove any extra layer"))


# --- train_one_epoch ----------------------------------------------------------------------------

_LR = 0.01          # an SGD step that lowers the loss; every mistake in the loop still shows
_SIZES = (4, 4, 2)  # 10 samples in batches of 4: the last one is short


def _sgd_epoch(model: _Probe, X: torch.Tensor, y: torch.Tensor, zero_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """What one epoch of SGD(lr=_LR) over batches _SIZES gives: (weight, bias, batch losses)."""
    w = model.linear.weight.detach().clone().requires_grad_(True)
    b = model.linear.bias.detach().clone().requires_grad_(True)
    gw, gb = torch.zeros_like(w), torch.zeros_like(b)
    losses, start = [], 0
    for size in _SIZES:
        xb, yb = X[start:start + size].to(w.device), y[start:start + size].to(w.device)
        loss = F.cross_entropy(F.linear(torch.flatten(xb, 1), w, b), yb)
        dw, db = torch.autograd.grad(loss, (w, b))
        gw, gb = (gw + dw, gb + db) if not zero_grad else (dw, db)
        with torch.no_grad():
            w -= _LR * gw
            b -= _LR * gb
        losses.append(loss.item())
        start += size
    return w.detach(), b.detach(), losses


@keeps_rng
def train_one_epoch(train_one_epoch: Callable) -> None:
    """One epoch of SGD(lr=0.01) over 10 samples in batches of 4, 4, 2 on a probe model: the
    weights after it (zero_grad, backward, step per batch), training mode, and the returned loss
    = per-sample mean of the batch losses, sum(loss·B) / 10."""
    device = get_device()
    model, X, y = _case(10, 11, device)
    w0 = model.linear.weight.detach().clone()
    exp_w, _bias, losses = _sgd_epoch(model, X, y)
    acc_w, _bias, _losses = _sgd_epoch(model, X, y, zero_grad=False)  # what forgetting zero_grad gives
    model.eval()  # train_one_epoch must switch it to training mode itself
    loader = DataLoader(TensorDataset(X, y), batch_size=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=_LR)
    what = _("train_one_epoch(model, loader of 10 samples in batches of 4, SGD(lr=0.01), device)")
    got = _call(train_one_epoch, what, model, loader, optimizer, device,
                hint=_("for x, y in loader: move x, y to device, zero_grad, loss = F.cross_entropy(model(x), y), "
                       "backward, step"))

    expect(len(model.calls) > 0, _("{what}: forward passes").format(what=what), _("one per batch (3)"), _("none"),
           _("call model(x) for every batch of the loader"))
    expect(all(training for training, _mode in model.calls), _("{what}: the model's mode during forward").format(what=what),
           _("training mode"), _("eval mode"), _("call model.train() first: the model may come from evaluate, in eval mode"))
    w1 = model.linear.weight.detach()
    expect(not torch.equal(w1, w0), _("{what}: the weights after the epoch").format(what=what), _("updated"), _("unchanged"),
           _("for every batch: loss.backward(), then optimizer.step()"))
    if not torch.allclose(w1, exp_w, atol=1e-5, rtol=1e-4):
        hint = _("per batch, in this order: optimizer.zero_grad(), loss.backward(), optimizer.step()")
        if torch.allclose(w1, acc_w, atol=1e-5, rtol=1e-4):
            hint = _("call optimizer.zero_grad() for every batch: without it the gradients of all batches add up")
        err = (w1 - exp_w).abs().max().item()
        fail(_("{what}: the weights after the epoch").format(what=what),
             _("3 SGD steps, one per batch, each on that batch's gradient"),
             _("weights off by up to {err}").format(err=f"{err:.3g}"), hint)

    loss = as_number(got, _("{what} returned").format(what=what),
                     _("return the mean loss as a Python float: total / number of samples"))
    expected = sum(l * n for l, n in zip(losses, _SIZES)) / sum(_SIZES)
    if not close(loss, expected):
        hint = _("the loss per sample: add loss.item() * len(y) for each batch, divide by the number of samples")
        if close(loss, sum(losses) / len(losses)):
            hint = _("that is the mean of the batch losses: weigh each by its size, sum(loss.item() * len(y)) / "
                     "len(loader.dataset) — the last batch holds 2 samples, not 4")
        elif close(loss, sum(l * n for l, n in zip(losses, _SIZES))) or close(loss, sum(losses)):
            hint = _("a total: divide by the number of samples to get the mean")
        elif close(loss, losses[-1]):
            hint = _("that is the last batch's loss: accumulate the loss of every batch")
        fail(_("{what} returned loss").format(what=what),
             _("{value} (per-sample mean over the epoch)").format(value=f"{expected:.6g}"), f"{loss:.6g}", hint)


# --- evaluate -----------------------------------------------------------------------------------


def _ordered_case(device: torch.device) -> tuple[_Probe, torch.Tensor, torch.Tensor]:
    """500 samples on a probe model; half of the labels are the model's own predictions, and the
    samples are sorted by loss: per-batch means over-weigh the hard samples of a short last batch."""
    model, X, _labels = _case(500, 21, device)
    with torch.no_grad():
        logits = model.linear(torch.flatten(X, 1).to(device)).cpu()
    y = torch.randint(0, 10, (500,), generator=drawn(22))
    y[:250] = logits[:250].argmax(dim=1)
    order = F.cross_entropy(logits, y, reduction="none").argsort()
    return model, X[order].contiguous(), y[order].contiguous()


@keeps_rng
def evaluate(evaluate: Callable) -> None:
    """On a fixed probe model and 500 samples: the same (loss, accuracy) as one full batch of plain
    torch, with batch sizes 1000, 64 and 37 (short last batches of 52 and 19); eval mode, no grad,
    accuracy a fraction in [0, 1]."""
    device = get_device()
    model, X, y = _ordered_case(device)
    with torch.no_grad():
        logits = model.linear(torch.flatten(X, 1).to(device))
        exp_loss = F.cross_entropy(logits, y.to(device)).item()
        exp_acc = (logits.argmax(dim=1).cpu() == y).double().mean().item()
    model.calls.clear()
    for bs in (1000, 64, 37):
        loader = DataLoader(TensorDataset(X, y), batch_size=bs)
        model.train()  # evaluate must switch it to eval mode itself
        what = _("evaluate(model, DataLoader(500 samples, batch_size={bs}), device)").format(bs=bs)
        got = _call(evaluate, what, model, loader, device,
                    hint=_("move x, y to device; sum the losses with reduction='sum', count the right predictions"))
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            fail(what, _("a pair (loss, accuracy)"), type(got).__name__ if not isinstance(got, (tuple, list))
                 else _("{n} values").format(n=len(got)), _("return loss, accuracy"))
        loss = as_number(got[0], _("{what} loss").format(what=what), _("return the mean loss as a Python float"))
        acc = as_number(got[1], _("{what} accuracy").format(what=what), _("return the accuracy as a Python float"))
        expect(bool(model.calls) and not any(training for training, _grad in model.calls),
               _("{what}: the model's mode during forward").format(what=what), _("eval mode"), _("training mode"),
               _("call model.eval() first: dropout and batch norm behave differently in training mode"))
        expect(not any(grad for _mode, grad in model.calls), _("{what}: autograd during forward").format(what=what),
               _("disabled"), _("enabled"), _("wrap the loop in `with torch.no_grad():` — evaluation needs no graph"))
        model.calls.clear()
        n_batches, rest = len(loader), 500 % bs
        short = _("the last batch of {bs} holds {rest} samples").format(bs=bs, rest=rest) if rest else _("one batch")
        if not (0.0 <= acc <= 1.0):
            hint = _("a fraction in [0, 1]: correct / number of samples")
            if close(acc, 100 * exp_acc):
                hint = _("a fraction in [0, 1], not a percentage: correct / number of samples")
            elif close(acc, exp_acc * 500 / n_batches):
                hint = _("divide by the number of samples (len(loader.dataset) = 500), not of batches "
                         "(len(loader) = {n}) — the seed's bug").format(n=n_batches)
            fail(_("{what} accuracy").format(what=what), _("{value} (a fraction in [0, 1])").format(value=f"{exp_acc:.4g}"),
                 f"{acc:.4g}", hint)
        if not close(acc, exp_acc, rtol=0.0, atol=1e-6):
            hint = _("accuracy per sample: count the right predictions over all batches, divide by 500 ({short})").format(
                short=short)
            per_batch = torch.stack([(logits[i:i + bs].argmax(1).cpu() == y[i:i + bs]).double().mean()
                                     for i in range(0, 500, bs)]).mean().item()
            if close(acc, per_batch):
                hint = _("that is the mean of the batch accuracies: count right predictions, divide by 500 ({short})").format(
                    short=short)
            fail(_("{what} accuracy").format(what=what),
                 _("{value} (the same for every batch size)").format(value=f"{exp_acc:.4g}"), f"{acc:.4g}", hint)
        if not close(loss, exp_loss):
            hint = _("loss per sample: F.cross_entropy(..., reduction='sum') over all batches, divided by 500 ({short})").format(
                short=short)
            per_batch = torch.stack([F.cross_entropy(logits[i:i + bs], y[i:i + bs].to(device)).cpu()
                                     for i in range(0, 500, bs)]).mean().item()
            if close(loss, per_batch):
                hint = _("that is the mean of the batch means: weigh each batch by its size ({short})").format(short=short)
            elif close(loss, exp_loss * 500 / n_batches):
                hint = _("divide the summed loss by the number of samples (500), not of batches ({n})").format(n=n_batches)
            elif close(loss, exp_loss * 500):
                hint = _("a total: divide by the number of samples to get the mean")
            fail(_("{what} loss").format(what=what),
                 _("{value} (the same for every batch size)").format(value=f"{exp_loss:.6g}"), f"{loss:.6g}", hint)


# --- the confusion matrix and per-class accuracy ----------------------------------------------

def _as_counts(value: Any, what: str, n: int) -> torch.Tensor:
    """`value` as an int64 tensor [n, n] on the CPU, or a failure saying what it is."""
    if not isinstance(value, torch.Tensor):
        fail(what, _("a tensor [{n}, {n}]").format(n=n), type(value).__name__, _("return a torch.Tensor of counts"))
    expect(tuple(value.shape) == (n, n), what, _("shape ({n}, {n})").format(n=n), str(tuple(value.shape)),
           _("one row per true class, one column per predicted class"))
    expect(not value.is_floating_point() and not value.is_complex(), what, _("whole counts (an integer dtype)"),
           str(value.dtype), _("count with integers, e.g. torch.zeros(n, n, dtype=torch.int64)"))
    return value.detach().cpu().to(torch.int64)


@keeps_rng
def confusion_matrix(confusion_matrix: Callable) -> None:
    """On a fixed probe model and 500 samples, in batches of 64 and of 37: the counts [10, 10] of
    true class (row) against predicted class (column), in eval mode, without gradients."""
    device = get_device()
    model, X, y = _ordered_case(device)
    with torch.no_grad():
        predicted = model.linear(torch.flatten(X, 1).to(device)).argmax(dim=1).cpu()
    expected = torch.bincount(y * 10 + predicted, minlength=100).reshape(10, 10)
    for bs in (64, 37):
        loader = DataLoader(TensorDataset(X, y), batch_size=bs)
        model.train()
        model.calls.clear()
        what = _("confusion_matrix(model, DataLoader(500 samples, batch_size={bs}), 10, device)").format(bs=bs)
        got = _as_counts(_call(confusion_matrix, what, model, loader, 10, device,
                               hint=_("predicted = model(x).argmax(dim=1); count each (true, predicted) pair")), what, 10)
        expect(bool(model.calls) and not any(training for training, _grad in model.calls),
               _("{what}: the model's mode during forward").format(what=what), _("eval mode"), _("training mode"),
               _("call model.eval() first: dropout and batch norm behave differently in training mode"))
        if torch.equal(got, expected):
            continue
        hint = _("entry [t, p] counts the samples of true class t predicted as p, over every batch")
        if torch.equal(got, expected.T):
            hint = _("rows and columns are swapped: the row is the true class, the column the predicted one")
        elif int(got.sum()) != 500:
            hint = _("the counts add up to {total}, not to the 500 samples: count every sample of every batch once").format(
                total=int(got.sum()))
        elif torch.equal(got.sum(dim=1), expected.sum(dim=1)):
            hint = _("each row holds its class's samples, but not where they were predicted: use the argmax of the logits")
        row = int((got != expected).any(dim=1).nonzero()[0])
        fail(_("{what}, row {row} (true class {row})").format(what=what, row=row), str(expected[row].tolist()),
             str(got[row].tolist()), hint)


def per_class_accuracy(per_class_accuracy: Callable) -> None:
    """On two drawn confusion matrices: each true class's share predicted right (the diagonal over
    the row sums), floats; nan for a class without samples (never 0 or 1)."""
    gen = drawn(341)
    while True:                    # every class has samples; row sums differ from column sums
        first = torch.randint(0, 20, (3, 3), generator=gen) + 5 * torch.eye(3, dtype=torch.int64)
        if not torch.equal(first.sum(dim=0), first.sum(dim=1)):
            break
    second = torch.randint(0, 6, (3, 3), generator=gen) + torch.eye(3, dtype=torch.int64)
    second[int(torch.randint(0, 3, (), generator=gen))] = 0     # a class without samples
    for counts in (first, second):
        what = _("per_class_accuracy({counts})").format(counts=counts.tolist())
        got = _call(per_class_accuracy, what, counts.clone(), hint=_("the diagonal divided by each row's sum"))
        if not isinstance(got, torch.Tensor):
            fail(what, _("a tensor [3]"), type(got).__name__, _("return a torch.Tensor, one accuracy per class"))
        got = got.detach().cpu()
        expected = counts.double().diagonal() / counts.double().sum(dim=1)
        expect(tuple(got.shape) == (3,), what, _("shape (3,)"), str(tuple(got.shape)), _("one accuracy per true class"))
        expect(got.is_floating_point(), what, _("floats"), str(got.dtype),
               _("integer division loses the fractions: convert the counts to float first"))
        got = got.double()
        if torch.allclose(got, expected, equal_nan=True):
            continue
        hint = _("the diagonal divided by each row's sum: the row holds the class's samples")
        if torch.allclose(got, counts.double().diagonal() / counts.double().sum(dim=0), equal_nan=True):
            hint = _("that divides by the column sums (how often a class was predicted: precision); "
                     "an accuracy per true class divides by the row sums")
        elif torch.isnan(expected).any() and not torch.isnan(got[torch.isnan(expected)]).all():
            hint = _("a class with no samples has no accuracy: nan (0 / 0), not a number that looks measured")
        elif torch.allclose(got, 100 * expected, equal_nan=True):
            hint = _("a fraction in [0, 1], not a percentage")
        fail(what, fmt(expected.float()), fmt(got.float()), hint)


# --- fit ----------------------------------------------------------------------------------------

_KEYS = ("train_loss", "val_loss", "val_acc")


# --- stand-ins given to fit: they show how fit uses train_one_epoch and evaluate, not whether
# those are right (their own checks say that), and are not their answers

def _train_one_epoch_stand_in(model: nn.Module, loader: Any, optimizer: Any, device: Any) -> float:
    """One optimizer step per batch on a loss that is not the exercise's (the mean square of the
    outputs): fit's optimizer and lr show in the weights. Returns that loss, a float."""
    model.train()
    total, batches = 0.0, 0
    for x, _ in loader:
        optimizer.zero_grad()
        loss = model(x.to(device)).square().mean()
        loss.backward()
        optimizer.step()
        total, batches = total + loss.item(), batches + 1
    return total / max(batches, 1)


def _evaluate_stand_in(model: nn.Module, loader: Any, device: Any) -> tuple[float, float]:
    """A loss and a fraction, whatever the model: (1.0, 0.5)."""
    return 1.0, 0.5


@keeps_rng
def fit(fit: Callable) -> None:
    """fit returns {train_loss, val_loss, val_acc}, each a list of `epochs` finite numbers
    (val_acc in [0, 1]); it trains with Adam at the lr it is given: lr=0 leaves the weights as
    they are, and the first Adam step moves every weight by lr. It runs with stand-ins for
    train_one_epoch and evaluate, so that their mistakes cost their own checks only."""
    with given(fit, train_one_epoch=_train_one_epoch_stand_in, evaluate=_evaluate_stand_in):
        _fit(fit)


def _fit(fit: Callable) -> None:
    device = get_device()
    model, X, y = _case(32, 31, device)
    train_loader = DataLoader(TensorDataset(X[:24], y[:24]), batch_size=8)
    val_loader = DataLoader(TensorDataset(X[24:], y[24:]), batch_size=8)  # one batch: averaging cannot matter
    what = "fit(model, train_loader, val_loader, epochs=3, lr=0.01, device)"
    hint = _("Adam over model.parameters(); per epoch train_one_epoch, then evaluate; append to the history lists")
    history = _call(fit, what, model, train_loader, val_loader, 3, 0.01, device, hint=hint)
    expect(isinstance(history, dict), what, _("a dict with keys train_loss, val_loss, val_acc"),
           type(history).__name__, _("return the history dict"))
    missing = [k for k in _KEYS if k not in history]
    expect(not missing, _("{what} keys").format(what=what), "train_loss, val_loss, val_acc",
           ", ".join(map(str, history)) or _("none"),
           _("add {keys}: one list each, one value per epoch").format(keys=", ".join(missing)))
    for key in _KEYS:
        values = history[key]
        expect(isinstance(values, list), f"{what}['{key}']", _("a list"), type(values).__name__,
               _("one list per key, one value appended per epoch"))
        expect(len(values) == 3, f"{what}['{key}']", _("3 values (one per epoch)"), f"{len(values)}",
               _("run `epochs` epochs and append once per epoch"))
        numbers = [as_number(v, _("{what}['{key}'] values").format(what=what, key=key),
                             _("append Python floats (loss.item(), correct / total)"))
                   for v in values]
        expect(all(math.isfinite(v) for v in numbers), f"{what}['{key}']", _("finite numbers"), fmt(numbers), hint)
        if key == "val_acc":
            expect(all(0.0 <= v <= 1.0 for v in numbers), f"{what}['val_acc']", _("fractions in [0, 1]"),
                   fmt(numbers), _("accuracy = correct / number of samples, not a percentage"))

    # lr = 0: Adam must not move the weights (a fixed learning rate would)
    model, X, y = _case(8, 32, device)
    w0 = model.linear.weight.detach().clone()
    loader = DataLoader(TensorDataset(X, y), batch_size=8)
    what = "fit(model, loader, loader, epochs=1, lr=0.0, device)"
    _call(fit, what, model, loader, loader, 1, 0.0, device, hint=hint)
    moved = (model.linear.weight.detach() - w0).abs().max().item()
    expect(moved == 0.0, _("{what}: the weights").format(what=what), _("unchanged (a step of size 0)"),
           _("moved by up to {moved}").format(moved=f"{moved:.3g}"),
           _("use the lr argument: torch.optim.Adam(model.parameters(), lr=lr)"))

    # one Adam step from fresh moments moves every weight by lr (times sign(grad)); SGD by lr·grad
    model, X, y = _case(8, 33, device)
    w0 = model.linear.weight.detach().clone()
    what = _("fit(model, one batch of 8, ..., epochs=1, lr=0.01, device)")
    _call(fit, what, model, DataLoader(TensorDataset(X, y), batch_size=8), loader, 1, 0.01, device, hint=hint)
    step = (model.linear.weight.detach() - w0).abs()
    expect(step.max().item() > 0, _("{what}: the weights").format(what=what), _("updated"), _("unchanged"),
           _("fit trains: train_one_epoch(model, train_loader, optimizer, device) once per epoch"))
    typical = step.median().item()
    expect(abs(typical - 0.01) <= 0.001, _("{what}: the typical weight change of the one step").format(what=what),
           _("0.01 (Adam's first step moves each weight by lr)"), f"{typical:.3g}",
           _("use torch.optim.Adam(model.parameters(), lr=lr)"))


# --- accuracy -----------------------------------------------------------------------------------


_CRASH = N_("the model cannot run on [N, 1, 28, 28] digits: fix MLP first")
_LOW = N_("check the training loop: zero_grad every batch, Adam at the given lr, the loss on logits")
# the hidden split is scored by the grader, outside the notebook (autograder.scoring)
SCORED = {"accuracy": Scored(model="MLP", threshold="accuracy", crash_hint=_CRASH, low_hint=_LOW)}


def accuracy(model: nn.Module, split: str = "test", threshold: float = 0.85) -> None:
    """Accuracy of the trained `model` on `autograder.data.mnist_splits()[split]` (eval mode, no
    grad, on the model's device, counted here rather than by the student's evaluate) ≥ threshold."""
    expect_split_accuracy(model, split, threshold, "MLP", _(_CRASH), _(_LOW))


def gpu(model: nn.Module) -> None:
    """`model` was trained on the device the grader offered (skipped without CUDA)."""
    expect_gpu_execution(_("MLP training"), model)
