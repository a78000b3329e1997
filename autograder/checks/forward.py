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
"""
from __future__ import annotations

import builtins
import dis
import inspect
import types
from typing import Any, Callable

import torch
from torch import nn

from autograder import witness
from autograder.checks import call_student as _call
from autograder.checks import expect, expect_shape, fail, float64_tensor, fmt, torch_calls, worst
from autograder.checks import backward as _backward

__all__ = ["linear_forward", "sigmoid", "tanh", "relu", "perceptron"]


# --- helpers (private) --------------------------------------------------------------------------


_tensor = float64_tensor


def _worst(got: torch.Tensor, expected: torch.Tensor, x: torch.Tensor | None = None) -> tuple[str, str]:
    """(expected, got) for a message: whole tensors when small, else the worst element and where
    (as `at x = value` when the inputs x are given, else by flat index)."""
    return worst(got, expected, inputs=x, flat=True)


# --- the built-ins an activation must not use ---------------------------------------------------

_FORBIDDEN = frozenset({"sigmoid", "sigmoid_", "expit", "special_expit", "logistic", "tanh", "tanh_",
                        "relu", "relu_", "Sigmoid", "Tanh", "ReLU"})
_LIBRARIES = ("torch", "numpy", "scipy", "math", "jax", "tensorflow")


def _from_library(obj: Any) -> bool:
    """True for a library's function or class (torch.sigmoid, F.relu, nn.ReLU, np.tanh), False for
    a plain Python function written in the notebook (the student's own sigmoid, say)."""
    if inspect.isfunction(obj):
        return (getattr(obj, "__module__", "") or "").split(".")[0] in _LIBRARIES
    return obj is not None


def _names_in_code(fn: Callable) -> list[str]:
    """Forbidden names fn's code reads, for a message: as an attribute (`.sigmoid` of torch.sigmoid,
    x.tanh(), F.relu, nn.ReLU) or as a global bound to a library object (`from torch import
    sigmoid`). Nested code included."""
    found: list[str] = []
    codes = [fn.__code__]
    while codes:
        code = codes.pop()
        for ins in dis.get_instructions(code):
            name = ins.argval
            if not isinstance(name, str) or name not in _FORBIDDEN:
                continue
            if ins.opname in ("LOAD_ATTR", "LOAD_METHOD"):
                found.append(f".{name}")  # torch.sigmoid, x.tanh(), F.relu, nn.ReLU
            elif ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                obj = fn.__globals__.get(name, getattr(builtins, name, None))
                if _from_library(obj):
                    module = getattr(obj, "__module__", None) or "a library"
                    found.append(f"{name} (from {module})")
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return found


def _builtin_use(fn: Any) -> tuple[str, str] | None:
    """(expected, got) when fn is not a Python function, or its code names a built-in
    activation; None when it is the student's own code."""
    if not inspect.isfunction(fn):
        if isinstance(fn, nn.Module):
            label = f"a {type(fn).__name__}() module"
        else:
            module = (getattr(fn, "__module__", None) or type(fn).__module__ or "").split(".")[0]
            label = f"{module}.{getattr(fn, '__name__', type(fn).__name__)}".lstrip(".")
        return "a function you wrote (def ...)", label
    used = _names_in_code(fn)
    if used:
        return ("no built-in sigmoid, tanh or relu in its code (torch.sigmoid, x.tanh(), F.relu, nn.ReLU, ...)",
                ", ".join(sorted(set(used))))
    return None


def _no_builtin(fn: Any, name: str) -> None:
    """fn is a Python function whose code names no built-in activation. While grading, the
    probe reads the code (evidence from the student's process, like the GPU record)."""
    found = witness.boundary("code", _builtin_use, fn)
    if found:
        expected, got = (str(v) for v in found)
        fail(f"{name}(x)", expected, got, f"write it yourself with torch.exp, torch.where, ... "
                                          f"(the check compares it with torch.{name})")


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
    g = torch.Generator().manual_seed(2)
    cases = [("linear_forward(the lecture's x [1, 3], nn.Linear(3, 7) at seed 1017)", *_seed_layer())]
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
                    hint="W is [out, in] as in nn.Linear, so the layer is x @ W.T + b")
        expect(all(torch.equal(t, u) for t, u in zip((x, W, b), before)), f"{what}: x, W, b after the call",
               "unchanged", "modified", "compute a new tensor; leave the inputs as they are")
        if isinstance(out, torch.Tensor) and tuple(out.shape) == (fout, N) != (N, fout):
            fail(what, f"shape ({N}, {fout})", f"shape {tuple(out.shape)}", "one row per sample: x @ W.T, not W @ x.T")
        got = _tensor(out, what, (N, fout), f"one row per sample, one column per output node: [N, out] = [{N}, {fout}]")
        if torch.allclose(got, expected, atol=1e-5, rtol=1e-5):
            continue
        x64, W64, b64 = x.double(), W.double(), b.double()
        hint = "y = x @ W.T + b"
        if torch.allclose(got, x64 @ W64.T, atol=1e-5, rtol=1e-5):
            hint = "add the bias b: it is what separates network(x) from sum(x * W[0])"
        elif W.shape[0] == W.shape[1] and torch.allclose(got, x64 @ W64 + b64, atol=1e-5, rtol=1e-5):
            hint = "W is [out, in] as in nn.Linear: transpose it, x @ W.T + b"
        elif torch.allclose(got, x64 @ W64.T - b64, atol=1e-5, rtol=1e-5):
            hint = "add the bias, do not subtract it: x @ W.T + b"
        if what.startswith("linear_forward(the lecture's") and abs(float(got[0, 0]) - float(expected[0, 0])) > 1e-5:
            fail(f"{what}[0, 0]", f"{float(expected[0, 0]):.4f} (the lecture's network(x)[0])", f"{float(got[0, 0]):.4f}", hint)
        exp_s, got_s = _worst(got, expected)
        fail(what, exp_s, got_s, hint)


# --- the activations ----------------------------------------------------------------------------

_SPEC = {
    # name: (torch's function, formula hint, wrong variants (function, hint))
    "sigmoid": (torch.sigmoid, "sigmoid(x) = 1 / (1 + exp(-x))", [
        (lambda x: 1 / (1 + torch.exp(x)), "the sign: 1 / (1 + exp(-x)), with exp of MINUS x"),
        (lambda x: torch.tanh(x), "that is tanh, in (-1, 1); the sigmoid is in (0, 1): 1 / (1 + exp(-x))"),
        (lambda x: torch.exp(-x) / (1 + torch.exp(-x)), "that is 1 - sigmoid(x) = sigmoid(-x): 1 / (1 + exp(-x))"),
    ]),
    "tanh": (torch.tanh, "tanh(x) = (exp(x) - exp(-x)) / (exp(x) + exp(-x))", [
        (lambda x: torch.sigmoid(x), "that is the sigmoid, in (0, 1); tanh is in (-1, 1): (e^x - e^-x) / (e^x + e^-x)"),
        (lambda x: 2 * torch.sigmoid(x) - 1, "tanh(x) = 2 * sigmoid(2x) - 1: mind the 2x"),
        (lambda x: -torch.tanh(x), "the sign: (exp(x) - exp(-x)) / (exp(x) + exp(-x))"),
    ]),
    "relu": (torch.relu, "relu(x) = max(x, 0): x where x > 0, else 0", [
        (lambda x: x.abs(), "negative inputs become 0, not -x: max(x, 0)"),
        (lambda x: torch.where(x < 0, x, torch.zeros_like(x)), "keep the positive part: x where x > 0, else 0"),
        (lambda x: (x > 0).to(x.dtype), "that is the step (the derivative of relu): return x itself where x > 0"),
    ]),
}
_STABLE = {
    "sigmoid": "compute exp of -|x| only (never of a large positive number): split by sign with "
               "torch.where(x >= 0, -x, x), then 1 / (1 + z) for x >= 0 and z / (1 + z) for x < 0",
    "tanh": "compute exp of -2|x| only (never of a large positive number): tanh(|x|) = (1 - e) / (1 + e) "
            "with e = exp(-2|x|), then put the sign back (tanh is odd)",
    "relu": "max(x, 0) needs no exp at all: torch.where(x > 0, x, torch.zeros_like(x))",
}
_AUTOGRAD = "stay in torch operations on x (no .detach(), .numpy(), .item(), torch.tensor(...)), so autograd can follow"


def _activation(fn: Callable, name: str) -> None:
    torch_fn, formula, variants = _SPEC[name]
    _no_builtin(fn, name)

    # 1. values on a grid, a [3, 11] tensor: shape kept, x unchanged, no built-in called
    x = torch.linspace(-8, 8, 33).reshape(3, 11)
    before = x.clone()
    what = f"{name}(x [3, 11] in [-8, 8])"
    out, names = _call(torch_calls, what, fn, x)
    used = sorted(set(names) & _FORBIDDEN)
    if used:
        fail(f"{name}(x)", "no call to a built-in sigmoid, tanh or relu", "a call to " + ", ".join(used),
             f"write it yourself with torch.exp, torch.where, ... (the check compares it with torch.{name})")
    expect(bool(torch.equal(x, before)), f"{what}: x after the call", "unchanged", "modified",
           f"compute a new tensor (torch.where, arithmetic); do not assign into x")
    got = _tensor(out, what, (3, 11), "element-wise: the shape of x")
    expect(out.dtype == x.dtype, f"{what} dtype", str(x.dtype), str(out.dtype), "keep the dtype of x (float32)")
    expected = torch_fn(x).to(torch.float64)
    if not bool(torch.isfinite(got).all()):
        exp_s, got_s = _worst(got, expected, x)
        fail(what, exp_s, got_s, f"look for a division by zero or an overflow: {formula}")
    if not torch.allclose(got, expected, atol=1e-6, rtol=0):
        hint = formula
        for variant, text in variants:
            if torch.allclose(got, variant(x).to(torch.float64), atol=1e-5, rtol=0):
                hint = text
                break
        exp_s, got_s = _worst(got, expected, x)
        fail(what, exp_s, got_s, hint)

    # 2. autograd: the gradient of sum(fn(x)) equals torch's, on a grid (without 0 for relu,
    #    whose derivative at 0 is a convention)
    grid = torch.linspace(-8, 8, 33) if name != "relu" else torch.linspace(-8, 8, 32)
    xg = grid.clone().requires_grad_(True)
    what = f"{name}(x) gradient, x in [-8, 8]"
    out = _call(fn, f"{name}(x) with x.requires_grad", xg, hint=_AUTOGRAD)
    expect(isinstance(out, torch.Tensor) and out.requires_grad, f"{name}(x) with x.requires_grad",
           "a result that requires grad", "no autograd graph" if isinstance(out, torch.Tensor) else type(out).__name__,
           _AUTOGRAD)
    _call(_backward, f"{name}(x).sum().backward()", out, hint=_AUTOGRAD)
    expect(xg.grad is not None, what, "x.grad filled by backward()", "None", _AUTOGRAD)
    xr = grid.clone().requires_grad_(True)
    torch_fn(xr).sum().backward()
    got, expected = xg.grad.to(torch.float64), xr.grad.to(torch.float64)
    if not torch.allclose(got, expected, atol=1e-6, rtol=0):
        hint = f"autograd differentiates what you wrote: {formula}"
        zero = (grid == 0).nonzero().flatten()
        if len(zero) and abs(float(got[zero[0]]) - float(expected[zero[0]])) > 1e-6 and \
                torch.allclose(torch.cat([got[: zero[0]], got[zero[0] + 1:]]),
                               torch.cat([expected[: zero[0]], expected[zero[0] + 1:]]), atol=1e-6, rtol=0):
            fail(f"{name}(x) gradient at x = 0", f"{float(expected[zero[0]]):g}", f"{float(got[zero[0]]):g}",
                 "torch's abs() has derivative 0 at 0: split by sign with torch.where(x >= 0, -x, x) instead of -x.abs()")
        exp_s, got_s = _worst(got, expected, grid)
        fail(what, exp_s, got_s, hint)

    # 3. far from 0: finite values and gradients at |x| = 1000, where exp overflows
    far = torch.tensor([-1000.0, -100.0, -30.0, 30.0, 100.0, 1000.0])
    xf = far.clone().requires_grad_(True)
    what = f"{name}(x) at x = ±30, ±100, ±1000"
    out = _call(fn, what, xf, hint=_STABLE[name])
    got = _tensor(out, what, tuple(far.shape), "element-wise: the shape of x")
    expected = torch_fn(far).to(torch.float64)
    if not bool(torch.isfinite(got).all()) or not torch.allclose(got, expected, atol=1e-6, rtol=0):
        exp_s, got_s = _worst(got, expected, far)
        overflow = "exp(1000) overflows to inf (and inf / inf is NaN): " if name != "relu" else ""
        fail(what, exp_s, got_s, overflow + _STABLE[name])
    _call(_backward, f"{name}(x).sum().backward()", out, hint=_AUTOGRAD)
    xr = far.clone().requires_grad_(True)
    torch_fn(xr).sum().backward()
    got = xf.grad.to(torch.float64) if xf.grad is not None else torch.full_like(far, float("nan"), dtype=torch.float64)
    expected = xr.grad.to(torch.float64)
    what = f"{name}(x) gradient at x = ±30, ±100, ±1000"
    if not bool(torch.isfinite(got).all()):
        bad = far[~torch.isfinite(got)]
        fail(what, "finite values near 0", f"{float(got[~torch.isfinite(got)][0])} at x = {float(bad[0]):g}",
             "exp(1000) = inf, and the backward pass multiplies 0 by inf = NaN: " + _STABLE[name])
    if not torch.allclose(got, expected, atol=1e-6, rtol=0):
        exp_s, got_s = _worst(got, expected, far)
        fail(what, exp_s, got_s, _STABLE[name])


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
    g = torch.Generator().manual_seed(4)
    xr, wr = torch.randn(20, 3, generator=g), torch.randn(3, generator=g)
    br = torch.randn((), generator=g)
    cases = [
        ("perceptron(OR inputs, w=(1, 1), b=-0.5)", inputs, torch.tensor([1.0, 1.0]), -0.5),
        ("perceptron(x [20, 3], w [3], b a 0-d tensor)", xr, wr, br),
        ("perceptron(AND inputs, w=(1, 1), b=-1.0)", inputs, torch.tensor([1.0, 1.0]), -1.0),
    ]
    for what, x, w, b in cases:
        s = x @ w + b  # [N] weighted sums
        expected = torch.where(s > 0, 1.0, -1.0)
        out = _call(perceptron, what, x, w, b, hint="s = x @ w + b has one weighted sum per row of x")
        if isinstance(out, torch.Tensor) and out.numel() == len(s) and out.dim() == 2:
            fail(what, f"shape ({len(s)},)", f"shape {tuple(out.shape)}", "one output per row of x: a flat [N] tensor")
        expect_shape(out, (len(s),), what, "one output per row of x: a flat [N] tensor")
        got = out.detach()
        values = set(got.to(torch.float64).unique().tolist())
        hint = "+1 where x @ w + b > 0, -1 elsewhere: torch.where(s > 0, 1.0, -1.0)"
        if not values <= {-1.0, 1.0}:
            if 0.0 in values and values <= {0.0, 1.0}:
                hint = "the perceptron answers +1 or -1, not 1 or 0: torch.where(s > 0, 1.0, -1.0)"
            elif 0.0 in values and values <= {-1.0, 0.0, 1.0}:
                hint = "torch.sign gives 0 where the sum is exactly 0: return only +1 or -1, with -1 for s = 0"
            else:
                hint = "apply the step function to the weighted sum: only +1 or -1 come out"
        elif bool((got.to(torch.float64) == -expected.to(torch.float64)).all()):
            hint = "+1 where the weighted sum is positive, -1 where it is not: the sign is flipped"
        elif torch.equal(got.to(torch.float64), torch.where(x @ w > 0, 1.0, -1.0).to(torch.float64)) \
                and not bool((s == 0).any()):
            hint = "add the bias to the weighted sum: s = x @ w + b"
        elif bool(((s == 0) & (got.to(torch.float64) == 1.0)).any()):
            hint = ("a weighted sum of exactly 0 gives -1: +1 only where x @ w + b > 0 "
                    "(strictly; the lecture's tau uses >= 0, this course > 0)")
        got64, exp64 = got.to(torch.float64), expected.to(torch.float64)
        if not torch.equal(got64, exp64):
            if len(s) <= 8:
                fail(what, fmt(exp64), fmt(got64), hint)
            k = int((got64 != exp64).nonzero()[0])
            fail(f"{what}[{k}] (x @ w + b = {float(s[k]):.4g})", f"{float(exp64[k]):g}", f"{float(got64[k]):g}", hint)
