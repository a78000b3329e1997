"""Checks of lab xor (perceptron, XOR and the multilayer perceptron). Names and points: course.yml.

Independent of each other: every check builds its own XOR data, and the checks of the two models
train them with their own loop (torch.optim.SGD + nn.BCELoss), never with the student's
`train_xor`; `train_xor` is given a correct `make_xor_data` while its check runs. So one mistake
costs its own check's points once. Every model a check builds is built under `fork_rng`: the
notebook's random stream is left as it was. Messages are msgids of the lab's catalog
(autograder/locale/<lang>/LC_MESSAGES/xor.po).
"""
from __future__ import annotations

import copy
import functools
import math
from typing import Callable

import torch
from torch import nn

from autograder.checks import count_params
from autograder.checks import call_student, close, error_line, expect, expect_close, fail, fmt, given
from autograder.i18n import Domain

_ = Domain("xor").gettext


def N_(message: str) -> str:
    """A msgid of the lab's catalog kept in English where it is defined (Babel extracts `N_("...")`),
    translated with `_()` where it is shown."""
    return message

__all__ = ["make_xor_data", "single_layer", "param_count", "train_xor", "mlp_accuracy"]

LN2 = math.log(2)  # 0.6931: the BCE of answering 0.5 for every example

_X = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))
_Y = ((0.0,), (1.0,), (1.0,), (0.0,))


_close = functools.partial(close, rtol=1e-4, atol=1e-6)  # losses of a float32 training run


def _xor() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(_X), torch.tensor(_Y)


def _call(fn: Callable, what: str, *args, hint: str = "", **kwargs):
    """call_student, with xor's message: expected no error (the check's own training loop on the
    student's model included, which runs where the model is)."""
    return call_student(fn, what, *args, hint=hint or _("run the cell on its own and read the traceback"),
                        wanted=_("no error"), **kwargs)


def _build(constructor: Callable, what: str, seed: int = 0) -> nn.Module:
    """constructor() under a private random stream seeded with `seed`; must give an nn.Module."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _call(constructor, f"{what}()")
    if not isinstance(model, nn.Module):
        fail(f"{what}()", _("an nn.Module"), type(model).__name__,
             _("return the model, e.g. nn.Sequential(...), not the class or a function"))
    return model


def _probabilities(model: nn.Module, what: str, hint: str | None = None) -> torch.Tensor:
    """The model's output on the four XOR inputs: a [4, 1] tensor of probabilities in [0, 1]."""
    hint = hint or _("each nn.Linear takes as many inputs as the layer before it gives")
    on_x = _("{what} on X [4, 2]").format(what=what)
    X, _Y = _xor()
    try:
        with torch.no_grad():
            out = model(X)
    except NotImplementedError:
        raise
    except Exception as err:  # noqa: BLE001
        try:
            fail(on_x, _("probabilities of shape (4, 1)"), error_line(err), hint)
        except AssertionError as failure:
            raise failure from err
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (4, 1):
        got = _("shape {shape}").format(shape=tuple(out.shape)) if isinstance(out, torch.Tensor) else type(out).__name__
        fail(on_x, _("shape {shape}").format(shape=(4, 1)), got, _("one output per example: the last layer is nn.Linear(..., 1)"))
    if not bool(((out >= 0) & (out <= 1)).all()):  # a saturated sigmoid gives exactly 0.0 or 1.0 in float32
        fail(on_x, _("probabilities in [0, 1]"), fmt(out),
             _("end the model with nn.Sigmoid(): BCE needs probabilities"))
    return out


def _fit(model: nn.Module, epochs: int, lr: float, *, zero_grad: bool = True,
         loss_fn: Callable = nn.functional.binary_cross_entropy) -> list[float]:
    """The course's training loop, written with torch: full-batch SGD on BCE, the loss before each
    step. zero_grad=False and loss_fn=mse_loss give two classic mistakes, to recognise them."""
    X, Y = _xor()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for _epoch in range(epochs):
        if zero_grad:
            optimizer.zero_grad()
        loss = loss_fn(model(X), Y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _accuracy(out: torch.Tensor, Y: torch.Tensor) -> float:
    return float(((out > 0.5).float() == Y).float().mean())


# --- make_xor_data ------------------------------------------------------------------------------


def make_xor_data(make_xor_data: Callable) -> None:
    """X float32 [4, 2] with the rows (0,0), (0,1), (1,0), (1,1) in that order; Y float32 [4, 1]
    with the labels 0, 1, 1, 0."""
    got = _call(make_xor_data, "make_xor_data()")
    expect(isinstance(got, (tuple, list)) and len(got) == 2, "make_xor_data()", _("a pair (X, Y)"),
           _("{kind} of length {n}").format(kind=type(got).__name__, n=len(got)) if isinstance(got, (tuple, list))
           else type(got).__name__, _("return X, Y"))
    X, Y = got
    eX, eY = _xor()
    for name, value, shape, hint in (
        ("X", X, (4, 2), _("four examples of two inputs each: a [4, 2] tensor")),
        ("Y", Y, (4, 1), _("one label per example, as a column [4, 1] shaped like the model's output")),
    ):
        if not isinstance(value, torch.Tensor):
            fail(f"make_xor_data() {name}", _("a torch.Tensor"), type(value).__name__, _("use torch.tensor([...])"))
        if tuple(value.shape) != shape:
            fail(f"make_xor_data() {name}", _("shape {shape}").format(shape=shape),
                 _("shape {shape}").format(shape=tuple(value.shape)), hint)
        expect(value.dtype == torch.float32, f"make_xor_data() {name} dtype", "torch.float32", str(value.dtype),
               _("BCE and nn.Linear need floats: write 0.0 and 1.0, or pass dtype=torch.float32"))
    if not torch.equal(X, eX):
        rows = [tuple(int(v) for v in r) for r in X.tolist()]
        hint = _("the inputs are every pair of 0 and 1")
        if sorted(rows) == sorted(tuple(int(v) for v in r) for r in _X) and X.eq(X.round()).all():
            hint = _("the rows go in the order (0,0), (0,1), (1,0), (1,1): binary counting")
        fail("make_xor_data() X", [list(map(int, r)) for r in _X], str([list(r) for r in rows]), hint)
    if not torch.equal(Y, eY):
        hint = _("XOR is 1 where exactly one input is 1: labels 0, 1, 1, 0")
        labels = Y.flatten().tolist()
        if labels == [0.0, 1.0, 1.0, 1.0]:
            hint = _("those are OR's labels: XOR of (1,1) is 0")
        elif labels == [0.0, 0.0, 0.0, 1.0]:
            hint = _("those are AND's labels: XOR is 1 where exactly one input is 1")
        fail("make_xor_data() Y", "[0, 1, 1, 0]", fmt(Y), hint)


# --- the single layer ---------------------------------------------------------------------------


def single_layer(make_single_layer: Callable, epochs: int = 100) -> None:
    """make_single_layer() is one neuron, Linear(2, 1) + Sigmoid (3 parameters); trained on XOR
    (SGD lr 1 on BCE, inside the check) its loss settles at ln 2 = 0.6931 and its accuracy stays
    at most 0.75: no straight line separates XOR."""
    model = _build(make_single_layer, "make_single_layer")
    n = count_params(model)
    if n != 3:
        hint = _("one neuron: nn.Linear(2, 1) has 2 weights and 1 bias")
        if n == 2:
            hint = _("keep the bias: nn.Linear(2, 1) (bias=True is the default)")
        elif n > 3:
            hint = _("a single layer is one nn.Linear(2, 1) followed by nn.Sigmoid(), no hidden layer")
        fail(_("make_single_layer() parameters"), 3, n, hint)
    _probabilities(model, "make_single_layer()", _("one neuron takes the 2 inputs: nn.Linear(2, 1)"))
    losses = _call(_fit, _("training make_single_layer() with SGD lr 1 on BCE"), model, epochs, 1.0)
    X, Y = _xor()
    with torch.no_grad():
        acc = _accuracy(model(X), Y)
    expect(acc <= 0.75, _("make_single_layer() accuracy on XOR after {epochs} epochs").format(epochs=epochs), "≤ 0.75",
           f"{acc:.2f}", _("a single neuron draws one straight line: it cannot separate XOR; remove any hidden layer"))
    expect(abs(losses[-1] - LN2) < 1e-4, _("make_single_layer() BCE on XOR after {epochs} epochs").format(epochs=epochs),
           f"{LN2:.4f} (ln 2)", f"{losses[-1]:.4f}",
           _("Linear(2, 1) then Sigmoid: the best a line can do is 0.5 everywhere"))


# --- the MLP ------------------------------------------------------------------------------------

_MLP_LAYERS = ((2, 10), (10, 10), (10, 10), (10, 1))
_MLP_TOTAL = sum(i * o + o for i, o in _MLP_LAYERS)  # 30 + 110 + 110 + 11 = 261


def param_count(make_xor_mlp: Callable) -> None:
    """make_xor_mlp() has the seed's 261 parameters (2-10-10-10-1: 30 + 110 + 110 + 11) and ends in
    a Sigmoid (its outputs on XOR are probabilities [4, 1])."""
    model = _build(make_xor_mlp, "make_xor_mlp")
    total = count_params(model)
    if total != _MLP_TOTAL:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        hint = _("2-10-10-10-1: Linear(2, 10), Linear(10, 10), Linear(10, 10), Linear(10, 1), each with a bias")
        got = [(m.in_features, m.out_features) for m in linears]
        if got and got != list(_MLP_LAYERS):
            hint = _("its linear layers are {layers}; expected Linear(2, 10), Linear(10, 10), Linear(10, 10), "
                     "Linear(10, 1)").format(layers=", ".join(f"Linear({i}, {o})" for i, o in got))
        elif any(m.bias is None for m in linears):
            hint = _("every layer keeps its bias: 2·10+10 + 10·10+10 + 10·10+10 + 10·1+1 = 261")
        fail(_("make_xor_mlp() parameters"), _MLP_TOTAL, total, hint)
    _probabilities(model, "make_xor_mlp()", _(_IN_FEATURES))


_IN_FEATURES = N_("each Linear's in_features is the out_features of the one before: "
                  "Linear(2, 10), Linear(10, 10), Linear(10, 10), Linear(10, 1)")


def _linear_stack(model: nn.Module) -> str:
    """'Linear(a, b) follows Linear(c, d)' where two nn.Linear layers meet with nothing between them
    (in the order the model registers its layers, that of nn.Sequential), else ''."""
    previous = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            if isinstance(previous, nn.Linear):
                return _("{later} follows {earlier}").format(
                    later=f"Linear({module.in_features}, {module.out_features})",
                    earlier=f"Linear({previous.in_features}, {previous.out_features})")
            previous = module
        elif not list(module.children()):  # a leaf that is not Linear: an activation, a dropout, ...
            previous = module
    return ""


NOTEBOOK_SEED, NOTEBOOK_EPOCHS = 4, 4000   # the notebook's MLP: seed 4, 4,000 epochs of SGD at lr 1


def mlp_accuracy(make_xor_mlp: Callable, threshold: float = 1.0, epochs: int = NOTEBOOK_EPOCHS,
                 seed: int = NOTEBOOK_SEED) -> None:
    """make_xor_mlp() built from `seed` and trained by the check as the notebook trains it (full-batch
    SGD at lr 1 on BCE, `epochs` epochs, on the true XOR data) classifies the four XOR examples
    (output > 0.5 means 1) with accuracy ≥ threshold (1.0: all four). The check's own data and
    loop: a mistake in make_xor_data or train_xor costs their checks, not this one."""
    what = _("make_xor_mlp() from seed {seed}, trained {epochs} epochs (SGD lr 1, BCE): accuracy on XOR").format(
        seed=seed, epochs=f"{epochs:,}")
    at_least = f"≥ {threshold:.2f}"
    model = _build(make_xor_mlp, "make_xor_mlp", seed)
    _probabilities(model, "make_xor_mlp()", _(_IN_FEATURES))
    with torch.random.fork_rng(devices=[]):
        losses = _call(_fit, _("training make_xor_mlp() with SGD lr 1 on BCE"), model, epochs, 1.0)
    X, Y = _xor()
    with torch.no_grad():
        out = model(X)
    acc = _accuracy(out, Y)
    if acc >= threshold:
        return
    hint = _("a sigmoid after every hidden Linear, 2-10-10-10-1, ending in nn.Sigmoid()")
    linear = _linear_stack(model)
    if linear:
        hint = _("{stack} with no activation in between: stacked linear layers are one linear layer, and no line "
                 "separates XOR — put a Sigmoid after every hidden Linear").format(stack=linear)
    elif abs(losses[-1] - LN2) < 5e-3:
        hint = _("its loss is still {loss} ≈ ln 2: it answers ~0.5 everywhere, stuck on the plateau — "
                 "build the seed's 2-10-10-10-1 sigmoid MLP with PyTorch's default initialisation").format(
                     loss=f"{losses[-1]:.4f}")
    fail(what, at_least, _("{accuracy} (outputs {outputs})").format(accuracy=f"{acc:.2f}", outputs=fmt(out)), hint)


# --- train_xor ----------------------------------------------------------------------------------


def _xor_data_given() -> tuple[torch.Tensor, torch.Tensor]:
    """The correct make_xor_data, given to the student's train_xor while its check runs."""
    return _xor()


def _small_net() -> nn.Module:
    """A small sigmoid MLP, the same for every call (its own seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        return nn.Sequential(nn.Linear(2, 4), nn.Sigmoid(), nn.Linear(4, 1), nn.Sigmoid())


def train_xor(train_xor: Callable) -> None:
    """train_xor(model, epochs, lr) trains the model in place on XOR and returns `epochs` Python
    floats, each the BCE of the forward pass before that epoch's SGD step: equal to a run of
    torch.optim.SGD + nn.BCELoss on the same network, at (25 epochs, lr 1) and (10 epochs, lr 0.5).
    It runs with a correct make_xor_data: a wrong one costs its own check only."""
    for epochs, lr in ((25, 1.0), (10, 0.5)):
        what = f"train_xor(model, epochs={epochs}, lr={lr})"
        net = _small_net()
        start = copy.deepcopy(net.state_dict())
        reference = copy.deepcopy(net)
        with torch.random.fork_rng(devices=[]), given(train_xor, make_xor_data=_xor_data_given):
            got = _call(train_xor, what, net, epochs, lr)
        expected = _fit(reference, epochs, lr)

        if not isinstance(got, (list, tuple)):
            fail(what, _("a list of {n} floats").format(n=epochs), type(got).__name__,
                 _("append loss.item() every epoch and return the list"))
        if len(got) != epochs:
            fail(_("{what}: number of losses").format(what=what), epochs, len(got),
                 _("one loss per epoch: for _ in range(epochs) (the lecture's range(10001) runs 10,001 epochs)"))
        bad = next((v for v in got if type(v) is not float), None)
        if bad is not None:
            fail(_("{what}: each loss").format(what=what), _("a Python float"), type(bad).__name__,
                 _("append loss.item(): a tensor keeps its whole graph alive, epoch after epoch"))
        got = list(got)

        if all(torch.equal(p, start[k]) for k, p in net.state_dict().items()):
            fail(_("{what}: the model's weights after training").format(what=what), _("changed by SGD"), _("unchanged"),
                 _("train the model you are given, in place: torch.optim.SGD(model.parameters(), lr=lr)"))
        if _close(got, expected):
            for k, p in reference.state_dict().items():
                expect_close(net.state_dict()[k], p, _("{what}: the trained weights {k}").format(what=what, k=k),
                             atol=1e-5, rtol=1e-4, hint=_("zero_grad, forward, BCE, backward, step: once per epoch, in that order"))
            continue

        hint = _("each epoch: optimizer.zero_grad(), loss = BCE(model(X), Y), loss.backward(), optimizer.step()")
        if _close(got, _fit(_small_net(), epochs, lr, zero_grad=False)):
            hint = _("gradients accumulate in .grad: call optimizer.zero_grad() every epoch")
        elif _close(got, _fit(_small_net(), epochs, 1.0)):
            hint = _("use the lr argument ({lr}), not a fixed learning rate").format(lr=lr)
        elif _close(got[:-1], _fit(_small_net(), epochs + 1, lr)[1:-1]):
            hint = _("record the loss of the forward pass before the step (losses[0] is the untrained model's loss)")
        elif _close(got, _fit(_small_net(), epochs, lr, loss_fn=nn.functional.mse_loss)):
            hint = _("the loss is binary cross-entropy, nn.BCELoss(), not the mean-squared error")
        elif not _close(got[0], expected[0]):
            hint = _("losses[0] is the BCE of the untrained model on the four XOR examples of make_xor_data()")
        k = next(i for i, (x, y) in enumerate(zip(got, expected)) if not _close(x, y))
        fail(f"{what}: losses[{k}]", f"{expected[k]:.6f}", f"{got[k]:.6f}", hint)
