"""Checks of lab 05, Softmax and cross-entropy (course.yml: lab `losses`).

Each public function takes the student's function and raises AssertionError (expected / got /
hint). Expectations come from the seed's numbers and from torch (`torch.softmax`,
`F.cross_entropy`, `F.binary_cross_entropy`, autograd), never from `reference`. Random inputs use
a private torch.Generator seeded by `seed` (the hidden tests pass another one), so a check
leaves the student's RNG state alone. The checks are independent: each calls only its own
exercise. Messages are msgids of the lab's catalog (autograder/locale/<lang>/LC_MESSAGES/losses.po).
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable

import torch
from torch.nn import functional as F

from autograder.checks import drawn, call_student as _call
from autograder.checks import close, expect, fail, float64_tensor, worst
from autograder.checks import grad_of as _grad_of
from autograder.i18n import Domain

_ = Domain("losses").gettext

__all__ = ["softmax", "cross_entropy", "cross_entropy_from_logits", "focal_loss"]

_RTOL, _ATOL = 1e-5, 1e-6  # float32 arithmetic on values of order 1
_close = functools.partial(close, rtol=_RTOL, atol=_ATOL)


# --- helpers (private) --------------------------------------------------------------------------


_tensor = float64_tensor


def _loss(value: Any, what: str) -> torch.Tensor:
    """A loss: a 0-d tensor (as `.mean()` returns), in float64."""
    return _tensor(value, what, (), _("a loss is a 0-d tensor: the .mean() of the per-sample losses"))


def _unchanged(arg: torch.Tensor, before: torch.Tensor, what: str, name: str) -> None:
    expect(bool(torch.equal(arg, before)), _("{what}: {name} after the call").format(what=what, name=name),
           _("unchanged"), _("modified in place"),
           _("compute new tensors (z - m, not z -= m or .sub_()); leave {name} as it was").format(name=name))


def _match(got: torch.Tensor, variants: list[tuple[torch.Tensor, str]], default: str) -> str:
    """The hint of the first wrong variant that `got` equals, else `default`."""
    for value, hint in variants:
        if value.shape == got.shape and _close(got, value):
            return hint
    return default


def _autograd() -> str:
    return _("keep every step in torch (no .numpy(), .item(), .detach() or torch.tensor(...) of results) "
             "so autograd can differentiate it")


# --- softmax ------------------------------------------------------------------------------------

def _softmax_hint() -> str:
    return _("softmax(z) = exp(z - m) / sum(exp(z - m)) along dim, with m = z.amax(dim=dim, keepdim=True)")


def _softmax_case(softmax: Callable, z: torch.Tensor, what: str, dim: int | None) -> None:
    """softmax(z[, dim]) against torch.softmax, with z left as it was."""
    before = z.clone()
    args = (z,) if dim is None else (z, dim)
    d = -1 if dim is None else dim
    out = _call(softmax, what, *args, hint=_softmax_hint())
    _unchanged(z, before, what, "z")
    got = _tensor(out, what, tuple(z.shape), _("the probabilities have the shape of z"))
    z64 = z.to(torch.float64)
    expected = torch.softmax(z64, dim=d)
    if _close(got, expected):
        return
    if not bool(torch.isfinite(got).all()):
        hint = _("exp overflows (float32 exp(89) = inf, inf/inf = NaN) or every exp underflows to 0 (0/0 = NaN): "
                 "subtract the maximum along dim first, z - z.amax(dim=dim, keepdim=True); softmax(z - c) = softmax(z)")
    else:
        one = torch.ones((), dtype=torch.float64)
        sums = got.sum(dim=d)
        if torch.allclose(sums, one.expand_as(sums), atol=1e-5):
            hint = _softmax_hint()  # normalised along dim, but wrong values
        elif torch.allclose(got.sum(), one, atol=1e-5):
            hint = _("sum the exponentials along dim only (keepdim=True), not over the whole tensor: "
                     "each slice along dim={d} sums to 1").format(d=d)
        elif z.dim() > 1 and any(torch.allclose(got.sum(dim=k), one, atol=1e-5) for k in range(z.dim()) if k != d % z.dim()):
            hint = _("normalise along the dim you are given (dim={d} here), not a fixed one").format(d=d)
        else:
            hint = _("divide each exponential by the sum of the exponentials along dim, "
                     "so the probabilities sum to 1 along dim={d}").format(d=d)
    e, g = worst(got, expected, whole=8)
    fail(what, e, g, hint)


def softmax(softmax: Callable, seed: int = 0) -> None:
    """Against torch.softmax: a batch [4, 5] along the last dim; logits of ±1000 (finite, no NaN);
    dims 0 and 1 of a [2, 3, 4] tensor; z left unchanged; gradients as torch's."""
    g = drawn(seed)
    _softmax_case(softmax, 2 * torch.randn(4, 5, generator=g), "softmax(z [4, 5])", None)

    big = torch.tensor([[1000.0, 999.0, 998.0], [-1000.0, 0.0, 1000.0], [-1000.0, -1001.0, -1002.0]])
    _softmax_case(softmax, big, "softmax(tensor([[1000, 999, 998], [-1000, 0, 1000], [-1000, -1001, -1002]]))", None)

    z = torch.randn(2, 3, 4, generator=g)
    for dim in (1, 0):
        _softmax_case(softmax, z, f"softmax(z [2, 3, 4], dim={dim})", dim)

    # autograd flows through it, with the gradient of torch's softmax
    z = torch.randn(3, 4, generator=g, dtype=torch.float64)
    w = torch.randn(3, 4, generator=g, dtype=torch.float64)
    zr = z.clone().requires_grad_(True)
    what = _("gradient of (softmax(z [3, 4]) * w).sum() with respect to z")
    out = _call(softmax, what, zr, hint=_autograd())
    expect(isinstance(out, torch.Tensor) and out.requires_grad, what, _("a tensor autograd can differentiate"),
           _("no gradient (requires_grad is False)"), _autograd())
    grad = _call(_grad_of, what, out, zr, w, hint=_autograd())
    zt = z.clone().requires_grad_(True)
    expected = torch.autograd.grad((torch.softmax(zt, dim=-1) * w).sum(), zt)[0]
    if not _close(grad.detach(), expected, rtol=1e-6, atol=1e-9):
        e, gt = worst(grad.detach(), expected, whole=8)
        fail(what, e, gt, _autograd())


# --- cross_entropy ------------------------------------------------------------------------------

_SEED_PROBS = [[0.1, 0.3, 0.6], [0.2, 0.6, 0.2], [0.3, 0.4, 0.3]]
_SEED_LABELS = [2, 1, 0]
def _ce_hint() -> str:
    return _("per sample -sum_c onehot * ln(probs) over the classes, then the mean over the samples")


def _ce_case(cross_entropy: Callable, probs: torch.Tensor, labels: torch.Tensor, what: str) -> None:
    N, C = probs.shape
    onehot = F.one_hot(labels, C).to(probs.dtype)
    before_p, before_y = probs.clone(), onehot.clone()
    out = _call(cross_entropy, what, probs, onehot, hint=_ce_hint())
    _unchanged(probs, before_p, what, "probs")
    _unchanged(onehot, before_y, what, "onehot")
    got = _loss(out, what)
    p64 = probs.to(torch.float64)
    per_sample = -torch.log(p64.gather(1, labels.view(-1, 1)).squeeze(1))  # [N]
    expected = per_sample.mean()
    if _close(got, expected):
        return
    if not bool(torch.isfinite(got)):
        hint = _("a probability of exactly 0 where the target is 0 gives 0 * log(0) = 0 * -inf = NaN: "
                 "clamp the probabilities to a tiny floor first (probs.clamp_min(1e-12)) or use torch.xlogy(onehot, probs)")
    else:
        hint = _match(got, [
            (expected / math.log(10), _("natural log (torch.log), not log10: the seed's 0.1549 = -log10(0.7) used log10")),
            (expected / math.log(2), _("natural log (torch.log), not log2")),
            (per_sample.sum(), _("the mean over the {N} samples, not their sum").format(N=N)),
            (expected / C, _("sum over the {C} classes, then the mean over the {N} samples "
                             "(not the mean over all {entries} entries)").format(C=C, N=N, entries=N * C)),
            (-expected, _("cross-entropy is -sum(onehot * log(probs)): mind the minus sign")),
            (-(torch.log(p64) * (1 - F.one_hot(labels, C))).sum(1).mean(),
             _("weight log(probs) by the one-hot targets: only the true class counts")),
        ], _ce_hint())
    fail(what, f"{float(expected):.6g}", f"{float(got):.6g}", hint)


def cross_entropy(cross_entropy: Callable, seed: int = 0) -> None:
    """The seed's table (mean 0.7419 in natural log), a random batch [6, 4], and probabilities of
    exactly 0 at non-target classes (0 · log 0 must count as 0)."""
    _ce_case(cross_entropy, torch.tensor(_SEED_PROBS), torch.tensor(_SEED_LABELS),
             _("cross_entropy(the seed's probs [[.1, .3, .6], [.2, .6, .2], [.3, .4, .3]], classes 2, 1, 0)"))
    g = drawn(seed)
    probs = torch.softmax(1.5 * torch.randn(6, 4, generator=g), dim=1)
    _ce_case(cross_entropy, probs, torch.randint(0, 4, (6,), generator=g), "cross_entropy(probs [6, 4], onehot [6, 4])")
    zeros = torch.tensor([[0.0, 0.25, 0.75], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.125, 0.0, 0.875]])
    _ce_case(cross_entropy, zeros, torch.tensor([2, 0, 1, 0]),
             _("cross_entropy(probs with zeros [[0, .25, .75], [.5, .5, 0], [0, 1, 0], [.125, 0, .875]], classes 2, 0, 1, 0)"))


# --- cross_entropy_from_logits ------------------------------------------------------------------

def _lse_hint() -> str:
    return _("-log softmax(z)_y = logsumexp(z) - z_y, with logsumexp(z) = m + log(sum(exp(z - m))) and m the row maximum; "
             "then the mean")


def _from_logits_case(fn: Callable, logits: torch.Tensor, labels: torch.Tensor, what: str, grad: bool) -> None:
    before_z, before_y = logits.clone(), labels.clone()
    z = logits.clone().requires_grad_(True) if grad else logits
    out = _call(fn, what, z, labels, hint=_lse_hint())
    _unchanged(z.detach(), before_z, what, "logits")
    _unchanged(labels, before_y, what, "labels")
    got = _loss(out, what)
    z64 = before_z.to(torch.float64)
    N, C = z64.shape
    per_sample = F.cross_entropy(z64, labels, reduction="none")  # [N]
    expected = per_sample.mean()
    if not _close(got, expected):
        if not bool(torch.isfinite(got)):
            hint = _("exp(1000) overflows to inf, and log(softmax) of a tiny probability is log(0) = -inf: "
                     "subtract the row maximum inside the log-sum-exp, {formula}").format(formula=_lse_hint())
        else:
            lse = torch.logsumexp(z64, dim=1)
            hint = _match(got, [
                (per_sample.sum(), _("the mean over the {N} samples, not their sum").format(N=N)),
                (expected / C, _("sum over the classes inside logsumexp, then the mean over the {N} samples only").format(N=N)),
                (expected / math.log(10), _("natural log (torch.log), not log10")),
                (-expected, _("the loss is logsumexp(z) - z_y, not z_y - logsumexp(z)")),
                (lse.mean(), _("subtract the true class's logit z[n, labels[n]] from the log-sum-exp")),
                (F.cross_entropy(torch.softmax(z64, 1), labels), _("the logits go straight into the log-sum-exp: no softmax first")),
            ], _lse_hint())
        fail(what, f"{float(expected):.6g}", f"{float(got):.6g}", hint)
    if not grad:
        return
    wg = _("{what}: gradient with respect to the logits").format(what=what)
    expect(out.requires_grad, wg, _("a loss autograd can differentiate"), _("no gradient (requires_grad is False)"), _autograd())
    got_grad = _call(_grad_of, wg, out, z, hint=_autograd()).detach().to(torch.float64)
    zr = z64.clone().requires_grad_(True)
    expected_grad = torch.autograd.grad(F.cross_entropy(zr, labels), zr)[0]  # (softmax(z) - onehot) / N
    if not _close(got_grad, expected_grad):
        e, g = worst(got_grad, expected_grad, whole=8)
        fail(wg, e, g, _("(softmax(z) - onehot) / N: {hint}").format(hint=_autograd()))


def cross_entropy_from_logits(cross_entropy_from_logits: Callable, seed: int = 0) -> None:
    """Against F.cross_entropy: a random batch [5, 4] (value and gradient), logits of ±1000 and 2000
    (finite: log-sum-exp), and a single sample of 7 classes."""
    g = drawn(seed)
    _from_logits_case(cross_entropy_from_logits, 2 * torch.randn(5, 4, generator=g), torch.randint(0, 4, (5,), generator=g),
                      "cross_entropy_from_logits(logits [5, 4], labels [5])", grad=True)
    big = torch.tensor([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 2000.0], [10.0, 10.0, 10.0]])
    _from_logits_case(cross_entropy_from_logits, big, torch.tensor([2, 0, 1]),
                      _("cross_entropy_from_logits(tensor([[1000, 0, -1000], [0, 1000, 2000], [10, 10, 10]]), labels (2, 0, 1))"),
                      grad=False)
    _from_logits_case(cross_entropy_from_logits, 3 * torch.randn(1, 7, generator=g), torch.randint(0, 7, (1,), generator=g),
                      "cross_entropy_from_logits(logits [1, 7], labels [1])", grad=True)


# --- focal_loss ---------------------------------------------------------------------------------

def _fl_hint() -> str:
    return _("p_t = p where y = 1, 1 - p where y = 0; FL = -(1 - p_t)**gamma * log(p_t), then the mean over every element")


def _focal_case(focal_loss: Callable, p: torch.Tensor, y: torch.Tensor, gamma: float, what: str, grad: bool) -> None:
    before_p, before_y = p.clone(), y.clone()
    pr = p.clone().requires_grad_(True) if grad else p
    out = _call(focal_loss, what, pr, y, gamma, hint=_fl_hint())
    _unchanged(pr.detach(), before_p, what, "p")
    _unchanged(y, before_y, what, "y")
    got = _loss(out, what)
    p64, y64 = before_p.to(torch.float64), y.to(torch.float64)
    p_t = torch.where(y64 == 1, p64, 1 - p64)
    ce = -torch.log(p_t)
    expected = ((1 - p_t) ** gamma * ce).mean()
    if not _close(got, expected):
        hint = _fl_hint()
        if gamma == 0:
            hint = _("with gamma = 0 the focal loss is the binary cross-entropy F.binary_cross_entropy(p, y): {formula}").format(
                formula=_fl_hint())
        hint = _match(got, [
            ((p64**gamma * ce).mean(),
             _("weight by (1 - p_t)**gamma, not p**gamma: the factor must shrink where the true class is already likely")),
            ((p_t**gamma * ce).mean(),
             _("weight by (1 - p_t)**gamma, not p_t**gamma: easy examples (p_t near 1) must get the small weight")),
            (((1 - p64) ** gamma * ce).mean(),
             _("use 1 - p_t, not 1 - p: for y = 0 the true class's probability is p_t = 1 - p")),
            (((1 - p_t) * ce).mean(), _("raise (1 - p_t) to the power gamma")),
            (((1 - p_t) ** gamma * ce).sum(), _("the mean over all {n} elements, not their sum").format(n=p.numel())),
            (-expected, _("the loss is -(1 - p_t)**gamma * log(p_t): mind the minus sign")),
            (expected / math.log(10), _("natural log (torch.log), not log10")),
            ((torch.where(y64 == 1, 0.25, 0.75) * (1 - p_t) ** gamma * ce).mean(),
             _("no alpha weighting here: the contract's focal_loss is -(1 - p_t)**gamma * log(p_t)")),
        ], hint)
        fail(what, f"{float(expected):.6g}", f"{float(got):.6g}", hint)
    if not grad:
        return
    wg = _("{what}: gradient with respect to p").format(what=what)
    expect(out.requires_grad, wg, _("a loss autograd can differentiate"), _("no gradient (requires_grad is False)"), _autograd())
    got_grad = _call(_grad_of, wg, out, pr, hint=_autograd()).detach().to(torch.float64)
    prr = p64.clone().requires_grad_(True)
    pt = torch.where(y64 == 1, prr, 1 - prr)
    expected_grad = torch.autograd.grad((-(1 - pt) ** gamma * torch.log(pt)).mean(), prr)[0]
    if not _close(got_grad, expected_grad):
        e, g = worst(got_grad, expected_grad, whole=8)
        fail(wg, e, g, _autograd())


def focal_loss(focal_loss: Callable, seed: int = 0) -> None:
    """gamma = 0 equals F.binary_cross_entropy; gamma = 2 and 0.5 against -(1 - p_t)^gamma log p_t
    (mean over a [4, 3] batch of both labels, with its gradient); an easy example (p_t = 0.9) loses
    100x at gamma = 2."""
    g = drawn(seed)
    p = 0.02 + 0.96 * torch.rand(4, 3, generator=g)
    y = (torch.rand(4, 3, generator=g) < 0.5).float()
    y[0, 0], y[0, 1] = 1.0, 0.0  # both labels present whatever the seed
    before_p, before_y = p.clone(), y.clone()
    what = "focal_loss(p [4, 3], y [4, 3], gamma=0)"
    got = _loss(_call(focal_loss, what, p, y, 0.0, hint=_fl_hint()), what)
    expected = F.binary_cross_entropy(before_p.to(torch.float64), before_y.to(torch.float64))
    if not _close(got, expected):
        _focal_case(focal_loss, before_p, before_y, 0.0, what, grad=False)  # the detailed diagnosis
        fail(what, f"{float(expected):.6g}", f"{float(got):.6g}",
             _("with gamma = 0 it is F.binary_cross_entropy(p, y): {formula}").format(formula=_fl_hint()))

    _focal_case(focal_loss, before_p, before_y, 2.0, "focal_loss(p [4, 3], y [4, 3], gamma=2)", grad=True)
    _focal_case(focal_loss, before_p, before_y, 0.5, "focal_loss(p [4, 3], y [4, 3], gamma=0.5)", grad=False)

    # an easy example and a hard one, one of each label: (1 - p_t)**2 = 0.01 and 0.64
    p = torch.tensor([0.9, 0.1, 0.2, 0.8])
    y = torch.tensor([1.0, 0.0, 1.0, 0.0])
    _focal_case(focal_loss, p, y, 2.0, "focal_loss(p (0.9, 0.1, 0.2, 0.8), y (1, 0, 1, 0), gamma=2)", grad=False)
