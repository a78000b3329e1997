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
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from autograder.checks import count_params
from autograder.checks import call_student as _call
from autograder.checks import Scored, as_number, close, expect, expect_gpu_execution, expect_split_accuracy, fail, fmt, given, keeps_rng, model_device
from autograder.runtime import get_device

__all__ = ["mlp", "param_count", "train_one_epoch", "evaluate", "fit", "accuracy", "gpu"]

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
    """A probe model and data X [n, 1, 28, 28] in [0, 1], y int64 [n], from `seed`, RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _Probe()
        X = torch.rand(n, 1, 28, 28)
        y = torch.randint(0, 10, (n,))
    return model.to(device), X, y


# --- MLP ----------------------------------------------------------------------------------------


def mlp(model: nn.Module) -> None:
    """MLP() maps [N, 1, 28, 28] digits (N = 5 and N = 1) to logits [N, 10]: flattened inside,
    no softmax (or log-softmax) at the end."""
    if not isinstance(model, nn.Module):
        fail("MLP", "an nn.Module", type(model).__name__, "pass an instance, MLP(), not the class")
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
                            hint="flatten the image first: torch.flatten(x, 1) gives [N, 784]")
            if not isinstance(out, torch.Tensor):
                fail(what, f"a tensor of shape ({n}, 10)", type(out).__name__, "forward returns fc3's output")
            if tuple(out.shape) != (n, 10):
                fail(what, f"shape ({n}, 10)", f"shape {tuple(out.shape)}",
                     "flatten to [N, 784] with torch.flatten(x, 1) (keep the batch dimension), end with 10 outputs")
        with torch.no_grad():
            out = model(x.to(device)).detach().double().cpu()
    finally:
        model.train(was_training)
    rows = out.sum(dim=1)
    if bool(((out >= 0) & (out <= 1)).all()) and torch.allclose(rows, torch.ones_like(rows), atol=1e-4):
        fail("MLP output rows", "logits (any real numbers)", "probabilities (every row in [0, 1], summing to 1)",
             "no softmax at the end: return fc3's output; F.cross_entropy applies log-softmax itself")
    lse = torch.logsumexp(out, dim=1)
    if torch.allclose(lse, torch.zeros_like(lse), atol=1e-4):
        fail("MLP output rows", "logits (any real numbers)", "log-probabilities (logsumexp 0 in every row)",
             "no log_softmax at the end: return fc3's output; F.cross_entropy applies log-softmax itself")


def param_count(model: nn.Module) -> None:
    """The MLP has 235,146 parameters: Linear layers 784→256, 256→128, 128→10 with biases."""
    if not isinstance(model, nn.Module):
        fail("MLP", "an nn.Module", type(model).__name__, "pass an instance, MLP(), not the class")
    total = count_params(model)
    if total == _TOTAL:
        return
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for k, (n_in, n_out) in enumerate(_LAYERS):
        if k >= len(linears):
            fail("MLP parameters", f"{_TOTAL:,}", f"{total:,}",
                 f"{len(linears)} Linear layers; expected 3: 784→256, 256→128, 128→10")
        m = linears[k]
        if (m.in_features, m.out_features) != (n_in, n_out):
            fail("MLP parameters", f"{_TOTAL:,}", f"{total:,}",
                 f"Linear layer {k + 1} is {m.in_features}→{m.out_features}, expected {n_in}→{n_out}")
        if m.bias is None:
            fail("MLP parameters", f"{_TOTAL:,}", f"{total:,}", f"Linear layer {k + 1} has no bias: keep bias=True")
    fail("MLP parameters", f"{_TOTAL:,}", f"{total:,}",
         "784·256 + 256 = 200,960, 256·128 + 128 = 32,896, 128·10 + 10 = 1,290: remove any extra layer")


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
    exp_w, _, losses = _sgd_epoch(model, X, y)
    acc_w, _, _ = _sgd_epoch(model, X, y, zero_grad=False)  # what forgetting zero_grad gives
    model.eval()  # train_one_epoch must switch it to training mode itself
    loader = DataLoader(TensorDataset(X, y), batch_size=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=_LR)
    what = "train_one_epoch(model, loader of 10 samples in batches of 4, SGD(lr=0.01), device)"
    got = _call(train_one_epoch, what, model, loader, optimizer, device,
                hint="for x, y in loader: move x, y to device, zero_grad, loss = F.cross_entropy(model(x), y), backward, step")

    expect(len(model.calls) > 0, f"{what}: forward passes", "one per batch (3)", "none",
           "call model(x) for every batch of the loader")
    expect(all(training for training, _ in model.calls), f"{what}: the model's mode during forward",
           "training mode", "eval mode", "call model.train() first: the model may come from evaluate, in eval mode")
    w1 = model.linear.weight.detach()
    expect(not torch.equal(w1, w0), f"{what}: the weights after the epoch", "updated", "unchanged",
           "for every batch: loss.backward(), then optimizer.step()")
    if not torch.allclose(w1, exp_w, atol=1e-5, rtol=1e-4):
        hint = "per batch, in this order: optimizer.zero_grad(), loss.backward(), optimizer.step()"
        if torch.allclose(w1, acc_w, atol=1e-5, rtol=1e-4):
            hint = "call optimizer.zero_grad() for every batch: without it the gradients of all batches add up"
        err = (w1 - exp_w).abs().max().item()
        fail(f"{what}: the weights after the epoch", "3 SGD steps, one per batch, each on that batch's gradient",
             f"weights off by up to {err:.3g}", hint)

    loss = as_number(got, f"{what} returned", "return the mean loss as a Python float: total / number of samples")
    expected = sum(l * n for l, n in zip(losses, _SIZES)) / sum(_SIZES)
    if not close(loss, expected):
        hint = "the loss per sample: add loss.item() * len(y) for each batch, divide by the number of samples"
        if close(loss, sum(losses) / len(losses)):
            hint = ("that is the mean of the batch losses: weigh each by its size, sum(loss.item() * len(y)) / "
                    "len(loader.dataset) — the last batch holds 2 samples, not 4")
        elif close(loss, sum(l * n for l, n in zip(losses, _SIZES))) or close(loss, sum(losses)):
            hint = "a total: divide by the number of samples to get the mean"
        elif close(loss, losses[-1]):
            hint = "that is the last batch's loss: accumulate the loss of every batch"
        fail(f"{what} returned loss", f"{expected:.6g} (per-sample mean over the epoch)", f"{loss:.6g}", hint)


# --- evaluate -----------------------------------------------------------------------------------


def _ordered_case(device: torch.device) -> tuple[_Probe, torch.Tensor, torch.Tensor]:
    """500 samples on a probe model; half of the labels are the model's own predictions, and the
    samples are sorted by loss: per-batch means over-weigh the hard samples of a short last batch."""
    model, X, _ = _case(500, 21, device)
    with torch.no_grad():
        logits = model.linear(torch.flatten(X, 1).to(device)).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(22)
        y = torch.randint(0, 10, (500,))
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
        what = f"evaluate(model, DataLoader(500 samples, batch_size={bs}), device)"
        got = _call(evaluate, what, model, loader, device,
                    hint="move x, y to device; sum the losses with reduction='sum', count the right predictions")
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            fail(what, "a pair (loss, accuracy)", type(got).__name__ if not isinstance(got, (tuple, list))
                 else f"{len(got)} values", "return loss, accuracy")
        loss = as_number(got[0], f"{what} loss", "return the mean loss as a Python float")
        acc = as_number(got[1], f"{what} accuracy", "return the accuracy as a Python float")
        expect(bool(model.calls) and not any(training for training, _ in model.calls),
               f"{what}: the model's mode during forward", "eval mode", "training mode",
               "call model.eval() first: dropout and batch norm behave differently in training mode")
        expect(not any(grad for _, grad in model.calls), f"{what}: autograd during forward", "disabled", "enabled",
               "wrap the loop in `with torch.no_grad():` — evaluation needs no graph")
        model.calls.clear()
        n_batches, rest = len(loader), 500 % bs
        short = f"the last batch of {bs} holds {rest} samples" if rest else "one batch"
        if not (0.0 <= acc <= 1.0):
            hint = "a fraction in [0, 1]: correct / number of samples"
            if close(acc, 100 * exp_acc):
                hint = "a fraction in [0, 1], not a percentage: correct / number of samples"
            elif close(acc, exp_acc * 500 / n_batches):
                hint = (f"divide by the number of samples (len(loader.dataset) = 500), not of batches "
                        f"(len(loader) = {n_batches}) — the seed's bug")
            fail(f"{what} accuracy", f"{exp_acc:.4g} (a fraction in [0, 1])", f"{acc:.4g}", hint)
        if not close(acc, exp_acc, rtol=0.0, atol=1e-6):
            hint = f"accuracy per sample: count the right predictions over all batches, divide by 500 ({short})"
            per_batch = torch.stack([(logits[i:i + bs].argmax(1).cpu() == y[i:i + bs]).double().mean()
                                     for i in range(0, 500, bs)]).mean().item()
            if close(acc, per_batch):
                hint = f"that is the mean of the batch accuracies: count right predictions, divide by 500 ({short})"
            fail(f"{what} accuracy", f"{exp_acc:.4g} (the same for every batch size)", f"{acc:.4g}", hint)
        if not close(loss, exp_loss):
            hint = f"loss per sample: F.cross_entropy(..., reduction='sum') over all batches, divided by 500 ({short})"
            per_batch = torch.stack([F.cross_entropy(logits[i:i + bs], y[i:i + bs].to(device)).cpu()
                                     for i in range(0, 500, bs)]).mean().item()
            if close(loss, per_batch):
                hint = f"that is the mean of the batch means: weigh each batch by its size ({short})"
            elif close(loss, exp_loss * 500 / n_batches):
                hint = f"divide the summed loss by the number of samples (500), not of batches ({n_batches})"
            elif close(loss, exp_loss * 500):
                hint = "a total: divide by the number of samples to get the mean"
            fail(f"{what} loss", f"{exp_loss:.6g} (the same for every batch size)", f"{loss:.6g}", hint)


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
    hint = "Adam over model.parameters(); per epoch train_one_epoch, then evaluate; append to the history lists"
    history = _call(fit, what, model, train_loader, val_loader, 3, 0.01, device, hint=hint)
    expect(isinstance(history, dict), what, "a dict with keys train_loss, val_loss, val_acc",
           type(history).__name__, "return the history dict")
    missing = [k for k in _KEYS if k not in history]
    expect(not missing, f"{what} keys", "train_loss, val_loss, val_acc", ", ".join(map(str, history)) or "none",
           f"add {', '.join(missing)}: one list each, one value per epoch")
    for key in _KEYS:
        values = history[key]
        expect(isinstance(values, list), f"{what}['{key}']", "a list", type(values).__name__,
               "one list per key, one value appended per epoch")
        expect(len(values) == 3, f"{what}['{key}']", "3 values (one per epoch)", f"{len(values)}",
               "run `epochs` epochs and append once per epoch")
        numbers = [as_number(v, f"{what}['{key}'] values", "append Python floats (loss.item(), correct / total)")
                   for v in values]
        expect(all(math.isfinite(v) for v in numbers), f"{what}['{key}']", "finite numbers", fmt(numbers), hint)
        if key == "val_acc":
            expect(all(0.0 <= v <= 1.0 for v in numbers), f"{what}['val_acc']", "fractions in [0, 1]",
                   fmt(numbers), "accuracy = correct / number of samples, not a percentage")

    # lr = 0: Adam must not move the weights (a fixed learning rate would)
    model, X, y = _case(8, 32, device)
    w0 = model.linear.weight.detach().clone()
    loader = DataLoader(TensorDataset(X, y), batch_size=8)
    what = "fit(model, loader, loader, epochs=1, lr=0.0, device)"
    _call(fit, what, model, loader, loader, 1, 0.0, device, hint=hint)
    moved = (model.linear.weight.detach() - w0).abs().max().item()
    expect(moved == 0.0, f"{what}: the weights", "unchanged (a step of size 0)", f"moved by up to {moved:.3g}",
           "use the lr argument: torch.optim.Adam(model.parameters(), lr=lr)")

    # one Adam step from fresh moments moves every weight by lr (times sign(grad)); SGD by lr·grad
    model, X, y = _case(8, 33, device)
    w0 = model.linear.weight.detach().clone()
    what = "fit(model, one batch of 8, ..., epochs=1, lr=0.01, device)"
    _call(fit, what, model, DataLoader(TensorDataset(X, y), batch_size=8), loader, 1, 0.01, device, hint=hint)
    step = (model.linear.weight.detach() - w0).abs()
    expect(step.max().item() > 0, f"{what}: the weights", "updated", "unchanged",
           "fit trains: train_one_epoch(model, train_loader, optimizer, device) once per epoch")
    typical = step.median().item()
    expect(abs(typical - 0.01) <= 0.001, f"{what}: the typical weight change of the one step",
           "0.01 (Adam's first step moves each weight by lr)", f"{typical:.3g}",
           "use torch.optim.Adam(model.parameters(), lr=lr)")


# --- accuracy -----------------------------------------------------------------------------------


_CRASH = "the model cannot run on [N, 1, 28, 28] digits: fix MLP first"
_LOW = "check the training loop: zero_grad every batch, Adam at the given lr, the loss on logits"
# the hidden split is scored by the grader, outside the notebook (autograder.scoring)
SCORED = {"accuracy": Scored(model="MLP", threshold="accuracy", crash_hint=_CRASH, low_hint=_LOW)}


def accuracy(model: nn.Module, split: str = "test", threshold: float = 0.85) -> None:
    """Accuracy of the trained `model` on `autograder.data.mnist_splits()[split]` (eval mode, no
    grad, on the model's device, counted here rather than by the student's evaluate) ≥ threshold."""
    expect_split_accuracy(model, split, threshold, "MLP", _CRASH, _LOW)


def gpu(model: nn.Module) -> None:
    """`model` was trained on the device the grader offered (skipped without CUDA)."""
    expect_gpu_execution("MLP training", model)
