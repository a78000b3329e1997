"""Checks of lab regularization (course.yml: lab `regularization`).

Each public function takes the student's class or function and raises AssertionError
(expected / got / hint). Expectations come from the course's numbers and from PyTorch
(nn.BatchNorm2d), never from `reference`. Random draws happen inside `torch.random.fork_rng`
(or on a private Generator), so a check leaves the student's random state alone.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from autograder.checks import drawn, call_student as _call
from autograder.checks import close, expect, expect_close, expect_module, expect_shape, fail, fmt, given, keeps_rng
from autograder.checks import backward as _backward
from autograder.i18n import Domain

_ = Domain("regularization").gettext

__all__ = ["dropout", "early_stopping", "batchnorm", "augment", "kfold", "cross_validate"]


# --- helpers (private) --------------------------------------------------------------------------

_close = functools.partial(close, rtol=0.0, atol=1e-5)  # a hint's test: same shape and within atol


def _module_hint() -> str:
    return _("subclass nn.Module and call super().__init__() first: .train() and .eval() come from it")


# --- dropout ------------------------------------------------------------------------------------


@keeps_rng
def dropout(Dropout: Callable, p: float = 0.3) -> None:
    """Inverted dropout: in training about a fraction p of the elements is zeroed, the others are
    scaled by 1/(1-p), a new mask is drawn every call and the gradient flows through the mask; in
    eval mode the input comes back unchanged."""
    name = what = f"Dropout({p})"
    m = expect_module(_call(Dropout, what, p), what, _module_hint())
    keep = 1.0 - p
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m.train()
        x = torch.ones(400, 250)  # 100,000 elements: the dropped fraction is p ± 0.0015
        what = _("{what} in training mode, x = torch.ones(400, 250)").format(what=what)
        y = _call(m, what, x)
        expect_shape(y, (400, 250), what, _("dropout keeps the shape of its input"))
        expect(y.dtype == x.dtype, f"{what}: dtype", str(x.dtype), str(y.dtype),
               _("keep the dtype of x: .to(x.dtype) on the mask"))
        expect(bool(torch.equal(x, torch.ones(400, 250))), _("{what}: x after the call").format(what=what), _("unchanged"),
               _("modified in place"), _("return a new tensor: x * mask / (1 - p), not x *= mask"))
        y = y.detach().to(torch.float64)
        dropped = float((y == 0).double().mean())
        hint = _("zero each element with probability p = {p}: keep it where torch.rand_like(x) >= p").format(p=p)
        if abs(dropped - keep) < 0.01:
            hint = _("you zero a fraction 1 - p: p = {p} is the probability to drop, "
                     "so keep where torch.rand_like(x) >= p").format(p=p)
        elif dropped == 0.0:
            hint = _("nothing was zeroed: drop in training mode (self.training is True after .train())")
        expect(abs(dropped - p) < 0.01, _("{what}: fraction of elements zeroed").format(what=what), f"≈ {p:g} (± 0.01)",
               f"{dropped:.4f}", hint)

        kept = y[y != 0]
        hint = _("scale the survivors by 1/(1 - p) = {scale:.4g} (inverted dropout), so that E[output] = x").format(
            scale=1 / keep)
        if bool(torch.allclose(kept, torch.ones_like(kept), atol=1e-6)):
            hint = _("the survivors are not scaled: multiply them by 1/(1 - p) = {scale:.4g} in training, "
                     "so that eval mode needs no rescaling").format(scale=1 / keep)
        elif bool(torch.allclose(kept, torch.full_like(kept, keep), atol=1e-6)):
            hint = _("divide by 1 - p, do not multiply: the survivors become 1/(1 - p) = {scale:.4g} times larger").format(
                scale=1 / keep)
        bad = kept[(kept - 1 / keep).abs() > 1e-5 / keep]
        if bad.numel():
            fail(_("{what}: the elements kept").format(what=what), _("all {value}").format(value=f"{1 / keep:.6g}"),
                 _("{value} for {count} of {total}").format(value=fmt(float(bad[0])), count=f"{bad.numel():,}",
                                                            total=f"{kept.numel():,}"), hint)

        y2 = _call(m, _("{what}, a second call").format(what=what), x).detach().to(torch.float64)
        expect(not bool(torch.equal(y, y2)), _("{what}: two calls").format(what=what), _("two different masks"),
               _("the same mask"), _("draw a new random mask at every forward pass (torch.rand_like(x) inside forward)"))

        # the gradient flows: d(sum(y))/dx = mask / (1 - p)
        g = drawn(1)
        xr = torch.randn(64, 32, generator=g).requires_grad_(True)
        what = _("{what} in training mode, x = torch.randn(64, 32, requires_grad=True)").format(what=name)
        y = _call(m, what, xr)
        expect(isinstance(y, torch.Tensor) and y.requires_grad, _("{what}: output").format(what=what),
               _("a tensor that requires grad"), _("one without a graph"),
               _("compute with tensor operations on x (no .data, .detach() or torch.no_grad())"))
        _call(_backward, f"{what}: y.sum().backward()", y)
        grad_what = _("{what}: x.grad after y.sum().backward()").format(what=what)
        expect(xr.grad is not None, grad_what, _("the gradient mask / (1 - p)"), "None",
               _("the gradient flows back through x * mask / (1 - p)"))
        expected = (y.detach() != 0).to(torch.float64) / keep
        expect_close(xr.grad, expected, grad_what, atol=1e-5, rtol=1e-5,
                     hint=_("kept elements pass 1/(1 - p) of the gradient back, dropped ones 0: the same mask as forward"))

    what = _("{what} in eval mode, x = torch.randn(8, 3, 5, 5)").format(what=name)
    m.eval()
    x = torch.randn(8, 3, 5, 5, generator=drawn(2))
    y = _call(m, what, x.clone())
    expect_shape(y, (8, 3, 5, 5), what, _("dropout keeps the shape of its input"))
    hint = _("in eval mode dropout is the identity: return x when not self.training (inverted dropout needs no rescaling)")
    if _close(y, x * keep, atol=1e-6):
        hint = _("in eval mode return x itself: inverted dropout already scaled by 1/(1 - p) in training")
    expect_close(y, x, what, atol=0, rtol=0, hint=hint)


# --- early stopping -----------------------------------------------------------------------------


def _steps(stopper: Any, losses: list[float], what: str) -> list[Any]:
    out = []
    for loss in losses:
        r = _call(stopper.step, f"{what}.step({loss})", loss)
        expect(isinstance(r, bool), f"{what}.step({loss})", _("True or False"), f"{r!r} ({type(r).__name__})",
               _("return a Python bool: counter >= patience"))
        out.append(r)
    return out


def _sequence(EarlyStopping: Callable, kwargs: dict, losses: list[float], expected: list[bool], hint: str) -> None:
    name = "EarlyStopping(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")"
    stopper = _call(EarlyStopping, name, **kwargs)
    got = _steps(stopper, losses, name)
    if got != expected:
        fail(_("{name}.step(...) for val losses {losses}").format(name=name, losses=losses), str(expected), str(got), hint)


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@keeps_rng
def early_stopping(EarlyStopping: Callable) -> None:
    """step(): the patience-2 sequence 1.0, 0.9, 0.95, 0.96 → False, False, False, True; a reset on
    improvement, a tie is no improvement, min_delta; restore(): the weights of the best epoch."""
    # the contract's sequence; the seed's `converge_cnt = 1` never reaches patience 2
    stopper = _call(EarlyStopping, "EarlyStopping(patience=2)", patience=2)
    losses = [1.0, 0.9, 0.95, 0.96]
    got = _steps(stopper, losses, "EarlyStopping(patience=2)")
    expected = [False, False, False, True]
    if got != expected:
        hint = _("count the epochs in a row without improvement and stop when counter >= patience")
        if not any(got):
            later = _call(stopper.step, "EarlyStopping(patience=2).step(0.97)", 0.97)
            hint = _("two epochs without improvement must stop it: add 1 to the counter (counter += 1); "
                     "the seed's counter = 1 never reaches 2")
            if later is True:
                hint = _("you stop one epoch late: stop when counter >= patience, not counter > patience")
        elif got[:2] != [False, False]:
            hint = _("an epoch whose loss is below the best so far is an improvement: reset the counter, do not stop")
        elif got[2]:
            hint = _("one epoch without improvement is not enough with patience 2: stop when counter >= patience")
        fail(_("{name}.step(...) for val losses {losses}").format(name="EarlyStopping(patience=2)", losses=losses),
             str(expected), str(got), hint)

    losses = [1.0, 1.1, 0.9, 1.0, 0.9]
    stopper = _call(EarlyStopping, "EarlyStopping(patience=2)", patience=2)
    got = _steps(stopper, losses, "EarlyStopping(patience=2)")
    if got != [False, False, False, False, True]:
        hint = _("stop after `patience` epochs in a row without improvement; reset the counter on every improvement")
        if got[3]:
            hint = _("reset the counter to 0 on every improvement: 0.9 improved on 1.0, so 1.0 after it is only one bad epoch")
        elif not got[4]:
            hint = _("a loss equal to the best is no improvement: improved means val_loss < best - min_delta")
        fail(_("{name}.step(...) for val losses {losses}").format(name="EarlyStopping(patience=2)", losses=losses),
             str([False, False, False, False, True]), str(got), hint)
    _sequence(EarlyStopping, {"patience": 3}, [1.0, 1.0, 1.0, 1.0], [False, False, False, True],
              _("stop after `patience` epochs in a row without improvement; a tie is no improvement"))
    _sequence(EarlyStopping, {"patience": 1, "min_delta": 0.1}, [1.0, 0.95], [False, True],
              _("an improvement must beat the best loss by more than min_delta: val_loss < best - min_delta"))
    _sequence(EarlyStopping, {"patience": 2, "min_delta": 0.1}, [1.0, 0.95, 0.89, 0.85, 0.84],
              [False, False, False, False, True],
              _("keep `best` when the loss did not improve by more than min_delta (0.95 does not replace 1.0), "
                "so that 0.89 < 1.0 - 0.1 counts as an improvement"))

    # restore(): the weights (parameters and buffers) of the best epoch, copied
    g = drawn(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g))

    def train_a_little() -> None:  # what an optimizer step does: change the tensors in place
        with torch.no_grad():
            for t in model.state_dict().values():
                t.add_(1)

    name = "EarlyStopping(patience=2)"
    stopper = _call(EarlyStopping, name, patience=2)
    snapshots, stops = [], []
    for loss in (1.0, 0.8, 0.9, 0.95):  # the best epoch is the second one
        snapshots.append(_weights(model))
        stops.append(_call(stopper.step, f"{name}.step({loss}, model)", loss, model))
        train_a_little()
    expect(stops == [False, False, False, True],
           _("{name}.step(loss, model) for val losses [1.0, 0.8, 0.9, 0.95]").format(name=name),
           "[False, False, False, True]", str(stops), _("step(val_loss, model) stops as step(val_loss) does"))
    current = _weights(model)
    fresh = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    own = _weights(fresh)
    best = snapshots[1]
    for label, target in ((_("a fresh model"), fresh), (_("the same model"), model)):
        what = _("{name}: restore({label}) after val losses 1.0, 0.8 (best), 0.9, 0.95").format(name=name, label=label)
        _call(stopper.restore, what, target)
        got = _weights(target)
        wrong = [k for k in best if not torch.equal(got[k], best[k])]
        if not wrong:
            continue
        k = wrong[0]
        parameters = {n for n, _ in target.named_parameters()}
        found, hint = _("other weights"), _("on every improvement store a copy of model.state_dict(); restore() loads it")
        buffers_only = not any(w in parameters for w in wrong)
        if buffers_only:
            found = _("the right parameters but other buffers ({names})").format(names=", ".join(wrong))
            hint = _("store and load the whole state_dict: buffers such as running_mean are part of the weights")
        elif torch.equal(got[k], current[k]):
            found = _("the weights as they are now, after epoch 4")
            hint = _("model.state_dict() shares its tensors with the model, which training keeps changing: "
                     "store a copy ({k: v.detach().clone() for k, v in model.state_dict().items()})")
        elif torch.equal(got[k], own[k]):
            found = _("the fresh model's own weights: nothing was loaded")
            hint = _("restore(model) must load the stored copy into the model it is given: model.load_state_dict(...)")
        elif torch.equal(got[k], snapshots[0][k]):
            found = _("the weights of epoch 1")
            hint = _("store the weights at every improvement, not only the first one")
        elif any(torch.equal(got[k], s[k]) for s in snapshots[2:]):
            found = _("the weights of a later epoch")
            hint = _("store the weights only when the loss improved: the best epoch, not the last one")
        fail(what, _("the weights of epoch 2 (val loss 0.8)"),
             found if buffers_only else _("{found} ({key} differs)").format(found=found, key=k), hint)


# --- batch normalization ------------------------------------------------------------------------


def _bn_reference(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                  eps: float = 1e-5) -> torch.Tensor:
    """weight * (x - mean) / sqrt(var + eps) + bias with per-channel [C] statistics, in float64."""
    v = lambda t: t.detach().to(torch.float64)[None, :, None, None]  # noqa: E731
    return (x.to(torch.float64) - v(mean)) / torch.sqrt(v(var) + eps) * v(w) + v(b)


@keeps_rng
def batchnorm(BatchNorm2d: Callable, num_features: int = 3, seed: int = 0) -> None:
    """Parameters weight, bias and buffers running_mean, running_var (nn.BatchNorm2d's names and
    initial values, its state_dict loads); three training steps and eval mode equal nn.BatchNorm2d
    within 1e-5 in outputs, running statistics and gradients."""
    C = num_features
    name = f"BatchNorm2d({C})"
    bn = expect_module(_call(BatchNorm2d, name, C), name, _module_hint())
    params, buffers = dict(bn.named_parameters()), dict(bn.named_buffers())
    expect(set(params) == {"weight", "bias"}, _("{name} parameters").format(name=name), "weight, bias",
           ", ".join(sorted(params)) or _("none"),
           _("weight and bias are nn.Parameter; running_mean and running_var are buffers (self.register_buffer), "
             "which the optimizer does not update"))
    missing = [k for k in ("running_mean", "running_var") if k not in buffers]
    expect(not missing, _("{name} buffers").format(name=name), "running_mean, running_var",
           ", ".join(sorted(buffers)) or _("none"),
           _("register them with self.register_buffer('running_mean', torch.zeros(num_features)), ..."))
    for key, init, hint in (("weight", 1.0, _("gamma starts at ones")), ("bias", 0.0, _("beta starts at zeros")),
                            ("running_mean", 0.0, _("running_mean starts at zeros")),
                            ("running_var", 1.0, _("running_var starts at ones"))):
        t = {**params, **buffers}[key]
        expect_shape(t, (C,), f"{name}.{key}", _("one value per channel: shape [num_features]"))
        expect_close(t.detach(), torch.full((C,), init), _("{name}.{key} at construction").format(name=name, key=key),
                     atol=0, rtol=0, hint=hint)

    # the same random state in both modules, through nn.BatchNorm2d's state_dict
    g = drawn(seed)
    ref = nn.BatchNorm2d(C)
    with torch.no_grad():
        ref.weight.copy_(1 + 0.5 * torch.randn(C, generator=g))
        ref.bias.copy_(torch.randn(C, generator=g))
        ref.running_mean.copy_(torch.randn(C, generator=g))
        ref.running_var.copy_(0.5 + torch.rand(C, generator=g))
    state = {k: v.clone() for k, v in ref.state_dict().items()}
    result = _call(bn.load_state_dict, f"{name}.load_state_dict(nn.BatchNorm2d({C}).state_dict(), strict=False)",
                   state, strict=False)
    missing = [k for k in result.missing_keys if k != "num_batches_tracked"]  # optional, as in LABS.md
    unexpected = [k for k in result.unexpected_keys if k != "num_batches_tracked"]
    expect(not missing and not unexpected, f"{name}.load_state_dict(nn.BatchNorm2d({C}).state_dict())",
           _("all keys matched"), _("missing {missing}, unexpected {unexpected}").format(missing=missing, unexpected=unexpected),
           _("name them weight, bias, running_mean, running_var, as nn.BatchNorm2d does"))

    bn.train()
    ref.train()
    for step in range(1, 4):
        x = (0.5 + step) * torch.randn(4, C, 5, 6, generator=g) + torch.randn(1, C, 1, 1, generator=g)
        what = _("{name} in training mode, step {step}, x [4, {C}, 5, 6]").format(name=name, step=step, C=C)
        before = (ref.running_mean.clone(), ref.running_var.clone())
        xs, xr = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        out = _call(bn, what, xs)
        expected = ref(xr)
        expect_shape(out, tuple(x.shape), what, _("batch normalization keeps the shape of its input"))
        if not _close(out, expected):
            n = x.numel() // C
            mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
            hint = _("normalise each channel with the mean and the biased variance of the batch over N, H and W: "
                     "x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)")
            if _close(out, _bn_reference(x, mean, var * n / (n - 1), bn.weight, bn.bias)):
                hint = _("normalise with the biased variance (unbiased=False, divide by n = N*H*W = {n}); "
                         "the unbiased one only goes into running_var").format(n=n)
            elif _close(out, _bn_reference(x, before[0], before[1], bn.weight, bn.bias)):
                hint = _("in training mode normalise with the batch's statistics, not the running ones")
            elif _close(out, _bn_reference(x, mean, var, torch.ones(C), torch.zeros(C))):
                hint = _("then scale by weight and shift by bias: weight * x_hat + bias")
            elif _close(out, _bn_reference(x, mean, var, bn.weight, bn.bias, eps=0.0)):
                hint = _("add eps = 1e-5 to the variance inside the square root")
            expect_close(out.detach(), expected.detach(), what, atol=1e-5, rtol=0, hint=hint)

        for key in ("running_mean", "running_var"):
            got, exp = dict(bn.named_buffers())[key], getattr(ref, key)
            if _close(got, exp):
                continue
            n = x.numel() // C
            stat = x.mean(dim=(0, 2, 3)) if key == "running_mean" else x.var(dim=(0, 2, 3), unbiased=True)
            old = before[0] if key == "running_mean" else before[1]
            hint = _("{key} = (1 - momentum) * {key} + momentum * batch statistic, momentum 0.1, every training step").format(
                key=key)
            if key == "running_var" and _close(got, 0.9 * old + 0.1 * stat * (n - 1) / n):
                hint = _("update running_var with the unbiased variance: var * n / (n - 1), n = N*H*W = {n} "
                         "(torch normalises with the biased one but keeps the unbiased one)").format(n=n)
            elif _close(got, 0.1 * old + 0.9 * stat):
                hint = _("momentum weighs the new statistic: (1 - 0.1) * {key} + 0.1 * batch statistic").format(key=key)
            elif _close(got, old):
                hint = _("update {key} in training mode: self.{key}.mul_(1 - momentum).add_(momentum * batch statistic)"
                         ).format(key=key)
            expect_close(got.detach(), exp.detach(),
                         _("{name}.{key} after training step {step}").format(name=name, key=key, step=step),
                         atol=1e-5, rtol=0, hint=hint)

        if step == 3:  # gradients through the batch statistics
            loss_w = torch.randn(x.shape, generator=g)
            _call(_backward, f"{what}: (out * w).sum().backward()", out, loss_w,
                  hint=_("keep the output in the graph: no .detach() or torch.no_grad() around the normalisation"))
            (expected * loss_w).sum().backward()
            for label, got, exp in (("x.grad", xs.grad, xr.grad), ("weight.grad", bn.weight.grad, ref.weight.grad),
                                    ("bias.grad", bn.bias.grad, ref.bias.grad)):
                expect(got is not None, f"{what}: {label}", _("a gradient"), "None",
                       _("compute mean and variance from x with tensor operations so the gradient flows through them"))
                expect_close(got, exp, f"{what}: {label}", atol=1e-4, rtol=1e-4,
                             hint=_("the batch mean and variance are part of the graph in training mode: do not detach them"))

    bn.eval()
    ref.eval()
    x = 2 * torch.randn(3, C, 4, 4, generator=g) + 1
    stats = [dict(bn.named_buffers())[k].detach().clone() for k in ("running_mean", "running_var")]
    what = _("{name} in eval mode (after 3 training steps), x [3, {C}, 4, 4]").format(name=name, C=C)
    with torch.no_grad():
        out = _call(bn, what, x.clone())
        expected = ref(x)
    for key, before in zip(("running_mean", "running_var"), stats):
        expect_close(dict(bn.named_buffers())[key].detach(), before,
                     _("{name}.{key} after an eval-mode call").format(name=name, key=key), atol=0, rtol=0,
                     hint=_("update the running statistics only in training mode"))
    expect_shape(out, tuple(x.shape), what, _("batch normalization keeps the shape of its input"))
    hint = _("in eval mode normalise with running_mean and running_var: (x - running_mean) / sqrt(running_var + eps)")
    if _close(out, _bn_reference(x, x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False), ref.weight, ref.bias)):
        hint = _("in eval mode use the running statistics, not the batch's: check self.training")
    expect_close(out, expected, what, atol=1e-5, rtol=0, hint=hint)


# --- augmentation -------------------------------------------------------------------------------

# strokes of left-right asymmetric glyphs, (x, y) in pixels of a 28x28 image
_GLYPHS = (
    ((8, 6), (20, 6), (12, 22)),                                  # 7
    ((9, 5), (9, 22), (19, 22)),                                  # L
    ((18, 5), (18, 19), (15, 22), (10, 20)),                      # J
    ((9, 8), (12, 5), (17, 5), (19, 9), (9, 22), (20, 22)),       # 2
    ((10, 23), (10, 5), (17, 5), (19, 8), (19, 11), (17, 14), (10, 14)),  # P
)
_F = (((10, 5), (10, 22)), ((10, 5), (19, 5)), ((10, 13), (16, 13)))  # F, three separate strokes


def _draw(segments, size: int) -> torch.Tensor:
    """An anti-aliased glyph, white strokes about 3 px wide on black: [size, size] float64 in [0, 1]."""
    s = size / 28
    c = torch.arange(size, dtype=torch.float64) + 0.5
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    d = torch.full((size, size), math.inf, dtype=torch.float64)
    for (x1, y1), (x2, y2) in segments:
        x1, y1, x2, y2 = (v * s + 0.5 for v in (x1, y1, x2, y2))
        dx, dy = x2 - x1, y2 - y1
        t = (((xx - x1) * dx + (yy - y1) * dy) / (dx * dx + dy * dy)).clamp(0, 1)
        d = torch.minimum(d, ((xx - x1 - t * dx) ** 2 + (yy - y1 - t * dy) ** 2).sqrt())
    return (1.6 * s - d).clamp(0, 1)


def _glyphs(size: int, channels: int, reps: int) -> torch.Tensor:
    """reps copies of 6 glyphs: [6 * reps, channels, size, size] float32."""
    polylines = [list(zip(p[:-1], p[1:])) for p in _GLYPHS] + [list(_F)]
    imgs = torch.stack([_draw(segs, size) for segs in polylines]).repeat(reps, 1, 1)[:, None]
    tint = torch.tensor([1.0, 0.7, 0.4])[:channels].to(torch.float64)  # colour images: a tint per channel
    return (imgs * tint[None, :, None, None]).float()


def _blur(x: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    k = int(3 * sigma)
    t = torch.arange(-k, k + 1, dtype=x.dtype)
    g = torch.exp(-t**2 / (2 * sigma**2))
    g = g / g.sum()
    C = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).repeat(C, 1, 1, 1), padding=(0, k), groups=C)
    return F.conv2d(x, g.view(1, 1, -1, 1).repeat(C, 1, 1, 1), padding=(k, 0), groups=C)


def _similarity(a: torch.Tensor, b: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Per image, the normalised correlation of blurred a and b at their best alignment within
    ±max_shift pixels: 1 for the same picture shifted, lower for another one. [N]"""
    N, C, H, W = a.shape
    a, b = _blur(a), _blur(b)
    S = max_shift
    corr = F.conv2d(F.pad(a, (S, S, S, S)).reshape(1, N * C, H + 2 * S, W + 2 * S), b.reshape(N * C, 1, H, W), groups=N * C)
    best = corr.reshape(N, C, -1).sum(dim=1).max(dim=1).values
    return best / (a.flatten(1).norm(dim=1) * b.flatten(1).norm(dim=1)).clamp_min(1e-12)


@keeps_rng
def augment(augment: Callable, size: int = 28, channels: int = 1) -> None:
    """On a batch of 48 left-right asymmetric glyphs (7, L, J, 2, P, F): shape and dtype kept, x
    unchanged, a change that differs from call to call, each image still close to its original
    (best-aligned correlation, median ≥ 0.8) and closer to its original than to its mirror image
    for at least 80% of the images (no flips)."""
    x = _glyphs(size, channels, reps=8)
    N = len(x)
    what = _("augment(x [{N}, {channels}, {size}, {size}] of glyphs)").format(N=N, channels=channels, size=size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        out = _call(augment, what, x.clone())
        again = _call(augment, _("{what}, a second call").format(what=what), x.clone())
        torch.manual_seed(0)
        arg = x.clone()
        _call(augment, what, arg)
    expect(bool(torch.equal(arg, x)), _("{what}: x after the call").format(what=what), _("unchanged"),
           _("modified in place"), _("return a new batch; leave the input as it was"))
    expect_shape(out, tuple(x.shape), what,
                 _("augmentation keeps the batch's shape [N, C, H, W]: pad what moves out of view"))
    expect(out.dtype == x.dtype, f"{what}: dtype", str(x.dtype), str(out.dtype), _("keep the dtype of x"))
    out, again, xd = out.detach().to(torch.float64), again.detach().to(torch.float64), x.to(torch.float64)
    expect(bool(torch.isfinite(out).all()), what, _("finite values"), _("NaN or inf"), _("look for a division by zero"))

    changed = int(((out - xd).abs().flatten(1).amax(dim=1) > 0.05).sum())
    expect(changed >= N // 2, _("{what}: images changed").format(what=what),
           _("at least {k} of {n}").format(k=N // 2, n=N), str(changed),
           _("shift and rotate every image by a random amount (F.affine_grid + F.grid_sample, or torch.roll)"))
    expect(not bool(torch.allclose(out, again)), _("{what}: two calls").format(what=what), _("two different batches"),
           _("the same batch"), _("draw new random shifts and angles at every call"))

    mass = float(out.sum() / xd.sum())
    expect(0.6 <= mass <= 1.5, _("{what}: total brightness, augmented / original").format(what=what),
           _("between 0.6 and 1.5"), f"{mass:.3g}",
           _("move the pixels, do not rescale, invert or add to them; what comes in from outside is 0 (black)"))
    S = round(0.25 * size)
    like_original = _similarity(out, xd, S)
    like_mirror = _similarity(out, xd.flip(-1), S)
    median = float(like_original.median())
    mirrored = int((like_mirror >= like_original).sum())
    flip_hint = _("no horizontal flip: a mirrored 2, 7 or J is no longer that character (flips suit CIFAR, not digits)")
    flip_what = _("{what}: images more like their mirror image than like themselves").format(what=what)
    at_most = _("at most {k} of {n}").format(k=N // 5, n=N)
    if float(like_mirror.median()) >= 0.8:  # the content is there, mirrored: say so first
        expect(mirrored <= N // 5, flip_what, at_most, str(mirrored), flip_hint)
    expect(median >= 0.8, _("{what}: median similarity to the original (best alignment within ±{S} px)").format(what=what, S=S),
           "≥ 0.8", f"{median:.3f}",
           _("keep the content: small shifts (about 10% of the size) and small rotations (about 15°)"))
    expect(mirrored <= N // 5, flip_what, at_most, str(mirrored), flip_hint)


# --- k-fold cross-validation ----------------------------------------------------------------------

def _fold_sizes(n: int, k: int) -> list[int]:
    """scikit-learn's KFold sizes: n // k each, one more in the first n % k folds."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def _index_list(value: Any, what: str) -> list[int]:
    if not isinstance(value, torch.Tensor) or value.is_floating_point() or value.dim() != 1:
        fail(what, _("a 1-D tensor of integer indices"), type(value).__name__ if not isinstance(value, torch.Tensor)
             else f"{value.dtype} {tuple(value.shape)}", _("index tensors, e.g. from torch.randperm"))
    return [int(i) for i in value]


def kfold(kfold_indices: Callable) -> None:
    """For a drawn n in 10..19 with k = 3 and a drawn n in 20..35 with k in 4..6 (n never a
    multiple of k): k (train, val) pairs; the validation folds partition the samples (sizes
    differing by at most one, the larger first), each train set is every other sample; the folds
    are shuffled (not 0, 1, 2, ... in order), the same for the same seed and different for another
    one."""
    gen = drawn(494)
    cases = []
    for low, high, k in ((10, 20, 3), (20, 36, int(torch.randint(4, 7, (), generator=gen)))):
        n = k
        while n % k == 0:
            n = int(torch.randint(low, high, (), generator=gen))
        cases.append((n, k))
    for n, k in cases:
        what = _("kfold_indices({n}, {k}, seed=0)").format(n=n, k=k)
        splits = _call(kfold_indices, what, n, k, 0, hint=_("shuffle once, cut into k folds, pair each fold with the rest"))
        if not isinstance(splits, (list, tuple)) or len(splits) != k:
            fail(what, _("a list of {k} (train, val) pairs").format(k=k),
                 type(splits).__name__ if not isinstance(splits, (list, tuple)) else str(len(splits)),
                 _("one pair per fold"))
        vals = []
        for i, pair in enumerate(splits):
            expect(isinstance(pair, (list, tuple)) and len(pair) == 2, _("{what}[{i}]").format(what=what, i=i),
                   _("a pair (train_idx, val_idx)"), type(pair).__name__, _("return (train, val) for each fold"))
            train = _index_list(pair[0], _("{what}[{i}] train").format(what=what, i=i))
            val = _index_list(pair[1], _("{what}[{i}] val").format(what=what, i=i))
            expect(sorted(train + val) == list(range(n)), _("{what}[{i}]").format(what=what, i=i),
                   _("train and val together: every sample once"),
                   _("{t} train + {v} val indices, {u} distinct").format(t=len(train), v=len(val), u=len(set(train + val))),
                   _("the training set of fold i is every sample outside fold i"))
            vals.append(val)
        every = sorted(i for val in vals for i in val)
        expect(every == list(range(n)), _("{what}: the validation folds").format(what=what),
               _("each of the {n} samples validated exactly once").format(n=n),
               _("{m} validations of {u} distinct samples").format(m=len(every), u=len(set(every))),
               _("the folds must not overlap and must cover every sample"))
        sizes = [len(v) for v in vals]
        expected = _fold_sizes(n, k)
        expect(sizes == expected, _("{what}: fold sizes").format(what=what), str(expected), str(sizes),
               _("n // k each, and one more in the first n % k folds"))
        expect(vals[0] != list(range(sizes[0])) or vals[1] != list(range(sizes[0], sizes[0] + sizes[1])),
               _("{what}: the folds").format(what=what), _("shuffled samples"), _("0, 1, 2, ... in order"),
               _("shuffle before cutting: data sets are often sorted (by class, by date)"))
    what = _("kfold_indices({n}, {k}, seed)").format(n=n, k=k)
    again = _call(kfold_indices, what, n, k, 0)
    other = _call(kfold_indices, what, n, k, 1)
    same = [_index_list(v, what) for _, v in again] == vals
    expect(same, what, _("the same folds for the same seed"), _("other folds"),
           _("draw the permutation from a generator seeded with `seed`: torch.Generator().manual_seed(seed)"))
    expect([_index_list(v, what) for _, v in other] != vals, what, _("other folds for another seed"), _("the same folds"),
           _("use `seed`: the folds should depend on it"))


def _kfold_stand_in(n: int, k: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Given to cross_validate while its check runs: consecutive, unshuffled folds (valid folds,
    not kfold_indices' answer), so that a wrong kfold_indices costs only its own check."""
    folds = list(torch.split(torch.arange(n), _fold_sizes(n, k)))
    return [(torch.cat(folds[:i] + folds[i + 1:]), folds[i]) for i in range(k)]


class _Memorizer(nn.Module):
    """A 'model' that answers, for each sample, the label it saw for it in training (else 0); it
    counts the calls and records what it was trained on."""

    def __init__(self, registry: list) -> None:
        super().__init__()
        self.table: dict[int, int] = {}
        self.weight = nn.Parameter(torch.zeros(1))
        registry.append(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = x[:, 0].round().long().tolist()
        out = torch.zeros(len(ids), 4)
        for row, i in enumerate(ids):
            out[row, self.table.get(i, 0)] = 1.0
        return out


@keeps_rng
def cross_validate(cross_validate: Callable) -> None:
    """On 12 samples, 4 classes, k = 3: a fresh model per fold, each trained on the 8 samples
    outside its fold; the scores are the accuracies on the unseen folds, in fold order. The
    'model' remembers its training samples' labels and answers class 0 for any other, so a score
    measured on training data (or a model reused across folds) shows."""
    X = torch.arange(12, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor([1, 2, 3, 1, 2, 3, 0, 1, 2, 3, 0, 0])
    from torch.utils.data import TensorDataset
    models: list[_Memorizer] = []
    trained: list[list[int]] = []

    def train(model, subset):
        xs, ys = subset.tensors
        trained.append(sorted(int(v) for v in xs[:, 0].round().long()))
        model.table = {int(i): int(label) for i, label in zip(xs[:, 0].round().long(), ys)}

    what = _("cross_validate(make_model, 12 samples, k=3, train, seed=0)")
    with given(cross_validate, kfold_indices=_kfold_stand_in):
        scores = _call(cross_validate, what, lambda: _Memorizer(models), TensorDataset(X, y), 3, train, 0,
                       hint=_("for each fold: a new model, train on the other folds, score on this one"))
    if not isinstance(scores, (list, tuple)) or len(scores) != 3:
        fail(what, _("a list of 3 accuracies"), type(scores).__name__ if not isinstance(scores, (list, tuple))
             else str(len(scores)), _("one score per fold"))
    expect(len(models) == 3 and len({id(m) for m in models}) == 3, what, _("3 fresh models, one per fold"),
           _("{n} made").format(n=len(models)), _("call make_model() inside the loop: a model reused across folds has seen the next fold"))
    expect(len(trained) == 3 and all(len(t) == 8 for t in trained), what, _("3 trainings on 8 samples each"),
           str([len(t) for t in trained]), _("train on the k - 1 folds outside the validation fold"))
    held_out = [sorted(set(range(12)) - set(t)) for t in trained]
    expect(sorted(i for h in held_out for i in h) == list(range(12)), what, _("each sample held out once"),
           str(held_out), _("the validation folds must partition the samples"))
    expected = [float((y[h] == 0).double().mean()) for h in held_out]
    got = [float(s) for s in scores]
    if not all(math.isclose(g, e, abs_tol=1e-9) for g, e in zip(got, expected)):
        hint = _("score each model on its own validation fold, the samples it did not train on")
        if all(math.isclose(g, 1.0) for g in got):
            hint = _("every model scores 1.0: that is its accuracy on the data it trained on")
        fail(_("{what}: the scores").format(what=what), str([round(e, 4) for e in expected]), str([round(g, 4) for g in got]), hint)
