"""Checks of lab 03, Backpropagation by hand (course.yml: lab `backprop`).

Each public function takes the student's function and raises AssertionError (expected / got /
hint). Expectations come from the seed's numbers and from torch autograd, never from `reference`.
Random inputs use a private torch.Generator, so a check leaves the student's RNG state alone.
Messages are msgids of the lab's catalog (autograder/locale/<lang>/LC_MESSAGES/backprop.po).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch.nn import functional as F

from autograder.checks import drawn, call_student as _call
from autograder.checks import expect, expect_close, expect_own_code, fail, float64_tensor, fmt, library_use, worst
from autograder.checks import rel_error as _rel_error  # `rel_error` is also the name of a check
from autograder.i18n import Domain

_ = Domain("backprop").gettext


def N_(message: str) -> str:
    """A msgid of the lab's catalog kept in English where it is defined (Babel extracts `N_("...")`),
    translated with `_()` where it is shown."""
    return message

__all__ = [
    "worked_example",
    "sgd_step",
    "mlp_forward",
    "mlp_backward",
    "rel_error",
    "numerical_gradient",
    "sigmoid_grad",
]


# --- helpers (private) --------------------------------------------------------------------------


_tensor = float64_tensor


def _scale(got: torch.Tensor, expected: torch.Tensor) -> float | None:
    """c when got == c * expected (to 1e-6), else None: tells sign and normalisation bugs apart."""
    g, e = got.to(torch.float64).flatten(), expected.to(torch.float64).flatten()
    denom = float(e @ e)
    if denom == 0.0 or not bool(torch.isfinite(g).all()):
        return None
    c = float(g @ e) / denom
    return c if _rel_error(g, c * e) < 1e-6 else None


def _worst(got: torch.Tensor, expected: torch.Tensor) -> tuple[str, str]:
    """(expected, got) for a message: whole tensors when small, else the worst element (relative error)."""
    return worst(got, expected, relative=True)


def _mlp_case(N: int, D: int, H: int, O: int, seed: int):
    """x [N, D], y [N, O] and params W1 [H, D], b1 [H], W2 [O, H], b2 [O], float64."""
    g = drawn(seed)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    y = torch.randn(N, O, generator=g, dtype=torch.float64)
    params = {
        "W1": torch.randn(H, D, generator=g, dtype=torch.float64),
        "b1": torch.randn(H, generator=g, dtype=torch.float64),
        "W2": torch.randn(O, H, generator=g, dtype=torch.float64),
        "b2": torch.randn(O, generator=g, dtype=torch.float64),
    }
    return x, y, params


def _mlp(x: torch.Tensor, params: dict[str, torch.Tensor], sigmoid: bool = True, bias: bool = True) -> torch.Tensor:
    """Linear → Sigmoid → Linear with torch's own ops (and two wrong variants, for hints)."""
    b1, b2 = (params["b1"], params["b2"]) if bias else (None, None)
    z = F.linear(x, params["W1"], b1)
    return F.linear(torch.sigmoid(z) if sigmoid else z, params["W2"], b2)


# --- worked_example -----------------------------------------------------------------------------

_KEYS = ("pred", "error", "grads", "new_w", "new_pred", "new_error")
_FLOATS = ("pred", "error", "new_pred", "new_error")
_WORKED_HINTS = {
    "pred": "pred = i1*w1 + i2*w2 = 0.3*0.6 + 0.7*0.9",
    "error": N_("the lecture's error is tar - pred = 1.5 - pred"),
    "grads": N_("error = tar - i1*w1 - i2*w2, so d(error)/dw_k = -i_k"),
    "new_w": N_("the SGD rule: w_up = w_past - lr * grad (the grad is negative, so w grows)"),
    "new_pred": N_("recompute the prediction with new_w: i1*new_w1 + i2*new_w2"),
    "new_error": N_("recompute the error with the new prediction: tar - new_pred"),
}


def _seed_numbers(lr: float) -> dict[str, Any]:
    """The seed's worked example, for any lr (0.01: 0.603, 0.907, 0.8158, 0.6842)."""
    i, w, tar = torch.tensor([0.3, 0.7], dtype=torch.float64), torch.tensor([0.6, 0.9], dtype=torch.float64), 1.5
    new_w = w - lr * (-i)
    return {
        "pred": 0.81, "error": 0.69, "grads": -i, "new_w": new_w,
        "new_pred": float(i @ new_w), "new_error": tar - float(i @ new_w),
        "wrong_way": w + lr * (-i),  # w + lr * grad: a step up the error
    }


def worked_example(worked_example: Callable[..., dict]) -> None:
    """The seed's numbers: 0.81, 0.69, grads (-0.3, -0.7), new_w (0.603, 0.907), 0.8158, 0.6842;
    and lr is honoured (lr=0.1 gives new_w (0.63, 0.97))."""
    for lr in (0.01, 0.1):
        call = "worked_example()" if lr == 0.01 else "worked_example(lr=0.1)"
        r = _call(worked_example, call) if lr == 0.01 else _call(worked_example, call, lr=lr)
        expect(isinstance(r, dict), call, _("a dict with keys {keys}").format(keys=", ".join(_KEYS)), type(r).__name__,
               _("return a dict"))
        missing = [k for k in _KEYS if k not in r]
        expect(not missing, _("{what} keys").format(what=call), ", ".join(_KEYS), ", ".join(map(str, r)) or _("none"),
               _("add {keys}").format(keys=", ".join(missing)))
        exp = _seed_numbers(lr)
        for key in _KEYS:
            what, value, hint = f"{call}['{key}']", r[key], _(_WORKED_HINTS[key])
            if key in _FLOATS:
                expect(isinstance(value, float), what, _("a Python float"), type(value).__name__,
                       _("convert a 0-d tensor with float(t) or t.item()"))
                if key == "error" and abs(value + 0.69) < 1e-4:
                    hint = _("the sign: the lecture's error is tar - pred, not pred - tar")
            else:
                value = _tensor(value, what, (2,), _("a tensor with one value per weight"))
                if key == "grads" and _rel_error(value, -exp["grads"]) < 1e-5:
                    hint = _("the sign: error = tar - i·w falls as w grows, so d(error)/dw_k = -i_k")
                if key == "new_w" and _rel_error(value, exp["wrong_way"]) < 1e-5:
                    hint = _("w_up = w_past - lr * grad: subtract lr * grad, do not add it")
                if key == "new_w" and lr != 0.01 and _rel_error(value, _seed_numbers(0.01)["new_w"]) < 1e-5:
                    hint = _("use the lr argument, not a fixed 0.01")
            expect_close(value, exp[key], what, atol=1e-5, rtol=1e-5, hint=hint)


# --- sgd_step -----------------------------------------------------------------------------------


def _check_update(new: Any, p: torch.Tensor, g: torch.Tensor, before: torch.Tensor, lr: float, what: str) -> None:
    """One updated parameter: a new tensor equal to before - lr * g, with p left as it was."""
    expect(bool(torch.equal(p, before)), _("{what}: the params you were given").format(what=what), _("unchanged"),
           _("modified in place"), _("return new tensors (param - lr * grad); do not use -=, .sub_() or .data"))
    got = _tensor(new, what, tuple(p.shape), _("one updated tensor per parameter, of its shape"))
    before, g = before.to(torch.float64), g.to(torch.float64)
    expected = before - lr * g
    hint = "new = param - lr * grad"
    if torch.allclose(got, before + lr * g, atol=1e-6, rtol=1e-5):
        hint = _("step against the gradient: param - lr * grad, not param + lr * grad")
    elif torch.allclose(got, before - g, atol=1e-6, rtol=1e-5):
        hint = _("scale the gradient by the learning rate: param - lr * grad")
    expect_close(got, expected, what, atol=1e-6, rtol=1e-5, hint=hint)


def sgd_step(sgd_step: Callable) -> None:
    """A tensor, a list and a dict of tensors, each updated to param - lr * grad without touching
    the params given; the seed's step (0.6, 0.9) → (0.603, 0.907)."""
    g = drawn(3)
    # the seed's step, on a plain tensor
    w, grad = torch.tensor([0.6, 0.9]), torch.tensor([-0.3, -0.7])
    new = _call(sgd_step, "sgd_step(w, grads, lr=0.01)", w, grad, 0.01)
    _check_update(new, w, grad, torch.tensor([0.6, 0.9]), 0.01, "sgd_step(tensor w=(0.6, 0.9), grads=(-0.3, -0.7), lr=0.01)")

    # a list of tensors of different shapes
    ps = [torch.randn(3, 2, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)]
    gs = [torch.randn(3, 2, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)]
    before = [p.clone() for p in ps]
    new = _call(sgd_step, "sgd_step(list, list, lr=0.5)", ps, gs, 0.5)
    expect(isinstance(new, list) and len(new) == 2, _("sgd_step(list of 2 tensors, ...)"), _("a list of 2 tensors"),
           _("{kind} of length {n}").format(kind=type(new).__name__, n=len(new)) if isinstance(new, (list, tuple))
           else type(new).__name__,
           _("return the structure you were given: a list in, a list out"))
    for k in range(2):
        _check_update(new[k], ps[k], gs[k], before[k], 0.5, f"sgd_step(list, ...)[{k}]")

    # a dict of tensors, as mlp_backward returns
    pd = {"W": torch.randn(2, 3, generator=g, dtype=torch.float64), "b": torch.randn(2, generator=g, dtype=torch.float64)}
    gd = {"W": torch.randn(2, 3, generator=g, dtype=torch.float64), "b": torch.randn(2, generator=g, dtype=torch.float64)}
    before_d = {k: v.clone() for k, v in pd.items()}
    new = _call(sgd_step, "sgd_step(dict, dict, lr=0.1)", pd, gd, 0.1)
    expect(isinstance(new, dict) and set(new) == set(pd), _("sgd_step(dict with keys W, b, ...)"),
           _("a dict with keys {keys}").format(keys="W, b"),
           _("{kind} with keys {keys}").format(kind=type(new).__name__, keys=sorted(new)) if isinstance(new, dict)
           else type(new).__name__,
           _("return the structure you were given: a dict in, a dict with the same keys out"))
    for k in pd:
        _check_update(new[k], pd[k], gd[k], before_d[k], 0.1, f"sgd_step(dict, ...)['{k}']")


# --- mlp_forward --------------------------------------------------------------------------------

# By hand: no autograd in mlp_backward, and none of the checks' helpers in either answer (red team:
# torch.enable_grad() around torch.autograd.grad, and the check's own _mlp, earned their points).
_AUTOGRAD = frozenset({"backward", "grad", "autograd", "enable_grad", "set_grad_enabled", "vjp", "jvp", "vmap",
                       "jacobian", "jacrev", "jacfwd", "hessian"})


def _autograd_use(fn: Any) -> list | None:
    """What fn uses that a gradient by hand must not (autograder.checks.library_use)."""
    return library_use(fn, sorted(_AUTOGRAD), ["torch.autograd", "torch.func", "functorch"], list(__all__))


def _helper_use(fn: Any) -> list | None:
    """The checks' helpers fn uses (autograder.checks.library_use)."""
    return library_use(fn, [], [], list(__all__))


def mlp_forward(mlp_forward: Callable) -> None:
    """Linear → Sigmoid → Linear in nn.Linear layout, against torch's F.linear, on two shapes;
    none of the checks' helpers in its code."""
    expect_own_code(mlp_forward, "mlp_forward", _helper_use, _("code of your own: none of the checks' helpers in it"),
                    _("nn.Linear layout: W1 is [H, D], so x @ W1.T + b1"))
    for N, D, H, O, seed in ((5, 3, 4, 2, 0), (1, 2, 6, 1, 1)):
        x, _y, params = _mlp_case(N, D, H, O, seed)
        before = {k: v.clone() for k, v in params.items()}
        what = f"mlp_forward(x [{N}, {D}], W1 [{H}, {D}], W2 [{O}, {H}])"
        out = _call(mlp_forward, what, x, params, hint=_("nn.Linear layout: W1 is [H, D], so x @ W1.T + b1"))
        got = _tensor(out, what, (N, O), _("out = h @ W2.T + b2 has shape [N, O] = [{N}, {O}]").format(N=N, O=O))
        expect(all(torch.equal(params[k], before[k]) for k in params), f"{what}: params", _("unchanged"),
               _("modified in place"), _("compute new tensors; leave the parameters as they are"))
        expected = _mlp(x, params)
        hint = "h = sigmoid(x @ W1.T + b1); out = h @ W2.T + b2"
        if torch.allclose(got, _mlp(x, params, sigmoid=False), atol=1e-6):
            hint = _("apply the sigmoid between the two layers")
        elif torch.allclose(got, torch.sigmoid(expected), atol=1e-6):
            hint = _("no sigmoid after the second layer: the output is linear")
        elif torch.allclose(got, _mlp(x, params, bias=False), atol=1e-6):
            hint = _("add the biases b1 and b2")
        exp_s, got_s = _worst(got, expected)
        if not torch.allclose(got, expected, atol=1e-6, rtol=1e-6):
            fail(what, exp_s, got_s, hint)


# --- mlp_backward -------------------------------------------------------------------------------

_GRAD_HINTS = {
    "W2": N_("dL/dW2 = d_out.T @ h with d_out = 2 * (out - y) / out.numel()"),
    "b2": N_("dL/db2 = d_out.sum(dim=0): the bias gets the gradient of every sample"),
    "W1": N_("check the sigmoid derivative h*(1-h): d_z = (d_out @ W2) * h * (1 - h), dL/dW1 = d_z.T @ x"),
    "b1": N_("dL/db1 = d_z.sum(dim=0) with d_z = (d_out @ W2) * h * (1 - h)"),
}


def mlp_backward(mlp_backward: Callable) -> None:
    """Hand gradients of mean((out - y)**2) for W1, b1, W2, b2 against autograd: rel_error < 1e-7
    in float64, on two shapes (N*O > N, so the mean over every element matters); no autograd
    and none of the checks' helpers in its code."""
    expect_own_code(mlp_backward, "mlp_backward", _autograd_use,
                    _("gradients by hand: no autograd (.backward(), torch.autograd) and none of the checks' helpers in its code"),
                    _("use the chain rule, not .backward() or torch.autograd"))
    for N, D, H, O, seed in ((5, 3, 4, 2, 0), (4, 2, 3, 5, 1)):
        x, y, params = _mlp_case(N, D, H, O, seed)
        before = {k: v.clone() for k, v in params.items()}
        leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        F.mse_loss(_mlp(x, leaves), y).backward()
        expected = {k: v.grad for k, v in leaves.items()}

        what = f"mlp_backward(x [{N}, {D}], y [{N}, {O}], W1 [{H}, {D}], W2 [{O}, {H}])"
        try:
            with torch.no_grad():  # by hand: autograd has nothing to differentiate in here
                grads = _call(mlp_backward, what, x, y, params,
                              hint=_("nn.Linear layout: z = x @ W1.T + b1, out = h @ W2.T + b2"))
        except AssertionError as failure:
            cause = failure.__cause__
            if isinstance(cause, RuntimeError) and "does not require grad" in str(cause):
                try:
                    fail(what, _("gradients computed by hand"), _("an autograd error"),
                         _("use the chain rule, not .backward() or torch.autograd"))
                except AssertionError as by_hand:
                    raise by_hand from cause
            raise
        expect(isinstance(grads, dict), what, _("a dict with keys {keys}").format(keys="W1, b1, W2, b2"), type(grads).__name__,
               _("return a dict of gradients"))
        missing = [k for k in ("W1", "b1", "W2", "b2") if k not in grads]
        expect(not missing, _("{what} keys").format(what=what), "W1, b1, W2, b2", ", ".join(map(str, grads)) or _("none"),
               _("add {keys}").format(keys=", ".join(missing)))
        expect(all(torch.equal(params[k], before[k]) for k in params), f"{what}: params", _("unchanged"),
               _("modified in place"), _("compute new tensors; leave the parameters as they are"))

        for k in ("W2", "b2", "W1", "b1"):  # backwards, as the chain rule goes
            gk = f"{what} grads['{k}']"
            shape = tuple(params[k].shape)
            value = grads[k]
            if isinstance(value, torch.Tensor) and tuple(value.shape) != shape and tuple(value.shape) == shape[::-1]:
                fail(gk, _("shape {shape}").format(shape=shape), _("shape {shape}").format(shape=tuple(value.shape)),
                     _("a gradient has the shape of its parameter (nn.Linear layout [out, in]): transpose it"))
            got = _tensor(value, gk, shape, _("a gradient has the shape of its parameter"))
            err = _rel_error(got, expected[k])
            if err < 1e-7:
                continue
            hint = _(_GRAD_HINTS[k])
            c = _scale(got, expected[k])
            if c is not None and abs(c + 1) < 1e-3:
                hint = _("the sign: dL/dout = 2 * (out - y) / out.numel(), from out - y, not y - out")
            elif c is not None and abs(c - O) < 1e-3 and O > 1:
                hint = _("the mean runs over every element of out - y: divide by N*O = {NO}, not by N = {N}").format(NO=N * O, N=N)
            elif c is not None and abs(c - N * O) < 1e-3:
                hint = _("the loss is a mean: divide by N*O = {NO}").format(NO=N * O)
            elif c is not None and (abs(c - 0.5) < 1e-3 or abs(c - 2) < 1e-3):
                hint = _("d/dout (out - y)**2 = 2 * (out - y): mind the factor 2")
            exp_s, got_s = _worst(got, expected[k])
            fail(gk, exp_s, got_s, f"rel_error {err:.2g}: {hint}")


# --- rel_error ----------------------------------------------------------------------------------


def rel_error(rel_error: Callable) -> None:
    """CS231n relative error max(|a-b| / max(1e-8, |a|+|b|)) on cases that tell the max, the
    absolute values and the 1e-8 floor apart; returns a Python float."""
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    g = drawn(5)
    a, b = torch.randn(4, 5, generator=g, dtype=torch.float64), torch.randn(4, 5, generator=g, dtype=torch.float64)
    cases = [
        ("rel_error(a, a)", t(1.0, -2.0, 3.0), t(1.0, -2.0, 3.0), 0.0, _("identical tensors have relative error 0")),
        ("rel_error(zeros(3), zeros(3))", torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), 0.0,
         _("0/0: divide by max(1e-8, |a| + |b|), the floor keeps it finite")),
        ("rel_error((1, 2, 0), (1, 2.2, 0))", t(1.0, 2.0, 0.0), t(1.0, 2.2, 0.0), 0.2 / 4.2,
         _("element-wise |a-b| / (|a| + |b|), then the maximum over elements (not the mean, not the sum)")),
        ("rel_error((-1,), (1,))", t(-1.0), t(1.0), 1.0, _("the denominator is |a| + |b|: absolute values, not |a + b|")),
        ("rel_error((1e-9,), (0,))", t(1e-9), t(0.0), 0.1, _("the denominator is max(1e-8, |a| + |b|)")),
        ("rel_error(a [4, 5], b [4, 5])", a, b, _rel_error(a, b), _("|a-b| / max(1e-8, |a|+|b|) element-wise, then .max()")),
    ]
    for what, x, y, expected, hint in cases:
        got = _call(rel_error, what, x.clone(), y.clone())
        expect(isinstance(got, float), what, _("a Python float"), type(got).__name__, _("return float(...) of the maximum"))
        expect(got == got, what, fmt(expected), "nan", hint)
        expect(abs(got - expected) <= 1e-9 + 1e-6 * abs(expected), what, expected, got, hint)


# --- numerical_gradient -------------------------------------------------------------------------


def _smooth(t: torch.Tensor) -> torch.Tensor:
    """A smooth scalar function of every element, with curvature: f(t) = sum(sin(t) * t) + mean(t³)."""
    return (torch.sin(t) * t).sum() + (t**3).mean()


def numerical_gradient(numerical_gradient: Callable) -> None:
    """Centred differences: exactly 3x² + h² for sum(x³) with h = 0.01 (one-sided would add 3xh),
    against autograd on [3, 4] float64, the shape of x, and x left as it was."""
    # sum(x³) with h = 0.01: the centred difference is exactly 3x² + h²
    x = torch.tensor([[0.5, -1.0], [2.0, 0.25]], dtype=torch.float64)
    before, h = x.clone(), 1e-2
    what = "numerical_gradient(lambda t: (t**3).sum(), x [2, 2], h=0.01)"
    num = _call(numerical_gradient, what, lambda t: (t**3).sum(), x, h=h)
    expect(bool(torch.equal(x, before)), _("{what}: x after the call").format(what=what), _("unchanged"), _("modified"),
           _("put every nudged element back: x[i] = old after evaluating f(x + h) and f(x - h)"))
    got = _tensor(num, what, (2, 2), _("the gradient has the shape of x"))
    expected = 3 * x**2 + h**2
    hint = _("centred: (f(x + h) - f(x - h)) / (2h) with the h you are given")
    if torch.allclose(got, 3 * x**2 + 3 * x * h + h**2, rtol=1e-6) or torch.allclose(got, 3 * x**2 - 3 * x * h + h**2, rtol=1e-6):
        hint = _("one-sided difference: use the centred (f(x + h) - f(x - h)) / (2h), accurate to O(h²)")
    elif torch.allclose(got, 2 * expected, rtol=1e-6):
        hint = _("the two evaluations are 2h apart: divide by 2 * h, not h")
    elif torch.allclose(got, 3 * x**2, atol=1e-8, rtol=1e-6):
        hint = _("use the h argument (here 0.01), not a fixed step or autograd")
    expect_close(got, expected, what, atol=1e-9, rtol=1e-6, hint=hint)

    # a smooth function with curvature, against autograd
    g = drawn(7)
    x = torch.randn(3, 4, generator=g, dtype=torch.float64)
    before = x.clone()
    what = "numerical_gradient(f, x [3, 4])"
    num = _call(numerical_gradient, what, _smooth, x)
    expect(bool(torch.equal(x, before)), _("{what}: x after the call").format(what=what), _("unchanged"), _("modified"),
           _("put every nudged element back: x[i] = old after evaluating f(x + h) and f(x - h)"))
    got = _tensor(num, what, (3, 4), _("the gradient has the shape of x"))
    xr = before.clone().requires_grad_(True)
    _smooth(xr).backward()
    hint = _("grad[i] = (f(x + h e_i) - f(x - h e_i)) / (2h), one element i at a time")
    c = _scale(got, xr.grad)
    if c is not None and abs(c + 1) < 1e-3:
        hint = _("the sign: f(x + h) - f(x - h), in that order")
    if not torch.allclose(got, xr.grad, atol=1e-7, rtol=1e-6):
        exp_s, got_s = _worst(got, xr.grad)
        fail(what, exp_s, got_s, hint)


# --- sigmoid_grad -------------------------------------------------------------------------------


def sigmoid_grad(sigmoid_grad: Callable) -> None:
    """s * (1 - s) with s = sigmoid(x) against autograd on [5, 5], 0.25 at 0 as the maximum, and
    finite near 0 at |x| = 1000."""
    # the grid's points moved at random by up to 0.2 (a grading run's draw gives points no notebook
    # saw); the middle one stays 0, where the derivative peaks
    moved = torch.linspace(-6, 6, 25, dtype=torch.float64) + (torch.rand(25, generator=drawn(360), dtype=torch.float64) - 0.5) * 0.4
    moved[12] = 0.0
    x = moved.clamp(-6, 6).reshape(5, 5)
    xr = x.clone().requires_grad_(True)
    torch.sigmoid(xr).sum().backward()
    what = _("sigmoid_grad(x [5, 5] in [-6, 6])")
    out = _call(sigmoid_grad, what, x)
    expect(bool(torch.equal(x, xr.detach())), _("{what}: x after the call").format(what=what), _("unchanged"), _("modified"),
           _("do not change x in place"))
    got = _tensor(out, what, (5, 5), _("the derivative has the shape of x"))
    s = torch.sigmoid(x)
    hint = _("sigmoid'(x) = s * (1 - s) with s = sigmoid(x)")
    if torch.allclose(got, x * (1 - x), atol=1e-6):
        hint = _("apply s * (1 - s) to s = sigmoid(x), not to x itself")
    elif torch.allclose(got, s, atol=1e-6):
        hint = _("that is the sigmoid itself; its derivative is s * (1 - s)")
    if not torch.allclose(got, xr.grad, atol=1e-7, rtol=1e-6):
        exp_s, got_s = _worst(got, xr.grad)
        fail(what, exp_s, got_s, hint)
    peak = got.max()
    expect(abs(float(peak) - 0.25) < 1e-7 and float(got[2, 2]) == float(peak), _("{what}: maximum").format(what=what),
           _("0.25 at x = 0"), f"{float(peak):.6g}", hint)

    big = torch.tensor([-1000.0, 1000.0])
    what = "sigmoid_grad(tensor([-1000., 1000.]))"
    got = _tensor(_call(sigmoid_grad, what, big), what, (2,), _("the derivative has the shape of x"))
    expect(bool(torch.isfinite(got).all()), what, _("finite values near 0"), fmt(got),
           _("compute s = sigmoid(x) first, then s * (1 - s): exp(1000) overflows"))
    expect_close(got, torch.zeros(2), what, atol=1e-12, hint=_("the sigmoid is flat far from 0: its slope vanishes"))
