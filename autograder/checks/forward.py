"""Checks of lab 02, Neurons and the forward pass (course.yml: lab `forward`).

Each public function takes the student's function and raises AssertionError (expected / got /
hint). Expectations come from torch itself (nn.Linear, torch.sigmoid/tanh/relu and
their autograd gradients) and from the seeds' numbers, never from `reference`. Random inputs use
a private torch.Generator, so a check leaves the student's RNG state alone.

The activations must be written without the built-ins they are compared with. That is checked
twice: in the function's code (an attribute or a library global named sigmoid, tanh, relu, ...:
`torch.sigmoid`, `x.tanh()`, `F.relu`, `nn.ReLU`) and while it runs (a TorchFunctionMode sees
every torch function called, also inside helpers). Naive formulas are not rejected as such: they
fail only where they really break, with a non-finite value or gradient at |x| = 1000.
Messages are msgids of the lab's catalog (autograder/locale/<lang>/LC_MESSAGES/forward.po).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from autograder.checks import drawn, call_student as _call
from autograder.checks import expect, expect_own_code, expect_shape, fail, float64_tensor, fmt, library_use, torch_calls, worst
from autograder.checks import backward as _backward
from autograder.i18n import Domain

_ = Domain("forward").gettext


def N_(message: str) -> str:
    """A msgid of the lab's catalog kept in English where it is defined (Babel extracts `N_("...")`),
    translated with `_()` where it is shown."""
    return message

__all__ = ["linear_forward", "sigmoid", "tanh", "relu", "perceptron"]


# --- helpers (private) --------------------------------------------------------------------------


_tensor = float64_tensor


def _worst(got: torch.Tensor, expected: torch.Tensor, x: torch.Tensor | None = None) -> tuple[str, str]:
    """(expected, got) for a message: whole tensors when small, else the worst element and where
    (as `at x = value` when the inputs x are given, else by flat index)."""
    return worst(got, expected, inputs=x, flat=True)


# --- the built-ins an activation must not use ---------------------------------------------------

# Built-in activations, and library functions that give one in a line (sigmoid = exp(logsigmoid),
# tanh = x - tanhshrink(x), relu = leaky_relu(x, 0) = threshold(x, 0, 0), ...): red team
_FORBIDDEN = frozenset({
    "sigmoid", "sigmoid_", "expit", "special_expit", "logistic", "log_expit", "tanh", "tanh_", "relu", "relu_",
    "Sigmoid", "Tanh", "ReLU", "logsigmoid", "log_sigmoid", "LogSigmoid", "softplus", "Softplus", "silu", "SiLU",
    "tanhshrink", "Tanhshrink", "leaky_relu", "leaky_relu_", "LeakyReLU", "threshold", "threshold_", "Threshold",
    "hardtanh", "hardtanh_", "Hardtanh", "relu6", "ReLU6", "rrelu", "RReLU", "prelu", "PReLU", "hardsigmoid",
    "Hardsigmoid", "hardswish", "Hardswish", "mish", "Mish", "gelu", "GELU", "elu", "ELU", "selu", "SELU", "celu",
    "CELU", "glu", "GLU", "softmax", "Softmax", "log_softmax", "LogSoftmax"})
_ACTIVATIONS = ("sigmoid", "tanh", "relu")


def _builtin_use(fn: Any) -> list | None:
    """What fn is when it is not the student's own code (autograder.checks.library_use), as facts
    the judge puts into words in its language."""
    return library_use(fn, sorted(_FORBIDDEN), own=_ACTIVATIONS)


def _no_builtin(fn: Any, name: str) -> None:
    """fn is a Python function whose code names no built-in activation. While grading, the
    probe reads the code (evidence from the student's process, like the GPU record)."""
    expect_own_code(fn, f"{name}(x)", _builtin_use,
                    _("no built-in sigmoid, tanh or relu in its code (torch.sigmoid, x.tanh(), F.relu, nn.ReLU, ...)"),
                    _("write it yourself with torch.exp, torch.where, ... (the check compares it with torch.{name})").format(name=name))


# --- linear_forward -----------------------------------------------------------------------------


def _seed_layer() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The lecture's nn.Linear(3, 7) and inputs randn(3), both right after manual_seed(1017);
    the global RNG state is restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1017)
        layer = nn.Linear(3, 7)
        torch.manual_seed(1017)
        x = torch.randn(3)
    return x.unsqueeze(0), layer.weight.detach().clone(), layer.bias.detach().clone()


def linear_forward(linear_forward: Callable) -> None:
    """x @ W.T + b against nn.Linear / F.linear: the lecture's nn.Linear(3, 7) at seed 1017
    (output[0] = 0.0314 = sum(x * W[0]) + b[0] = -0.1617 + 0.1931), a square W (tells W from W.T)
    and a batch of one; inputs left unchanged."""
    g = drawn(2)
    lecture = _("linear_forward(the lecture's x [1, 3], nn.Linear(3, 7) at seed 1017)")
    cases = [(lecture, *_seed_layer())]
    for N, fin, fout in ((4, 5, 5), (1, 2, 6)):
        x = torch.randn(N, fin, generator=g)
        W, b = torch.randn(fout, fin, generator=g), torch.randn(fout, generator=g)
        cases.append((f"linear_forward(x [{N}, {fin}], W [{fout}, {fin}], b [{fout}])", x, W, b))

    for what, x, W, b in cases:
        N, fout = x.shape[0], W.shape[0]
        before = [t.clone() for t in (x, W, b)]
        layer = nn.utils.skip_init(nn.Linear, W.shape[1], fout)  # no random init: the RNG is left alone
        with torch.no_grad():
            layer.weight.copy_(W), layer.bias.copy_(b)
            expected = layer(x).to(torch.float64)  # the oracle: nn.Linear with these weights
        out = _call(linear_forward, what, x, W, b,
                    hint=_("W is [out, in] as in nn.Linear, so the layer is x @ W.T + b"))
        expect(all(torch.equal(t, u) for t, u in zip((x, W, b), before)), _("{what}: x, W, b after the call").format(what=what),
               _("unchanged"), _("modified"), _("compute a new tensor; leave the inputs as they are"))
        if isinstance(out, torch.Tensor) and tuple(out.shape) == (fout, N) != (N, fout):
            fail(what, _("shape {shape}").format(shape=(N, fout)), _("shape {shape}").format(shape=tuple(out.shape)),
                 _("one row per sample: x @ W.T, not W @ x.T"))
        got = _tensor(out, what, (N, fout), _("one row per sample, one column per output node: [N, out] = [{N}, {out}]")
                      .format(N=N, out=fout))
        if torch.allclose(got, expected, atol=1e-5, rtol=1e-5):
            continue
        x64, W64, b64 = x.double(), W.double(), b.double()
        hint = "y = x @ W.T + b"
        if torch.allclose(got, x64 @ W64.T, atol=1e-5, rtol=1e-5):
            hint = _("add the bias b: it is what separates network(x) from sum(x * W[0])")
        elif W.shape[0] == W.shape[1] and torch.allclose(got, x64 @ W64 + b64, atol=1e-5, rtol=1e-5):
            hint = _("W is [out, in] as in nn.Linear: transpose it, x @ W.T + b")
        elif torch.allclose(got, x64 @ W64.T - b64, atol=1e-5, rtol=1e-5):
            hint = _("add the bias, do not subtract it: x @ W.T + b")
        if what == lecture and abs(float(got[0, 0]) - float(expected[0, 0])) > 1e-5:
            fail(f"{what}[0, 0]", _("{value} (the lecture's network(x)[0])").format(value=f"{float(expected[0, 0]):.4f}"),
                 f"{float(got[0, 0]):.4f}", hint)
        exp_s, got_s = _worst(got, expected)
        fail(what, exp_s, got_s, hint)


# --- the activations ----------------------------------------------------------------------------

_SPEC = {
    # name: (torch's function, formula hint, wrong variants (function, hint))
    "sigmoid": (torch.sigmoid, "sigmoid(x) = 1 / (1 + exp(-x))", [
        (lambda x: 1 / (1 + torch.exp(x)), N_("the sign: 1 / (1 + exp(-x)), with exp of MINUS x")),
        (lambda x: torch.tanh(x), N_("that is tanh, in (-1, 1); the sigmoid is in (0, 1): 1 / (1 + exp(-x))")),
        (lambda x: torch.exp(-x) / (1 + torch.exp(-x)), N_("that is 1 - sigmoid(x) = sigmoid(-x): 1 / (1 + exp(-x))")),
    ]),
    "tanh": (torch.tanh, "tanh(x) = (exp(x) - exp(-x)) / (exp(x) + exp(-x))", [
        (lambda x: torch.sigmoid(x), N_("that is the sigmoid, in (0, 1); tanh is in (-1, 1): (e^x - e^-x) / (e^x + e^-x)")),
        (lambda x: 2 * torch.sigmoid(x) - 1, N_("tanh(x) = 2 * sigmoid(2x) - 1: mind the 2x")),
        (lambda x: -torch.tanh(x), N_("the sign: (exp(x) - exp(-x)) / (exp(x) + exp(-x))")),
    ]),
    "relu": (torch.relu, N_("relu(x) = max(x, 0): x where x > 0, else 0"), [
        (lambda x: x.abs(), N_("negative inputs become 0, not -x: max(x, 0)")),
        (lambda x: torch.where(x < 0, x, torch.zeros_like(x)), N_("keep the positive part: x where x > 0, else 0")),
        (lambda x: (x > 0).to(x.dtype), N_("that is the step (the derivative of relu): return x itself where x > 0")),
    ]),
}
_STABLE = {
    "sigmoid": N_("compute exp of -|x| only (never of a large positive number): split by sign with "
                  "torch.where(x >= 0, -x, x), then 1 / (1 + z) for x >= 0 and z / (1 + z) for x < 0"),
    "tanh": N_("compute exp of -2|x| only (never of a large positive number): tanh(|x|) = (1 - e) / (1 + e) "
               "with e = exp(-2|x|), then put the sign back (tanh is odd)"),
    "relu": N_("max(x, 0) needs no exp at all: torch.where(x > 0, x, torch.zeros_like(x))"),
}
_AUTOGRAD = N_("stay in torch operations on x (no .detach(), .numpy(), .item(), torch.tensor(...)), so autograd can follow")


def _activation(fn: Callable, name: str) -> None:
    torch_fn, formula, variants = _SPEC[name]
    formula, stable, autograd = _(formula), _(_STABLE[name]), _(_AUTOGRAD)
    _no_builtin(fn, name)

    # 1. values on a grid, a [3, 11] tensor: shape kept, x unchanged, no built-in called; the grid's
    #    points moved at random by up to 0.2 (a grading run's draw gives points no notebook saw)
    gen = drawn(300 + list(_SPEC).index(name))
    x = (torch.linspace(-8, 8, 33) + (torch.rand(33, generator=gen) - 0.5) * 0.4).clamp(-8, 8).reshape(3, 11)
    before = x.clone()
    what = _("{name}(x [3, 11] in [-8, 8])").format(name=name)
    out, names = _call(torch_calls, what, fn, x)
    used = sorted(set(names) & _FORBIDDEN)
    if used:
        fail(f"{name}(x)", _("no call to a built-in sigmoid, tanh or relu"),
             _("a call to {names}").format(names=", ".join(used)),
             _("write it yourself with torch.exp, torch.where, ... (the check compares it with torch.{name})").format(name=name))
    expect(bool(torch.equal(x, before)), _("{what}: x after the call").format(what=what), _("unchanged"), _("modified"),
           _("compute a new tensor (torch.where, arithmetic); do not assign into x"))
    got = _tensor(out, what, (3, 11), _("element-wise: the shape of x"))
    expect(out.dtype == x.dtype, f"{what} dtype", str(x.dtype), str(out.dtype), _("keep the dtype of x (float32)"))
    expected = torch_fn(x).to(torch.float64)
    if not bool(torch.isfinite(got).all()):
        exp_s, got_s = _worst(got, expected, x)
        fail(what, exp_s, got_s, _("look for a division by zero or an overflow: {formula}").format(formula=formula))
    if not torch.allclose(got, expected, atol=1e-6, rtol=0):
        hint = formula
        for variant, text in variants:
            if torch.allclose(got, variant(x).to(torch.float64), atol=1e-5, rtol=0):
                hint = _(text)
                break
        exp_s, got_s = _worst(got, expected, x)
        fail(what, exp_s, got_s, hint)

    # 2. autograd: the gradient of sum(fn(x)) equals torch's, on a grid (without 0 for relu,
    #    whose derivative at 0 is a convention)
    grid = torch.linspace(-8, 8, 33) if name != "relu" else torch.linspace(-8, 8, 32)
    xg = grid.clone().requires_grad_(True)
    what = _("{name}(x) gradient, x in [-8, 8]").format(name=name)
    with_grad = _("{name}(x) with x.requires_grad").format(name=name)
    out = _call(fn, with_grad, xg, hint=autograd)
    expect(isinstance(out, torch.Tensor) and out.requires_grad, with_grad,
           _("a result that requires grad"), _("no autograd graph") if isinstance(out, torch.Tensor) else type(out).__name__,
           autograd)
    _call(_backward, f"{name}(x).sum().backward()", out, hint=autograd)
    expect(xg.grad is not None, what, _("x.grad filled by backward()"), "None", autograd)
    xr = grid.clone().requires_grad_(True)
    torch_fn(xr).sum().backward()
    got, expected = xg.grad.to(torch.float64), xr.grad.to(torch.float64)
    if not torch.allclose(got, expected, atol=1e-6, rtol=0):
        hint = _("autograd differentiates what you wrote: {formula}").format(formula=formula)
        zero = (grid == 0).nonzero().flatten()
        if len(zero) and abs(float(got[zero[0]]) - float(expected[zero[0]])) > 1e-6 and \
                torch.allclose(torch.cat([got[: zero[0]], got[zero[0] + 1:]]),
                               torch.cat([expected[: zero[0]], expected[zero[0] + 1:]]), atol=1e-6, rtol=0):
            fail(_("{name}(x) gradient at x = 0").format(name=name), f"{float(expected[zero[0]]):g}", f"{float(got[zero[0]]):g}",
                 _("torch's abs() has derivative 0 at 0: split by sign with torch.where(x >= 0, -x, x) instead of -x.abs()"))
        exp_s, got_s = _worst(got, expected, grid)
        fail(what, exp_s, got_s, hint)

    # 3. far from 0: finite values and gradients at |x| = 1000, where exp overflows
    far = torch.tensor([-1000.0, -100.0, -30.0, 30.0, 100.0, 1000.0])
    xf = far.clone().requires_grad_(True)
    what = _("{name}(x) at x = ±30, ±100, ±1000").format(name=name)
    out = _call(fn, what, xf, hint=stable)
    got = _tensor(out, what, tuple(far.shape), _("element-wise: the shape of x"))
    expected = torch_fn(far).to(torch.float64)
    if not bool(torch.isfinite(got).all()) or not torch.allclose(got, expected, atol=1e-6, rtol=0):
        exp_s, got_s = _worst(got, expected, far)
        fail(what, exp_s, got_s, _("exp(1000) overflows to inf (and inf / inf is NaN): {hint}").format(hint=stable)
             if name != "relu" else stable)
    _call(_backward, f"{name}(x).sum().backward()", out, hint=autograd)
    xr = far.clone().requires_grad_(True)
    torch_fn(xr).sum().backward()
    got = xf.grad.to(torch.float64) if xf.grad is not None else torch.full_like(far, float("nan"), dtype=torch.float64)
    expected = xr.grad.to(torch.float64)
    what = _("{name}(x) gradient at x = ±30, ±100, ±1000").format(name=name)
    if not bool(torch.isfinite(got).all()):
        bad = far[~torch.isfinite(got)]
        fail(what, _("finite values near 0"),
             _("{value} at x = {x}").format(value=float(got[~torch.isfinite(got)][0]), x=f"{float(bad[0]):g}"),
             _("exp(1000) = inf, and the backward pass multiplies 0 by inf = NaN: {hint}").format(hint=stable))
    if not torch.allclose(got, expected, atol=1e-6, rtol=0):
        exp_s, got_s = _worst(got, expected, far)
        fail(what, exp_s, got_s, stable)


def sigmoid(sigmoid: Callable) -> None:
    """No built-in sigmoid/tanh/relu in the code or at run time; torch.sigmoid's values within 1e-6
    on [-8, 8] ([3, 11], dtype and x kept); autograd's gradient = torch's (0.25 at 0); finite
    values and gradients at ±30, ±100, ±1000."""
    _activation(sigmoid, "sigmoid")


def tanh(tanh: Callable) -> None:
    """As sigmoid, against torch.tanh (gradient 1 at 0)."""
    _activation(tanh, "tanh")


def relu(relu: Callable) -> None:
    """As sigmoid, against torch.relu (gradients compared away from 0, where it is a convention)."""
    _activation(relu, "relu")


# --- perceptron ---------------------------------------------------------------------------------


def perceptron(perceptron: Callable) -> None:
    """±1 step of x @ w + b: the lecture's OR perceptron (sums -0.5, 0.5, 0.5, 1.5 → -1, 1, 1, 1),
    a random [20, 3] batch with a 0-d tensor bias, and AND with b = -1 (sums of exactly 0 give -1:
    +1 only where the sum is > 0)."""
    inputs = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # the lecture's x1..x4
    g = drawn(4)
    xr, wr = torch.randn(20, 3, generator=g), torch.randn(3, generator=g)
    br = torch.randn((), generator=g)
    cases = [
        (_("perceptron(OR inputs, w=(1, 1), b=-0.5)"), inputs, torch.tensor([1.0, 1.0]), -0.5),
        (_("perceptron(x [20, 3], w [3], b a 0-d tensor)"), xr, wr, br),
        (_("perceptron(AND inputs, w=(1, 1), b=-1.0)"), inputs, torch.tensor([1.0, 1.0]), -1.0),
    ]
    for what, x, w, b in cases:
        s = x @ w + b  # [N] weighted sums
        expected = torch.where(s > 0, 1.0, -1.0)
        out = _call(perceptron, what, x, w, b, hint=_("s = x @ w + b has one weighted sum per row of x"))
        flat = _("one output per row of x: a flat [N] tensor")
        if isinstance(out, torch.Tensor) and out.numel() == len(s) and out.dim() == 2:
            fail(what, _("shape {shape}").format(shape=(len(s),)), _("shape {shape}").format(shape=tuple(out.shape)), flat)
        expect_shape(out, (len(s),), what, flat)
        got = out.detach()
        values = set(got.to(torch.float64).unique().tolist())
        hint = _("+1 where x @ w + b > 0, -1 elsewhere: torch.where(s > 0, 1.0, -1.0)")
        if not values <= {-1.0, 1.0}:
            if 0.0 in values and values <= {0.0, 1.0}:
                hint = _("the perceptron answers +1 or -1, not 1 or 0: torch.where(s > 0, 1.0, -1.0)")
            elif 0.0 in values and values <= {-1.0, 0.0, 1.0}:
                hint = _("torch.sign gives 0 where the sum is exactly 0: return only +1 or -1, with -1 for s = 0")
            else:
                hint = _("apply the step function to the weighted sum: only +1 or -1 come out")
        elif bool((got.to(torch.float64) == -expected.to(torch.float64)).all()):
            hint = _("+1 where the weighted sum is positive, -1 where it is not: the sign is flipped")
        elif torch.equal(got.to(torch.float64), torch.where(x @ w > 0, 1.0, -1.0).to(torch.float64)) \
                and not bool((s == 0).any()):
            hint = _("add the bias to the weighted sum: s = x @ w + b")
        elif bool(((s == 0) & (got.to(torch.float64) == 1.0)).any()):
            hint = _("a weighted sum of exactly 0 gives -1: +1 only where x @ w + b > 0 "
                     "(strictly; the lecture's tau uses >= 0, this course > 0)")
        got64, exp64 = got.to(torch.float64), expected.to(torch.float64)
        if not torch.equal(got64, exp64):
            if len(s) <= 8:
                fail(what, fmt(exp64), fmt(got64), hint)
            k = int((got64 != exp64).nonzero()[0])
            fail(f"{what}[{k}] (x @ w + b = {float(s[k]):.4g})", f"{float(exp64[k]):g}", f"{float(got64[k]):g}", hint)
