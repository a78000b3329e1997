"""The checks of lab 06 (optimizers): the reference passes every one, and every one can fail.

Each check runs on the reference class (must pass) and on buggy variants (must raise an
AssertionError that reads `... expected ..., got ... — hint`). The planted bugs of
tests/planted/optimizers.py are applied to the reference source here too — every answer cell
executed in order, as in the notebook, so a subclass inherits a planted bug of `Optimizer` — to
prove each fails exactly the checks it declares.
"""
from __future__ import annotations

from typing import Callable, Iterable

import pytest
import torch

import reference.optimizers as R
from autograder.checks import optimizers as checks
from tests.planted.optimizers import BUGS
from tests.judging import fails, passes

CELLS = ["Optimizer", "SGD", "AdaGrad", "RMSProp", "Adam"]  # the answer cells, in notebook order


# --- buggy variants -----------------------------------------------------------------------------


class Rule(R.Optimizer):
    """An optimizer from a per-parameter rule `update(p, g, state, t, hyper) -> new p`, applied in
    place; `t` counts calls to step()."""

    update: Callable

    def __init__(self, params: Iterable[torch.Tensor], **hyper) -> None:
        super().__init__(params)
        self.hyper, self.state, self.t = hyper, [{} for _ in self.params], 0

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        for p, s in zip(self.params, self.state):
            if p.grad is not None:
                p.copy_(type(self).update(p.clone(), p.grad, s, self.t, self.hyper))


def rule(fn: Callable, defaults: dict, name: str) -> type:
    def __init__(self, params, **hyper):
        Rule.__init__(self, params, **{**defaults, **hyper})

    return type(name, (Rule,), {"update": staticmethod(fn), "__init__": __init__})


SGD_DEFAULTS = {"lr": None, "momentum": 0.0, "nesterov": False}
ADAGRAD_DEFAULTS = {"lr": 0.01, "eps": 1e-10}
RMSPROP_DEFAULTS = {"lr": 0.01, "alpha": 0.99, "eps": 1e-8}
ADAM_DEFAULTS = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8}


def sgd_rule(dampen=False, twice=False, nesterov=None, unscaled=False, sign=1.0, use_lr=True, momentum=None):
    def update(p, g, s, t, h):
        mu = h["momentum"] if momentum is None else momentum
        lr = h["lr"] if use_lr else 1.0
        if mu == 0:
            return p - sign * lr * g
        v_old = s.get("v", g.clone() if twice else torch.zeros_like(p))
        s["v"] = v = mu * v_old + ((1 - mu) * g if dampen else g)
        nest = h["nesterov"] if nesterov is None else nesterov
        return p - sign * lr * ((g + (1.0 if unscaled else mu) * v) if nest else v)

    return update


def adagrad_rule(inside=False, start=0.0, no_sum=False, after=False, no_sqrt=False, eps=None):
    def update(p, g, s, t, h):
        e = h["eps"] if eps is None else eps
        G_old = s.get("G", torch.full_like(p, start))
        s["G"] = G = g * g if no_sum else G_old + g * g
        d = G_old if after else G
        denom = d + e if no_sqrt else (d + e).sqrt() if inside else d.sqrt() + e
        return p - h["lr"] * g / denom

    return update


def rmsprop_rule(inside=False, swap=False, no_decay=False, first=False, alpha=None):
    def update(p, g, s, t, h):
        a = h["alpha"] if alpha is None else alpha
        v_old = s.get("v", g * g if first else torch.zeros_like(p))
        if first and "v" not in s:
            v = g * g
        else:
            v = v_old + g * g if no_decay else (1 - a) * v_old + a * g * g if swap else a * v_old + (1 - a) * g * g
        s["v"] = v
        denom = (v + h["eps"]).sqrt() if inside else v.sqrt() + h["eps"]
        return p - h["lr"] * g / denom

    return update


def adam_rule(fix_m=True, fix_v=True, t_of=lambda t: t, inside=False, swap=False, betas=None, eps_first=False):
    def update(p, g, s, t, h):
        b1, b2 = betas or (h["betas"][::-1] if swap else h["betas"])
        s["m"] = m = b1 * s.get("m", torch.zeros_like(p)) + (1 - b1) * g
        s["v"] = v = b2 * s.get("v", torch.zeros_like(p)) + (1 - b2) * g * g
        tt = t_of(t)
        m_hat = m / (1 - b1**tt) if fix_m else m
        if eps_first:
            return p - h["lr"] * m_hat * (1 - b2**tt) ** 0.5 / (v.sqrt() + h["eps"])
        v_hat = v / (1 - b2**tt) if fix_v else v
        return p - h["lr"] * m_hat / ((v_hat + h["eps"]).sqrt() if inside else v_hat.sqrt() + h["eps"])

    return update


# class-based mistakes: how a student's code goes wrong outside the formula


class SGDRebinds(R.SGD):
    """Assigns a new tensor to a name: the model's parameters never move."""

    @torch.no_grad()
    def step(self):
        for p in self.params:
            if p.grad is not None:
                p = p - self.lr * p.grad  # noqa: PLW2901


class SGDWithoutNoGrad(R.SGD):
    def step(self):
        for p in self.params:
            if p.grad is not None:
                p -= self.lr * p.grad


class SGDFloat32(R.SGD):
    """Replaces each parameter's data with a float32 copy."""

    @torch.no_grad()
    def step(self):
        for p in self.params:
            if p.grad is not None:
                p.data = (p - self.lr * p.grad).float()


class SGDNoneGrad(R.SGD):
    @torch.no_grad()
    def step(self):
        for p in self.params:
            p -= self.lr * p.grad


class MomentumSharedVelocity(R.SGD):
    """One velocity for every parameter."""

    def __init__(self, params, lr, momentum=0.0, nesterov=False):
        super().__init__(params, lr, momentum, nesterov)
        self.v = torch.zeros_like(self.params[0])

    @torch.no_grad()
    def step(self):
        for p in self.params:
            if p.grad is not None:
                self.v = self.momentum * self.v + p.grad
                p -= self.lr * self.v


class AdamTPerParameter(R.Adam):
    @torch.no_grad()
    def step(self):
        b1, b2 = self.betas
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            self.t += 1
            m.mul_(b1).add_((1 - b1) * p.grad)
            v.mul_(b2).add_((1 - b2) * p.grad**2)
            p -= self.lr * (m / (1 - b1**self.t)) / ((v / (1 - b2**self.t)).sqrt() + self.eps)


class AdamTFromZero(R.Adam):
    @torch.no_grad()
    def step(self):
        b1, b2 = self.betas
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            m.mul_(b1).add_((1 - b1) * p.grad)
            v.mul_(b2).add_((1 - b2) * p.grad**2)
            p -= self.lr * (m / (1 - b1**self.t)) / ((v / (1 - b2**self.t)).sqrt() + self.eps)
        self.t += 1


class ZeroGradZeroes(R.Optimizer):
    def zero_grad(self):
        for p in self.params:
            if p.grad is not None:
                p.grad.zero_()


class ZeroGradKeepsGenerator(R.Optimizer):
    def __init__(self, params):
        self.params = params


class ZeroGradNothing(R.Optimizer):
    def zero_grad(self):
        pass


class ZeroGradNotNone(R.Optimizer):
    def zero_grad(self):
        for p in self.params:
            p.grad.zero_()


class ZeroGradFirstOnly(R.Optimizer):
    def zero_grad(self):
        self.params[0].grad = None


class ZeroGradCopies(R.Optimizer):
    def __init__(self, params):
        self.params = [p.detach().clone().requires_grad_(True) for p in params]


class ZeroGradClearsValues(R.Optimizer):
    def zero_grad(self):
        for p in self.params:
            p.grad = None
            p.data.zero_()


S = lambda *a, **k: rule(sgd_rule(*a, **k), SGD_DEFAULTS, "SGD")  # noqa: E731
BUGGY: dict[str, list[tuple[type, str | None]]] = {
    "zero_grad": [
        (ZeroGradZeroes, "None"), (ZeroGradKeepsGenerator, "list(params)"), (ZeroGradNothing, None),
        (ZeroGradNotNone, "p.grad = None"), (ZeroGradFirstOnly, None), (ZeroGradCopies, "same objects"),
        (ZeroGradClearsValues, "never the parameters"),
    ],
    "sgd": [
        (S(sign=-1.0), "against the gradient"), (S(use_lr=False), "learning rate"), (SGDRebinds, "in place"),
        (SGDWithoutNoGrad, "torch.no_grad()"), (SGDNoneGrad, "None"), (SGDFloat32, "dtype"),
        (rule(sgd_rule(), {**SGD_DEFAULTS, "momentum": 0.9}, "SGD"), "defaults to 0"),
    ],
    "sgd_momentum": [
        (S(momentum=0.0), "velocity"), (S(dampen=True), "not an average"), (S(twice=True), "twice"),
        (S(nesterov=True), "nesterov=False"), (MomentumSharedVelocity, "one state tensor per parameter"),
        (S(sign=-1.0), "against the gradient"),
    ],
    "nesterov": [
        (S(nesterov=False), "grad + momentum·v"), (S(unscaled=True), "scaled by the momentum"),
        (S(momentum=0.0), "velocity too"),
        (S(dampen=True), "not an average"),
    ],
    "adagrad": [
        (rule(adagrad_rule(inside=True), ADAGRAD_DEFAULTS, "AdaGrad"), "outside the square root"),
        (rule(adagrad_rule(start=0.1), ADAGRAD_DEFAULTS, "AdaGrad"), "initial_accumulator_value"),
        (rule(adagrad_rule(no_sum=True), ADAGRAD_DEFAULTS, "AdaGrad"), "G += grad²"),
        (rule(adagrad_rule(after=True), ADAGRAD_DEFAULTS, "AdaGrad"), "before the update"),
        (rule(adagrad_rule(no_sqrt=True), ADAGRAD_DEFAULTS, "AdaGrad"), "square root of G"),
        (rule(adagrad_rule(eps=1e-10), ADAGRAD_DEFAULTS, "AdaGrad"), "the eps given"),
    ],
    "rmsprop": [
        (rule(rmsprop_rule(inside=True), RMSPROP_DEFAULTS, "RMSProp"), "outside the square root"),
        (rule(rmsprop_rule(swap=True), RMSPROP_DEFAULTS, "RMSProp"), "old average"),
        (rule(rmsprop_rule(no_decay=True), RMSPROP_DEFAULTS, "RMSProp"), "AdaGrad"),
        (rule(rmsprop_rule(first=True), RMSPROP_DEFAULTS, "RMSProp"), "starts at 0"),
        (rule(rmsprop_rule(alpha=0.99), RMSPROP_DEFAULTS, "RMSProp"), "the alpha given"),
    ],
    "adam": [
        (rule(adam_rule(fix_m=False, fix_v=False), ADAM_DEFAULTS, "Adam"), "bias correction"),
        (rule(adam_rule(fix_v=False), ADAM_DEFAULTS, "Adam"), "correct v too"),
        (rule(adam_rule(fix_m=False), ADAM_DEFAULTS, "Adam"), "correct m too"),
        (rule(adam_rule(t_of=lambda t: 1), ADAM_DEFAULTS, "Adam"), "number of steps"),
        (rule(adam_rule(inside=True), ADAM_DEFAULTS, "Adam"), "outside the square root"),
        (rule(adam_rule(swap=True), ADAM_DEFAULTS, "Adam"), "β1 (0.9)"),
        (rule(adam_rule(eps_first=True), ADAM_DEFAULTS, "Adam"), "after the bias correction"),
        (rule(adam_rule(betas=(0.9, 0.999)), ADAM_DEFAULTS, "Adam"), "the betas given"),
        (AdamTPerParameter, "not parameters"), (AdamTFromZero, "t = 0"),
    ],
}


@pytest.mark.parametrize(
    "name,buggy,words", [(name, cls, words) for name, cases in BUGGY.items() for cls, words in cases],
    ids=[f"{name}-{i}" for name, cases in BUGGY.items() for i in range(len(cases))],
)
def test_check_fails_on_buggy_variant(name, buggy, words):
    message = fails(getattr(checks, name), buggy)
    if words:
        assert words in message, message


def test_the_first_diverging_step_is_named():
    with pytest.raises(AssertionError) as info:
        checks.adam(rule(adam_rule(fix_m=False, fix_v=False), ADAM_DEFAULTS, "Adam"))
    message = str(info.value)
    assert message.startswith("Adam(lr=0.01) on Rosenbrock") and "after step 1:" in message, message
    assert "divide m by 1 − β1^t" in message


def test_an_error_in_step_is_one_line_with_the_original_chained():
    with pytest.raises(AssertionError) as info:
        checks.sgd(SGDWithoutNoGrad)
    assert "RuntimeError" in str(info.value) and isinstance(info.value.__cause__, RuntimeError)


# --- correct variants pass: the rule, not one way of writing it -------------------------------


class MomentumKeras(R.SGD):
    """The lecture's form: V = momentum·V − lr·grad; p = p + V (equal to torch's for a fixed lr)."""

    @torch.no_grad()
    def step(self):
        for p, V in zip(self.params, self.velocity):
            if p.grad is not None:
                V.mul_(self.momentum).sub_(self.lr * p.grad)
                p += V if not self.nesterov else self.momentum * V - self.lr * p.grad


class MomentumTorchBuffer(R.SGD):
    """torch's own code: the buffer starts as a copy of the first gradient."""

    def __init__(self, params, lr, momentum=0.0, nesterov=False):
        super().__init__(params, lr, momentum, nesterov)
        self.buf = [None] * len(self.params)

    @torch.no_grad()
    def step(self):
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad
            if self.momentum != 0:
                if self.buf[i] is None:
                    self.buf[i] = g.detach().clone()
                else:
                    self.buf[i].mul_(self.momentum).add_(g)
                g = g.add(self.buf[i], alpha=self.momentum) if self.nesterov else self.buf[i]
            p.add_(g, alpha=-self.lr)


class AdamTorchForm(R.Adam):
    """torch's arithmetic: lerp for m, step size lr / (1 − β1^t), eps after dividing by √(1 − β2^t)."""

    @torch.no_grad()
    def step(self):
        b1, b2 = self.betas
        self.t += 1
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            m.lerp_(p.grad, 1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            denom = (v.sqrt() / (1 - b2**self.t) ** 0.5).add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / (1 - b1**self.t))


@pytest.mark.parametrize("name,cls", [
    ("sgd_momentum", MomentumKeras), ("nesterov", MomentumKeras),
    ("sgd_momentum", MomentumTorchBuffer), ("nesterov", MomentumTorchBuffer), ("sgd", MomentumTorchBuffer),
    ("adam", AdamTorchForm),
    ("sgd", S()), ("sgd_momentum", S()), ("nesterov", S()),
    ("adagrad", rule(adagrad_rule(), ADAGRAD_DEFAULTS, "AdaGrad")),
    ("rmsprop", rule(rmsprop_rule(), RMSPROP_DEFAULTS, "RMSProp")),
    ("adam", rule(adam_rule(), ADAM_DEFAULTS, "Adam")),
], ids=lambda v: getattr(v, "__name__", v))
def test_other_correct_forms_pass(name, cls):
    passes(getattr(checks, name), cls)


# --- planted bugs, applied to the reference source ----------------------------------------------


def test_every_planted_bug_edits_an_answer_cell():
    assert len(BUGS) >= 3 and all(b.cell in CELLS for b in BUGS)

