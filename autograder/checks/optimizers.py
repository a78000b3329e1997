"""Checks of lab 06, Optimizers (course.yml: lab `optimizers`).

Each step check runs the student's class and its `torch.optim` namesake side by side, in float64,
and reports the first step where they part (by more than 1e-6):
  - 100 steps on Rosenbrock and on the quadratic bowl from (-1.5, 2.0), with the lab's
    hyper-parameters (lr 1e-3 for SGD and RMSProp, 5e-2 for AdaGrad, 1e-2 for Adam);
  - 20 steps on three parameters of different shapes (a weight [3, 2], a bias [3] and a frozen
    [2] whose .grad stays None), fed a fixed stream of gradients, with other hyper-parameters
    (a large eps, other betas) so that constructor arguments and the place of eps show.
Gradients are written into `.grad` directly (analytic for the two functions): the step checks
never call the student's `zero_grad`, so they do not depend on it. When a trajectory differs,
the check replays known mistakes and names the one that reproduces it.
Randomness comes from a private torch.Generator: a check leaves the global RNG alone.
Messages are msgids of the lab's catalog (autograder/locale/<lang>/LC_MESSAGES/optimizers.po).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from autograder.checks import drawn, expect, fail, fmt
from autograder.i18n import Domain

_ = Domain("optimizers").gettext

__all__ = ["zero_grad", "sgd", "sgd_momentum", "nesterov", "adagrad", "rmsprop", "adam"]

_START = (-1.5, 2.0)
_STEPS = 100  # on the two functions
_MULTI_STEPS = 20  # on the three parameters
_TOL = 1e-6


# --- running an optimizer -----------------------------------------------------------------------


def _call(fn: Callable, what: str, *args: Any, hint: str = "", **kwargs: Any) -> Any:
    """fn(*args, **kwargs). An unfilled cell's NotImplementedError propagates unchanged; any other
    error from the student's code becomes a one-line failure (the original stays chained)."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as err:  # noqa: BLE001 — the student's code may raise anything
        first = (str(err).strip().splitlines() or [""])[0][:160]
        try:
            fail(what, _("a result"), f"{type(err).__name__}: {first}", hint or _error_hint(err))
        except AssertionError as failure:
            raise failure from err


def _error_hint(err: Exception) -> str:
    text = str(err)
    if "leaf Variable that requires grad" in text or ("requires grad" in text and "in-place" in text):
        return _("decorate step() with @torch.no_grad(): updating a parameter in place is no part of the graph")
    if "NoneType" in text:
        return _("skip parameters whose .grad is None (as torch.optim does)")
    if "size of tensor" in text or "shape" in text:
        return _("keep one state tensor per parameter, of its shape: torch.zeros_like(p) for p in self.params")
    return _("call Optimizer.__init__(params) first, then keep one state tensor per parameter")


class _Problem:
    """Parameters to start from and the gradient each receives at each step (None: no gradient)."""

    def __init__(self, label: str, start: list[torch.Tensor], names: list[str],
                 grads: Callable[[int, list[torch.Tensor]], list[torch.Tensor | None]], steps: int) -> None:
        self.label, self.start, self.names, self.grads, self.steps = label, start, names, grads, steps


def _rosenbrock_grad(t: int, params: list[torch.Tensor]) -> list[torch.Tensor]:
    x, y = (float(v) for v in params[0])
    return [torch.tensor((-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)), dtype=torch.float64)]


def _bowl_grad(t: int, params: list[torch.Tensor]) -> list[torch.Tensor]:
    x, y = (float(v) for v in params[0])
    return [torch.tensor((2 * x, 20 * y), dtype=torch.float64)]


def _functions() -> list[_Problem]:
    start = [torch.tensor(_START, dtype=torch.float64)]
    return [
        _Problem(_("Rosenbrock (1-x)² + 100(y-x²)² from (-1.5, 2.0)"), start, ["(x, y)"], _rosenbrock_grad, _STEPS),
        _Problem(_("the bowl x² + 10y² from (-1.5, 2.0)"), start, ["(x, y)"], _bowl_grad, _STEPS),
    ]


def _three_parameters() -> _Problem:
    g = drawn(6)
    start = [torch.randn(3, 2, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64),
             torch.randn(2, generator=g, dtype=torch.float64)]
    stream = [(0.05 * torch.randn(3, 2, generator=g, dtype=torch.float64),
               torch.randn(3, generator=g, dtype=torch.float64)) for _ in range(_MULTI_STEPS)]
    return _Problem(_("3 parameters (W [3, 2], b [3], and a frozen [2] whose .grad is None)"), start,
                    ["W", "b", "frozen"], lambda t, params: [stream[t][0].clone(), stream[t][1].clone(), None],
                    _MULTI_STEPS)


def _flat(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in params]).to(torch.float64)


def _run(cls: Callable, hyper: dict, problem: _Problem, label: str, student: bool) -> torch.Tensor:
    """Positions of all parameters, flattened: [steps + 1, numel], the start first."""
    params = [p.clone().requires_grad_(True) for p in problem.start]
    if student:
        opt = _call(cls, _("{label}: constructing it").format(label=label), params, **hyper)
    else:
        opt = cls(params, **hyper)
    path = [_flat(params)]
    for t in range(problem.steps):
        for p, grad in zip(params, problem.grads(t, [p.detach() for p in params])):
            p.grad = grad
        if student:
            _call(opt.step, _("{label}, step {t}").format(label=label, t=t + 1))
            for name, p, p0 in zip(problem.names, params, problem.start):
                expect(p.shape == p0.shape and p.dtype == torch.float64,
                       _("{label}, after step {t}: {name}").format(label=label, t=t + 1, name=name),
                       _("float64 of shape {shape}").format(shape=tuple(p0.shape)),
                       _("{dtype} of shape {shape}").format(dtype=p.dtype, shape=tuple(p.shape)),
                       _("update each parameter in place, keeping its shape and dtype"))
        else:
            opt.step()
        path.append(_flat(params))
    return torch.stack(path)


# --- the same rules as plain functions, to replay known mistakes --------------------------------

# update(p, g, state, t, hyper) -> new p; `state` is this parameter's dict, `t` the step (from 1)
_Update = Callable[[torch.Tensor, torch.Tensor, dict, int, dict], torch.Tensor]


def _replay(update: _Update, hyper: dict, problem: _Problem, per_param_t: bool = False) -> torch.Tensor:
    params = [p.clone() for p in problem.start]
    states: list[dict] = [{} for _ in params]
    path, count = [_flat(params)], 0
    with torch.no_grad():
        for t in range(problem.steps):
            for i, grad in enumerate(problem.grads(t, params)):
                if grad is None:
                    continue
                count += 1
                params[i] = update(params[i], grad, states[i], count if per_param_t else t + 1, hyper)
            path.append(_flat(params))
    return torch.stack(path)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=_TOL, rtol=0, equal_nan=True))


def _hint(got: torch.Tensor, expected: torch.Tensor, t: int, name: str, given: dict, problem: _Problem,
          mistakes: list[tuple], default: str) -> str:
    """The hint for a trajectory that parts from torch's at step t: the known mistake that
    reproduces it, else what the first differing step shows, else the rule itself."""
    hyper = {**_DEFAULTS[_cls_name(name)], **given}
    for update, text, *per_param_t in mistakes:
        if _same(got, _replay(update, hyper, problem, per_param_t=bool(per_param_t))):
            return text
    for key, value in given.items():  # a constructor argument ignored (a default, or torch's, instead)
        if key in _DEFAULTS[_cls_name(name)] and value != _DEFAULTS[_cls_name(name)][key]:
            if _same(got, _replay(_CORRECT[name], {**hyper, key: _DEFAULTS[_cls_name(name)][key]}, problem)):
                return _("use the {key} given to the constructor (here {key}={value}), not a fixed value").format(
                    key=key, value=value)
    if torch.equal(got[1:], got[:1].expand_as(got[1:])):
        return _("the parameters never moved: update each one in place (p -= ..., p.add_(...)) under "
                 "torch.no_grad(); assigning a new tensor to a name does not change the model")
    if not bool(torch.isfinite(got[t]).all()):
        return _("NaN or inf: look for a division by zero (1 − β^t with t = 0, or √0 without eps)")
    step_got, step_expected = got[t] - got[t - 1], expected[t] - expected[t - 1]
    if bool((step_expected != 0).any()) and torch.allclose(step_got, -step_expected, rtol=1e-6, atol=1e-12):
        return _("step against the gradient: subtract the update from p, do not add it")
    return default


def _fmt_point(v: torch.Tensor, other: torch.Tensor) -> str:
    """(x, y) with enough digits to tell it from `other`."""
    for digits in range(6, 14):
        a = ", ".join(f"{float(x):.{digits}g}" for x in v)
        b = ", ".join(f"{float(x):.{digits}g}" for x in other)
        if a != b:
            break
    return f"({a})"


def _where(problem: _Problem, index: int) -> str:
    """The name of flat element `index`, e.g. W[1, 0]."""
    for name, p in zip(problem.names, problem.start):
        if index < p.numel():
            idx, rest = [], index
            for size in reversed(p.shape):
                idx.append(rest % size)
                rest //= size
            return f"{name}[{', '.join(str(i) for i in reversed(idx))}]"
        index -= p.numel()
    return "?"


def _compare(cls: Callable, name: str, hyper: dict, torch_cls: Callable, mistakes: list[tuple],
             default: str) -> None:
    """The student's class against torch's on the two functions and on the three parameters."""
    for problem, hp in [*((p, hyper) for p in _functions()), (_three_parameters(), _MULTI_HYPER[name])]:
        args = ", ".join(f"{k}={v}" for k, v in hp.items())
        label = _("{call} on {problem}").format(call=f"{_cls_name(name)}({args})", problem=problem.label)
        got = _run(cls, hp, problem, label, student=True)
        expected = _run(torch_cls, hp, problem, label, student=False)
        diff = (got - expected).abs().nan_to_num(nan=float("inf"))
        bad = (diff > _TOL).any(dim=1).nonzero()
        if len(bad) == 0:
            continue
        t = int(bad[0])
        hint = _hint(got, expected, t, name, hp, problem, mistakes, default)
        if problem.names == ["(x, y)"]:
            fail(_("{label}, after step {t}").format(label=label, t=t), f"(x, y) = {_fmt_point(expected[t], got[t])}",
                 _fmt_point(got[t], expected[t]), hint)
        i = int(diff[t].argmax())
        e, g = expected[t, i : i + 1], got[t, i : i + 1]
        fail(_("{label}, after step {t}: {name}").format(label=label, t=t, name=_where(problem, i)),
             _fmt_point(e, g)[1:-1], _fmt_point(g, e)[1:-1], hint)


def _cls_name(name: str) -> str:
    return {"sgd": "SGD", "sgd_momentum": "SGD", "nesterov": "SGD", "adagrad": "AdaGrad",
            "rmsprop": "RMSProp", "adam": "Adam"}[name]


# the constructors' defaults (torch.optim's too), for replaying mistakes
_DEFAULTS = {
    "SGD": {"momentum": 0.0, "nesterov": False},
    "AdaGrad": {"lr": 0.01, "eps": 1e-10},
    "RMSProp": {"lr": 0.01, "alpha": 0.99, "eps": 1e-8},
    "Adam": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8},
}

# hyper-parameters on the three parameters: not the defaults, so that ignoring one shows
_MULTI_HYPER = {
    "sgd": {"lr": 0.1},
    "sgd_momentum": {"lr": 0.05, "momentum": 0.5},
    "nesterov": {"lr": 0.05, "momentum": 0.5, "nesterov": True},
    "adagrad": {"lr": 0.1, "eps": 0.01},
    "rmsprop": {"lr": 0.01, "alpha": 0.9, "eps": 0.01},
    "adam": {"lr": 0.1, "betas": (0.8, 0.9), "eps": 0.01},
}


# --- zero_grad ----------------------------------------------------------------------------------


def zero_grad(Optimizer: Callable) -> None:
    """Optimizer(params) keeps a list of the parameters (from a generator, as model.parameters()
    gives), and zero_grad() sets every .grad to None, on every call, without touching the values."""
    g = drawn(0)
    w = torch.randn(2, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    b = torch.randn(2, generator=g, dtype=torch.float64).requires_grad_(True)
    frozen = torch.randn(2, generator=g, dtype=torch.float64).requires_grad_(True)  # never gets a grad
    params = [w, b, frozen]
    what = _("Optimizer(model.parameters()) with 3 parameters")
    opt = _call(Optimizer, what, (p for p in params), hint=_("Optimizer.__init__ keeps self.params = list(params)"))
    stored = getattr(opt, "params", None)
    ok = isinstance(stored, list) and len(stored) == 3 and all(a is p for a, p in zip(stored, params))
    got = type(stored).__name__
    if isinstance(stored, list):
        got = (_("a list of {n}") if len(stored) != 3 else _("a list of {n} other objects (copies?)")).format(n=len(stored))
    expect(ok, f"{what}: .params", _("a list of the 3 parameter tensors (the same objects)"), got,
           _("self.params = list(params): model.parameters() is a generator, which can be read only once"))
    for call in (1, 2):
        x = torch.arange(3, dtype=torch.float64)
        ((w @ x + b) ** 2).sum().backward()  # w.grad and b.grad non-zero; frozen.grad stays None
        before = [p.detach().clone() for p in params]
        _call(opt.zero_grad, _("zero_grad() (call {n})").format(n=call),
              hint=_("set p.grad = None for every parameter (one without a gradient yet already has .grad None)"))
        for name, p, old in zip(("w", "b", "frozen"), params, before):
            got = p.grad
            hint = _("set p.grad = None for every parameter p in self.params")
            if isinstance(got, torch.Tensor) and not bool(got.any()):
                hint = _("set p.grad = None, as torch.optim's zero_grad does: no tensor to keep, and the next "
                         "backward() writes a fresh gradient")
            expect(got is None, _("after zero_grad() (call {n}), {name}.grad").format(n=call, name=name), "None",
                   _("a tensor of zeros") if isinstance(got, torch.Tensor) and not bool(got.any()) else fmt(got), hint)
            expect(bool(torch.equal(p.detach(), old)), _("after zero_grad() (call {n}), {name}").format(n=call, name=name),
                   _("unchanged values"), _("changed"), _("zero_grad clears the gradients, never the parameters"))


# --- SGD ----------------------------------------------------------------------------------------


def _sgd(p, g, s, t, h):
    return p - h["lr"] * g


def _sgd_ascent(p, g, s, t, h):
    return p + h["lr"] * g


def _sgd_no_lr(p, g, s, t, h):
    return p - g


def _momentum(p, g, s, t, h, dampen=False, twice=False, nesterov=None, unscaled=False):
    mu = h["momentum"]
    v_old = s.get("v", torch.zeros_like(p))
    if twice and "v" not in s:
        v_old = g.clone()  # started at the gradient, then updated too
    v = mu * v_old + ((1 - mu) * g if dampen else g)
    s["v"] = v
    if h.get("nesterov", False) if nesterov is None else nesterov:
        return p - h["lr"] * (g + (1.0 if unscaled else mu) * v)
    return p - h["lr"] * v


def sgd(SGD: Callable) -> None:
    """SGD(params, lr) — no momentum — against torch.optim.SGD: 100 steps on Rosenbrock and on the
    bowl at lr 1e-3, 20 steps on three parameters at lr 0.1."""
    _compare(SGD, "sgd", {"lr": 1e-3}, torch.optim.SGD, [
        (_sgd_ascent, _("step against the gradient: p − lr·grad, not p + lr·grad")),
        (_sgd_no_lr, _("scale the gradient by the learning rate: p − lr·grad")),
        (lambda p, g, s, t, h: _momentum(p, g, s, t, {**h, "momentum": 0.9}),
         _("momentum defaults to 0: without it, SGD is p − lr·grad")),
    ], _("plain SGD: p ← p − lr·grad, in place, for every parameter with a gradient"))


def sgd_momentum(SGD: Callable) -> None:
    """SGD(params, lr, momentum=0.9) against torch.optim.SGD: the velocity v = momentum·v + grad,
    kept per parameter between steps, and p ← p − lr·v."""
    _compare(SGD, "sgd_momentum", {"lr": 1e-3, "momentum": 0.9}, torch.optim.SGD, [
        (_sgd, _("with momentum, step along the velocity v = momentum·v + grad, kept between steps — not along grad")),
        (lambda p, g, s, t, h: _momentum(p, g, s, t, h, dampen=True),
         _("torch's velocity is a sum, not an average: v = momentum·v + grad, without (1 − momentum)")),
        (lambda p, g, s, t, h: _momentum(p, g, s, t, h, twice=True),
         _("the first gradient counted twice: v is grad after step 1 (0·momentum + grad), not (1 + momentum)·grad")),
        (lambda p, g, s, t, h: _momentum(p, g, s, t, h, nesterov=True),
         _("nesterov=False here: step along v, not along grad + momentum·v")),
    ], _("momentum: v ← momentum·v + grad (v starts at 0, one per parameter); p ← p − lr·v"))


def nesterov(SGD: Callable) -> None:
    """SGD(params, lr, momentum=0.9, nesterov=True) against torch.optim.SGD: v = momentum·v + grad,
    then p ← p − lr·(grad + momentum·v)."""
    _compare(SGD, "nesterov", {"lr": 1e-3, "momentum": 0.9, "nesterov": True}, torch.optim.SGD, [
        (lambda p, g, s, t, h: _momentum(p, g, s, t, h, nesterov=False),
         _("Nesterov steps along grad + momentum·v (with v already updated), not along v")),
        (lambda p, g, s, t, h: _momentum(p, g, s, t, h, nesterov=True, unscaled=True),
         _("the look-ahead is scaled by the momentum: step along grad + momentum·v, not grad + v")),
        (_sgd, _("Nesterov needs the velocity too: v ← momentum·v + grad; p ← p − lr·(grad + momentum·v)")),
        (lambda p, g, s, t, h: _momentum(p, g, s, t, h, nesterov=True, dampen=True),
         _("torch's velocity is a sum, not an average: v = momentum·v + grad, without (1 − momentum)")),
    ], _("Nesterov: v ← momentum·v + grad; p ← p − lr·(grad + momentum·v)"))


# --- AdaGrad ------------------------------------------------------------------------------------


def _adagrad(p, g, s, t, h, inside=False, start=0.0, no_sum=False, after=False, no_sqrt=False):
    G_old = s.get("G", torch.full_like(p, start))
    G = g * g if no_sum else G_old + g * g
    s["G"] = G
    denom_of = G_old if after else G
    if no_sqrt:
        denom = denom_of + h["eps"]
    elif inside:
        denom = (denom_of + h["eps"]).sqrt()
    else:
        denom = denom_of.sqrt() + h["eps"]
    return p - h["lr"] * g / denom


def adagrad(AdaGrad: Callable) -> None:
    """AdaGrad(params, lr=5e-2) against torch.optim.Adagrad: G ← G + grad² from G = 0,
    p ← p − lr·grad / (√G + eps); eps=0.01 on the three parameters shows where eps goes."""
    _compare(AdaGrad, "adagrad", {"lr": 5e-2}, torch.optim.Adagrad, [
        (lambda p, g, s, t, h: _adagrad(p, g, s, t, h, inside=True),
         _("eps goes outside the square root: grad / (√G + eps), not grad / √(G + eps)")),
        (lambda p, g, s, t, h: _adagrad(p, g, s, t, h, start=0.1),
         _("G starts at 0 in torch (Keras's initial_accumulator_value=0.1, in the lecture, is not torch's)")),
        (lambda p, g, s, t, h: _adagrad(p, g, s, t, h, no_sum=True),
         _("G is the sum of every squared gradient so far: G += grad², kept between steps")),
        (lambda p, g, s, t, h: _adagrad(p, g, s, t, h, after=True),
         _("add grad² to G before the update: the step divides by √G including this gradient")),
        (lambda p, g, s, t, h: _adagrad(p, g, s, t, h, no_sqrt=True),
         _("divide by the square root of G: grad / (√G + eps)")),
    ], _("AdaGrad: G ← G + grad² (G starts at 0, one per parameter); p ← p − lr·grad / (√G + eps)"))


# --- RMSProp ------------------------------------------------------------------------------------


def _rmsprop(p, g, s, t, h, inside=False, swap=False, no_decay=False, first=False, no_sqrt=False):
    a = h["alpha"]
    if first and "v" not in s:
        v = g * g
    else:
        v_old = s.get("v", torch.zeros_like(p))
        if no_decay:
            v = v_old + g * g
        elif swap:
            v = (1 - a) * v_old + a * g * g
        else:
            v = a * v_old + (1 - a) * g * g
    s["v"] = v
    denom = v + h["eps"] if no_sqrt else (v + h["eps"]).sqrt() if inside else v.sqrt() + h["eps"]
    return p - h["lr"] * g / denom


def rmsprop(RMSProp: Callable) -> None:
    """RMSProp(params, lr=1e-3) against torch.optim.RMSprop: v ← alpha·v + (1 − alpha)·grad² from 0,
    p ← p − lr·grad / (√v + eps); alpha=0.9, eps=0.01 on the three parameters."""
    _compare(RMSProp, "rmsprop", {"lr": 1e-3}, torch.optim.RMSprop, [
        (lambda p, g, s, t, h: _rmsprop(p, g, s, t, h, inside=True),
         _("eps goes outside the square root, as torch does: grad / (√v + eps), not grad / √(v + eps)")),
        (lambda p, g, s, t, h: _rmsprop(p, g, s, t, h, swap=True),
         _("alpha weights the old average: v = alpha·v + (1 − alpha)·grad², not the other way round")),
        (lambda p, g, s, t, h: _rmsprop(p, g, s, t, h, no_decay=True),
         _("RMSProp averages, it does not sum: v = alpha·v + (1 − alpha)·grad² (the sum is AdaGrad)")),
        (lambda p, g, s, t, h: _rmsprop(p, g, s, t, h, first=True),
         _("v starts at 0 (torch), not at the first grad²: after step 1, v = (1 − alpha)·grad²")),
        (lambda p, g, s, t, h: _rmsprop(p, g, s, t, h, no_sqrt=True),
         _("divide by the square root of the average: grad / (√v + eps)")),
    ], _("RMSProp: v ← alpha·v + (1 − alpha)·grad² (v starts at 0, one per parameter); "
         "p ← p − lr·grad / (√v + eps)"))


# --- Adam ---------------------------------------------------------------------------------------


def _adam(p, g, s, t, h, fix_m=True, fix_v=True, t_fixed=False, inside=False, swap=False, eps_first=False):
    b1, b2 = h["betas"][::-1] if swap else h["betas"]
    m = b1 * s.get("m", torch.zeros_like(p)) + (1 - b1) * g
    v = b2 * s.get("v", torch.zeros_like(p)) + (1 - b2) * g * g
    s["m"], s["v"] = m, v
    tt = 1 if t_fixed else t
    m_hat = m / (1 - b1**tt) if fix_m else m
    if eps_first:  # the paper's "efficient" form: eps added before the correction of v
        return p - h["lr"] * m_hat * (1 - b2**tt) ** 0.5 / (v.sqrt() + h["eps"])
    v_hat = v / (1 - b2**tt) if fix_v else v
    denom = (v_hat + h["eps"]).sqrt() if inside else v_hat.sqrt() + h["eps"]
    return p - h["lr"] * m_hat / denom


def adam(Adam: Callable) -> None:
    """Adam(params, lr=1e-2) against torch.optim.Adam: running averages m and v from 0, bias
    correction by 1 − β^t, p ← p − lr·m̂ / (√v̂ + eps); betas (0.8, 0.9), eps 0.01 on the three
    parameters."""
    _compare(Adam, "adam", {"lr": 1e-2}, torch.optim.Adam, [
        (lambda p, g, s, t, h: _adam(p, g, s, t, h, fix_m=False, fix_v=False),
         _("bias correction: divide m by 1 − β1^t and v by 1 − β2^t (both start at 0, so they are too small "
           "at first)")),
        (lambda p, g, s, t, h: _adam(p, g, s, t, h, fix_v=False),
         _("correct v too: v̂ = v / (1 − β2^t)")),
        (lambda p, g, s, t, h: _adam(p, g, s, t, h, fix_m=False),
         _("correct m too: m̂ = m / (1 − β1^t)")),
        (lambda p, g, s, t, h: _adam(p, g, s, t, h, t_fixed=True),
         _("t is the number of steps so far: add 1 at every step() before the bias correction")),
        (_adam, _("t counts calls to step(), not parameters: add 1 to t once per step(), outside the loop"), True),
        (lambda p, g, s, t, h: _adam(p, g, s, t, h, inside=True),
         _("eps goes outside the square root: m̂ / (√v̂ + eps), not m̂ / √(v̂ + eps)")),
        (lambda p, g, s, t, h: _adam(p, g, s, t, h, swap=True),
         _("betas = (β1, β2): β1 (0.9) averages the gradients into m, β2 (0.999) their squares into v")),
        (lambda p, g, s, t, h: _adam(p, g, s, t, h, eps_first=True),
         _("torch adds eps after the bias correction: m̂ / (√v̂ + eps) with v̂ = v / (1 − β2^t)")),
    ], _("Adam: m ← β1·m + (1 − β1)·grad; v ← β2·v + (1 − β2)·grad²; "
         "m̂ = m/(1 − β1^t), v̂ = v/(1 − β2^t); "
         "p ← p − lr·m̂ / (√v̂ + eps)"))


# the right rules, as plain functions: for replaying a constructor argument ignored
_CORRECT = {"sgd": _momentum, "sgd_momentum": _momentum, "nesterov": _momentum, "adagrad": _adagrad,
            "rmsprop": _rmsprop, "adam": _adam}
