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

from autograder.checks import call_student as _call
from autograder.checks import close, expect, expect_close, expect_module, expect_shape, fail, fmt, keeps_rng
from autograder.checks import backward as _backward

__all__ = ["dropout", "early_stopping", "batchnorm", "augment"]


# --- helpers (private) --------------------------------------------------------------------------

_close = functools.partial(close, rtol=0.0, atol=1e-5)  # a hint's test: same shape and within atol
_MODULE_HINT = "subclass nn.Module and call super().__init__() first: .train() and .eval() come from it"


# --- dropout ------------------------------------------------------------------------------------


@keeps_rng
def dropout(Dropout: Callable, p: float = 0.3) -> None:
    """Inverted dropout: in training about a fraction p of the elements is zeroed, the others are
    scaled by 1/(1-p), a new mask is drawn every call and the gradient flows through the mask; in
    eval mode the input comes back unchanged."""
    what = f"Dropout({p})"
    m = expect_module(_call(Dropout, what, p), what, _MODULE_HINT)
    keep = 1.0 - p
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m.train()
        x = torch.ones(400, 250)  # 100,000 elements: the dropped fraction is p ± 0.0015
        what = f"{what} in training mode, x = torch.ones(400, 250)"
        y = _call(m, what, x)
        expect_shape(y, (400, 250), what, "dropout keeps the shape of its input")
        expect(y.dtype == x.dtype, f"{what}: dtype", str(x.dtype), str(y.dtype),
               "keep the dtype of x: .to(x.dtype) on the mask")
        expect(bool(torch.equal(x, torch.ones(400, 250))), f"{what}: x after the call", "unchanged", "modified in place",
               "return a new tensor: x * mask / (1 - p), not x *= mask")
        y = y.detach().to(torch.float64)
        dropped = float((y == 0).double().mean())
        hint = f"zero each element with probability p = {p}: keep it where torch.rand_like(x) >= p"
        if abs(dropped - keep) < 0.01:
            hint = (f"you zero a fraction 1 - p: p = {p} is the probability to drop, "
                    "so keep where torch.rand_like(x) >= p")
        elif dropped == 0.0:
            hint = "nothing was zeroed: drop in training mode (self.training is True after .train())"
        expect(abs(dropped - p) < 0.01, f"{what}: fraction of elements zeroed", f"≈ {p:g} (± 0.01)", f"{dropped:.4f}",
               hint)

        kept = y[y != 0]
        hint = f"scale the survivors by 1/(1 - p) = {1 / keep:.4g} (inverted dropout), so that E[output] = x"
        if bool(torch.allclose(kept, torch.ones_like(kept), atol=1e-6)):
            hint = (f"the survivors are not scaled: multiply them by 1/(1 - p) = {1 / keep:.4g} in training, "
                    "so that eval mode needs no rescaling")
        elif bool(torch.allclose(kept, torch.full_like(kept, keep), atol=1e-6)):
            hint = f"divide by 1 - p, do not multiply: the survivors become 1/(1 - p) = {1 / keep:.4g} times larger"
        bad = kept[(kept - 1 / keep).abs() > 1e-5 / keep]
        if bad.numel():
            fail(f"{what}: the elements kept", f"all {1 / keep:.6g}",
                 f"{fmt(float(bad[0]))} for {bad.numel():,} of {kept.numel():,}", hint)

        y2 = _call(m, f"{what}, a second call", x).detach().to(torch.float64)
        expect(not bool(torch.equal(y, y2)), f"{what}: two calls", "two different masks", "the same mask",
               "draw a new random mask at every forward pass (torch.rand_like(x) inside forward)")

        # the gradient flows: d(sum(y))/dx = mask / (1 - p)
        g = torch.Generator().manual_seed(1)
        xr = torch.randn(64, 32, generator=g).requires_grad_(True)
        what = f"Dropout({p}) in training mode, x = torch.randn(64, 32, requires_grad=True)"
        y = _call(m, what, xr)
        expect(isinstance(y, torch.Tensor) and y.requires_grad, f"{what}: output", "a tensor that requires grad",
               "one without a graph", "compute with tensor operations on x (no .data, .detach() or torch.no_grad())")
        _call(_backward, f"{what}: y.sum().backward()", y)
        expect(xr.grad is not None, f"{what}: x.grad after y.sum().backward()", "the gradient mask / (1 - p)", "None",
               "the gradient flows back through x * mask / (1 - p)")
        expected = (y.detach() != 0).to(torch.float64) / keep
        expect_close(xr.grad, expected, f"{what}: x.grad after y.sum().backward()", atol=1e-5, rtol=1e-5,
                     hint="kept elements pass 1/(1 - p) of the gradient back, dropped ones 0: the same mask as forward")

    what = f"Dropout({p}) in eval mode, x = torch.randn(8, 3, 5, 5)"
    m.eval()
    x = torch.randn(8, 3, 5, 5, generator=torch.Generator().manual_seed(2))
    y = _call(m, what, x.clone())
    expect_shape(y, (8, 3, 5, 5), what, "dropout keeps the shape of its input")
    hint = "in eval mode dropout is the identity: return x when not self.training (inverted dropout needs no rescaling)"
    if _close(y, x * keep, atol=1e-6):
        hint = "in eval mode return x itself: inverted dropout already scaled by 1/(1 - p) in training"
    expect_close(y, x, what, atol=0, rtol=0, hint=hint)


# --- early stopping -----------------------------------------------------------------------------


def _steps(stopper: Any, losses: list[float], what: str) -> list[Any]:
    out = []
    for loss in losses:
        r = _call(stopper.step, f"{what}.step({loss})", loss)
        expect(isinstance(r, bool), f"{what}.step({loss})", "True or False", f"{r!r} ({type(r).__name__})",
               "return a Python bool: counter >= patience")
        out.append(r)
    return out


def _sequence(EarlyStopping: Callable, kwargs: dict, losses: list[float], expected: list[bool], hint: str) -> None:
    name = "EarlyStopping(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")"
    stopper = _call(EarlyStopping, name, **kwargs)
    got = _steps(stopper, losses, name)
    if got != expected:
        fail(f"{name}.step(...) for val losses {losses}", str(expected), str(got), hint)


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
        hint = "count the epochs in a row without improvement and stop when counter >= patience"
        if not any(got):
            later = _call(stopper.step, "EarlyStopping(patience=2).step(0.97)", 0.97)
            hint = ("two epochs without improvement must stop it: add 1 to the counter (counter += 1); "
                    "the seed's counter = 1 never reaches 2")
            if later is True:
                hint = "you stop one epoch late: stop when counter >= patience, not counter > patience"
        elif got[:2] != [False, False]:
            hint = "an epoch whose loss is below the best so far is an improvement: reset the counter, do not stop"
        elif got[2]:
            hint = "one epoch without improvement is not enough with patience 2: stop when counter >= patience"
        fail(f"EarlyStopping(patience=2).step(...) for val losses {losses}", str(expected), str(got), hint)

    losses = [1.0, 1.1, 0.9, 1.0, 0.9]
    stopper = _call(EarlyStopping, "EarlyStopping(patience=2)", patience=2)
    got = _steps(stopper, losses, "EarlyStopping(patience=2)")
    if got != [False, False, False, False, True]:
        hint = "stop after `patience` epochs in a row without improvement; reset the counter on every improvement"
        if got[3]:
            hint = "reset the counter to 0 on every improvement: 0.9 improved on 1.0, so 1.0 after it is only one bad epoch"
        elif not got[4]:
            hint = "a loss equal to the best is no improvement: improved means val_loss < best - min_delta"
        fail(f"EarlyStopping(patience=2).step(...) for val losses {losses}", str([False, False, False, False, True]),
             str(got), hint)
    _sequence(EarlyStopping, {"patience": 3}, [1.0, 1.0, 1.0, 1.0], [False, False, False, True],
              "stop after `patience` epochs in a row without improvement; a tie is no improvement")
    _sequence(EarlyStopping, {"patience": 1, "min_delta": 0.1}, [1.0, 0.95], [False, True],
              "an improvement must beat the best loss by more than min_delta: val_loss < best - min_delta")
    _sequence(EarlyStopping, {"patience": 2, "min_delta": 0.1}, [1.0, 0.95, 0.89, 0.85, 0.84],
              [False, False, False, False, True],
              "keep `best` when the loss did not improve by more than min_delta (0.95 does not replace 1.0), "
              "so that 0.89 < 1.0 - 0.1 counts as an improvement")

    # restore(): the weights (parameters and buffers) of the best epoch, copied
    g = torch.Generator().manual_seed(0)
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
    expect(stops == [False, False, False, True], f"{name}.step(loss, model) for val losses [1.0, 0.8, 0.9, 0.95]",
           "[False, False, False, True]", str(stops), "step(val_loss, model) stops as step(val_loss) does")
    current = _weights(model)
    fresh = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    own = _weights(fresh)
    best = snapshots[1]
    for label, target in (("a fresh model", fresh), ("the same model", model)):
        what = f"{name}: restore({label}) after val losses 1.0, 0.8 (best), 0.9, 0.95"
        _call(stopper.restore, what, target)
        got = _weights(target)
        wrong = [k for k in best if not torch.equal(got[k], best[k])]
        if not wrong:
            continue
        k = wrong[0]
        parameters = {n for n, _ in target.named_parameters()}
        found, hint = "other weights", "on every improvement store a copy of model.state_dict(); restore() loads it"
        if not any(w in parameters for w in wrong):
            found = f"the right parameters but other buffers ({', '.join(wrong)})"
            hint = "store and load the whole state_dict: buffers such as running_mean are part of the weights"
        elif torch.equal(got[k], current[k]):
            found = "the weights as they are now, after epoch 4"
            hint = ("model.state_dict() shares its tensors with the model, which training keeps changing: "
                    "store a copy ({k: v.detach().clone() for k, v in model.state_dict().items()})")
        elif torch.equal(got[k], own[k]):
            found = "the fresh model's own weights: nothing was loaded"
            hint = "restore(model) must load the stored copy into the model it is given: model.load_state_dict(...)"
        elif torch.equal(got[k], snapshots[0][k]):
            found = "the weights of epoch 1"
            hint = "store the weights at every improvement, not only the first one"
        elif any(torch.equal(got[k], s[k]) for s in snapshots[2:]):
            found = "the weights of a later epoch"
            hint = "store the weights only when the loss improved: the best epoch, not the last one"
        fail(what, "the weights of epoch 2 (val loss 0.8)", found if "buffers" in found else f"{found} ({k} differs)", hint)


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
    bn = expect_module(_call(BatchNorm2d, name, C), name, _MODULE_HINT)
    params, buffers = dict(bn.named_parameters()), dict(bn.named_buffers())
    expect(set(params) == {"weight", "bias"}, f"{name} parameters", "weight, bias", ", ".join(sorted(params)) or "none",
           "weight and bias are nn.Parameter; running_mean and running_var are buffers (self.register_buffer), "
           "which the optimizer does not update")
    missing = [k for k in ("running_mean", "running_var") if k not in buffers]
    expect(not missing, f"{name} buffers", "running_mean, running_var", ", ".join(sorted(buffers)) or "none",
           "register them with self.register_buffer('running_mean', torch.zeros(num_features)), ...")
    for key, init, hint in (("weight", 1.0, "gamma starts at ones"), ("bias", 0.0, "beta starts at zeros"),
                            ("running_mean", 0.0, "running_mean starts at zeros"),
                            ("running_var", 1.0, "running_var starts at ones")):
        t = {**params, **buffers}[key]
        expect_shape(t, (C,), f"{name}.{key}", "one value per channel: shape [num_features]")
        expect_close(t.detach(), torch.full((C,), init), f"{name}.{key} at construction", atol=0, rtol=0, hint=hint)

    # the same random state in both modules, through nn.BatchNorm2d's state_dict
    g = torch.Generator().manual_seed(seed)
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
           "all keys matched", f"missing {missing}, unexpected {unexpected}",
           "name them weight, bias, running_mean, running_var, as nn.BatchNorm2d does")

    bn.train()
    ref.train()
    for step in range(1, 4):
        x = (0.5 + step) * torch.randn(4, C, 5, 6, generator=g) + torch.randn(1, C, 1, 1, generator=g)
        what = f"{name} in training mode, step {step}, x [4, {C}, 5, 6]"
        before = (ref.running_mean.clone(), ref.running_var.clone())
        xs, xr = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        out = _call(bn, what, xs)
        expected = ref(xr)
        expect_shape(out, tuple(x.shape), what, "batch normalization keeps the shape of its input")
        if not _close(out, expected):
            n = x.numel() // C
            mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
            hint = (f"normalise each channel with the mean and the biased variance of the batch over N, H and W: "
                    f"x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)")
            if _close(out, _bn_reference(x, mean, var * n / (n - 1), bn.weight, bn.bias)):
                hint = (f"normalise with the biased variance (unbiased=False, divide by n = N*H*W = {n}); "
                        "the unbiased one only goes into running_var")
            elif _close(out, _bn_reference(x, before[0], before[1], bn.weight, bn.bias)):
                hint = "in training mode normalise with the batch's statistics, not the running ones"
            elif _close(out, _bn_reference(x, mean, var, torch.ones(C), torch.zeros(C))):
                hint = "then scale by weight and shift by bias: weight * x_hat + bias"
            elif _close(out, _bn_reference(x, mean, var, bn.weight, bn.bias, eps=0.0)):
                hint = "add eps = 1e-5 to the variance inside the square root"
            expect_close(out.detach(), expected.detach(), what, atol=1e-5, rtol=0, hint=hint)

        for key in ("running_mean", "running_var"):
            got, exp = dict(bn.named_buffers())[key], getattr(ref, key)
            if _close(got, exp):
                continue
            n = x.numel() // C
            stat = x.mean(dim=(0, 2, 3)) if key == "running_mean" else x.var(dim=(0, 2, 3), unbiased=True)
            old = before[0] if key == "running_mean" else before[1]
            hint = f"{key} = (1 - momentum) * {key} + momentum * batch statistic, momentum 0.1, every training step"
            if key == "running_var" and _close(got, 0.9 * old + 0.1 * stat * (n - 1) / n):
                hint = (f"update running_var with the unbiased variance: var * n / (n - 1), n = N*H*W = {n} "
                        "(torch normalises with the biased one but keeps the unbiased one)")
            elif _close(got, 0.1 * old + 0.9 * stat):
                hint = f"momentum weighs the new statistic: (1 - 0.1) * {key} + 0.1 * batch statistic"
            elif _close(got, old):
                hint = f"update {key} in training mode: self.{key}.mul_(1 - momentum).add_(momentum * batch statistic)"
            expect_close(got.detach(), exp.detach(), f"{name}.{key} after training step {step}", atol=1e-5, rtol=0,
                         hint=hint)

        if step == 3:  # gradients through the batch statistics
            loss_w = torch.randn(x.shape, generator=g)
            _call(_backward, f"{what}: (out * w).sum().backward()", out, loss_w,
                  hint="keep the output in the graph: no .detach() or torch.no_grad() around the normalisation")
            (expected * loss_w).sum().backward()
            for label, got, exp in (("x.grad", xs.grad, xr.grad), ("weight.grad", bn.weight.grad, ref.weight.grad),
                                    ("bias.grad", bn.bias.grad, ref.bias.grad)):
                expect(got is not None, f"{what}: {label}", "a gradient", "None",
                       "compute mean and variance from x with tensor operations so the gradient flows through them")
                expect_close(got, exp, f"{what}: {label}", atol=1e-4, rtol=1e-4,
                             hint="the batch mean and variance are part of the graph in training mode: do not detach them")

    bn.eval()
    ref.eval()
    x = 2 * torch.randn(3, C, 4, 4, generator=g) + 1
    stats = [dict(bn.named_buffers())[k].detach().clone() for k in ("running_mean", "running_var")]
    what = f"{name} in eval mode (after 3 training steps), x [3, {C}, 4, 4]"
    with torch.no_grad():
        out = _call(bn, what, x.clone())
        expected = ref(x)
    for key, before in zip(("running_mean", "running_var"), stats):
        expect_close(dict(bn.named_buffers())[key].detach(), before, f"{name}.{key} after an eval-mode call", atol=0, rtol=0,
                     hint="update the running statistics only in training mode")
    expect_shape(out, tuple(x.shape), what, "batch normalization keeps the shape of its input")
    hint = "in eval mode normalise with running_mean and running_var: (x - running_mean) / sqrt(running_var + eps)"
    if _close(out, _bn_reference(x, x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False), ref.weight, ref.bias)):
        hint = "in eval mode use the running statistics, not the batch's: check self.training"
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
    what = f"augment(x [{N}, {channels}, {size}, {size}] of glyphs)"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        out = _call(augment, what, x.clone())
        again = _call(augment, f"{what}, a second call", x.clone())
        torch.manual_seed(0)
        arg = x.clone()
        _call(augment, what, arg)
    expect(bool(torch.equal(arg, x)), f"{what}: x after the call", "unchanged", "modified in place",
           "return a new batch; leave the input as it was")
    expect_shape(out, tuple(x.shape), what, "augmentation keeps the batch's shape [N, C, H, W]: pad what moves out of view")
    expect(out.dtype == x.dtype, f"{what}: dtype", str(x.dtype), str(out.dtype), "keep the dtype of x")
    out, again, xd = out.detach().to(torch.float64), again.detach().to(torch.float64), x.to(torch.float64)
    expect(bool(torch.isfinite(out).all()), what, "finite values", "NaN or inf", "look for a division by zero")

    changed = int(((out - xd).abs().flatten(1).amax(dim=1) > 0.05).sum())
    expect(changed >= N // 2, f"{what}: images changed", f"at least {N // 2} of {N}", str(changed),
           "shift and rotate every image by a random amount (F.affine_grid + F.grid_sample, or torch.roll)")
    expect(not bool(torch.allclose(out, again)), f"{what}: two calls", "two different batches", "the same batch",
           "draw new random shifts and angles at every call")

    mass = float(out.sum() / xd.sum())
    expect(0.6 <= mass <= 1.5, f"{what}: total brightness, augmented / original", "between 0.6 and 1.5", f"{mass:.3g}",
           "move the pixels, do not rescale, invert or add to them; what comes in from outside is 0 (black)")
    S = round(0.25 * size)
    like_original = _similarity(out, xd, S)
    like_mirror = _similarity(out, xd.flip(-1), S)
    median = float(like_original.median())
    mirrored = int((like_mirror >= like_original).sum())
    flip_hint = "no horizontal flip: a mirrored 2, 7 or J is no longer that character (flips suit CIFAR, not digits)"
    flip_what = f"{what}: images more like their mirror image than like themselves"
    if float(like_mirror.median()) >= 0.8:  # the content is there, mirrored: say so first
        expect(mirrored <= N // 5, flip_what, f"at most {N // 5} of {N}", str(mirrored), flip_hint)
    expect(median >= 0.8, f"{what}: median similarity to the original (best alignment within ±{S} px)", "≥ 0.8",
           f"{median:.3f}", "keep the content: small shifts (about 10% of the size) and small rotations (about 15°)")
    expect(mirrored <= N // 5, flip_what, f"at most {N // 5} of {N}", str(mirrored), flip_hint)
