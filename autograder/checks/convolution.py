"""Checks of lab 09, Convolution and pooling by hand (course.yml: lab `convolution`).

Each public function takes the student's function and raises AssertionError (expected / got /
hint). Expectations come from the seeds' numbers and from torch.nn.functional, never from
`reference`. Random inputs use a private torch.Generator, so a check leaves the student's RNG
state alone. `conv2d`, the poolings and `conv2d_backward` must be written by hand: a call to
torch's own convolution or pooling (F.conv2d, nn.Conv2d, F.max_pool2d, ...), and in the backward
pass to autograd (.backward, torch.autograd.grad), is seen, however it was imported, through a
TorchFunctionMode, and fails the check with a hint.
"""
from __future__ import annotations

import math
import numbers
import re
from typing import Any, Callable

import torch
from torch.nn import functional as F

from autograder.checks import drawn, call_student, error_line, expect, fail, fmt, shape_text, torch_calls, worst
from autograder.i18n import Domain

_ = Domain("convolution").gettext
ngettext = Domain("convolution").ngettext

__all__ = ["conv_output_size", "conv2d", "max_pool2d", "avg_pool2d", "conv_params", "conv_macs", "conv2d_backward"]


# --- helpers (private) --------------------------------------------------------------------------

# torch functions that do the work the student must do by hand: every convolution and pooling op
_BUILT_IN = re.compile(r"conv\d|convolution|conv_transpose|pool")


# ... and, in a backward pass by hand, autograd (Tensor.backward, torch.autograd.grad)
_AUTOGRAD = re.compile(r"^(backward|grad)$")


def _call(fn: Callable, what: str, *args: Any, hint: str = "", by_hand: str = "", no_autograd: bool = False,
          **kwargs: Any) -> Any:
    """call_student(fn, ...); with `by_hand` (a hint), a call to a torch convolution or pooling op
    (with `no_autograd`, also to autograd) inside fn fails the check."""
    if not by_hand:
        return call_student(fn, what, *args, hint=hint, **kwargs)
    result, names = call_student(torch_calls, what, fn, *args, hint=hint, **kwargs)
    used = [name for name in names if _BUILT_IN.search(name) or (no_autograd and _AUTOGRAD.search(name))]
    expect(not used, what, _("a computation by hand"), _("a call to torch's {names}").format(names=", ".join(used)), by_hand)
    return result


def _worst(got: torch.Tensor, expected: torch.Tensor) -> tuple[str, str]:
    """(expected, got) for a message: whole tensors when small, else the worst element and where."""
    return worst(got, expected, whole=8)


def _grid(t: torch.Tensor) -> str:
    """A small map, row by row: `6 7 6 / 4 7 7 / 4 6 6`."""
    rows = t.reshape(-1, t.shape[-1]) if t.ndim > 1 else t.reshape(1, -1)
    return " / ".join(" ".join(f"{float(v):.4g}" for v in row) for row in rows)


def _compare(out: Any, expected: torch.Tensor, what: str, shape_hints: dict[tuple, str],
             value_hints: list[tuple[torch.Tensor, str]], hint: str, atol: float = 1e-5, grid: bool = False) -> None:
    """out is a tensor of expected's shape and values (atol = rtol); else a failure whose hint
    names the first wrong shape in `shape_hints` or the first wrong variant in `value_hints`."""
    shape = tuple(expected.shape)
    if not isinstance(out, torch.Tensor):
        fail(what, _("a tensor of shape {shape}").format(shape=shape_text(shape)), type(out).__name__,
             _("return a torch.Tensor"))
    got_shape = tuple(out.shape)
    if got_shape != shape:
        fail(what, _("shape {shape}").format(shape=shape_text(shape)), _("shape {shape}").format(shape=shape_text(got_shape)),
             shape_hints.get(got_shape, hint))
    got = out.detach().cpu().to(torch.float64)
    e = expected.to(torch.float64)
    if bool(torch.isfinite(got).all()) and torch.allclose(got, e, atol=atol, rtol=atol):
        return
    for variant, variant_hint in value_hints:
        if variant.shape == got.shape and torch.allclose(got, variant.to(torch.float64), atol=atol, rtol=atol):
            hint = variant_hint
            break
    exp_s, got_s = (_grid(e), _grid(got)) if grid else _worst(got, e)
    fail(what, exp_s, got_s, hint)


def _integer(value: Any, what: str, expected: int, hint: str) -> None:
    """value == expected and is a Python (or numpy) integer, not a float, bool or tensor."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        expect(int(value) == expected, what, f"{expected:,}", f"{int(value):,}", hint)
        return
    if isinstance(value, float) and value == expected:
        fail(what, _("{value} (an int)").format(value=f"{expected:,}"), repr(value),
             _("return an int: use // (or int(...)), not /"))
    fail(what, _("{value} (an int)").format(value=f"{expected:,}"), fmt(value) if isinstance(value, torch.Tensor) else repr(value),
         _("return a Python int") if not isinstance(value, (int, float)) else hint)


# --- conv_output_size ---------------------------------------------------------------------------

_SIZE_HINT = "(n + 2p - f) / s + 1"


def _size_hint(got: Any, n: int, f: int, p: int, s: int) -> str:
    """Name the usual slip when `got` matches it."""
    if not isinstance(got, (int, float)) or isinstance(got, bool):
        return _SIZE_HINT
    if p and got == (n - f) // s + 1:
        return _("the padding adds p = {p} zeros on each side: n + 2p").format(p=p)
    if p and got == (n + p - f) // s + 1:
        return _("the padding goes on both sides: n + 2p = {total}, not n + p").format(total=n + 2 * p)
    if got == (n + 2 * p - f) // s:
        return _("+ 1: the window's first position counts too")
    if s > 1 and got == n + 2 * p - f + 1:
        return _("divide by the stride s = {s}: the window moves s pixels at a time").format(s=s)
    if got == math.ceil((n + 2 * p - f) / s) + 1:
        return _("floor, as PyTorch does: a window that would fall off the edge is dropped")
    return _SIZE_HINT


def conv_output_size(conv_output_size: Callable) -> None:
    """The seed's cases (n=7, f=3: 5 at s=1, 3 at s=2, ValueError at s=3; n=4, f=3, p=1: 4), "same"
    padding, strict=True raising ValueError where the stride does not fit, strict=False flooring as
    PyTorch (AlexNet: (224 - 11)/4 + 1 = 54.25 → 54), and random cases, as Python ints."""
    fits = [  # (n, f, p, s, strict), expected, why
        ((7, 3, 0, 1, True), 5, _("the lecture: (7 - 3)/1 + 1 = 5")),
        ((7, 3, 0, 2, True), 3, _("the lecture: (7 - 3)/2 + 1 = 3")),
        ((4, 3, 1, 1, True), 4, _("the lecture: (4 + 2·1 - 3)/1 + 1 = 4")),
        ((7, 5, 2, 1, True), 7, _("'same' padding for a 5×5 filter: p = 2 keeps 7 at 7")),
        ((227, 11, 0, 4, True), 55, "(227 - 11)/4 + 1 = 55"),
        ((7, 3, 0, 3, False), 2, _("strict=False floors as PyTorch: (7 - 3)/3 + 1 = 2.33 → 2")),
        ((224, 11, 0, 4, False), 54, _("strict=False floors as PyTorch: the seed AlexNet's (224 - 11)/4 + 1 = 54.25 → 54")),
        ((256, 3, 1, 2, False), 128, _("strict=False floors as PyTorch: (256 + 2 - 3)/2 + 1 = 128.5 → 128")),
    ]
    g = drawn(9)
    for _case in range(6):
        n, f, p, s = (int(torch.randint(lo, hi, (1,), generator=g)) for lo, hi in ((8, 60), (1, 8), (0, 4), (1, 5)))
        fits.append(((n, f, p, s, False), (n + 2 * p - f) // s + 1, _("with strict=False, floor((n + 2p - f) / s) + 1")))
    for (n, f, p, s, strict), expected, why in fits:
        what = f"conv_output_size({n}, {f}, p={p}, s={s}, strict={strict})"
        hint = _("with strict=False, floor instead of raising") if not strict else _SIZE_HINT
        got = _call(conv_output_size, what, n, f, p=p, s=s, strict=strict, hint=hint)
        if isinstance(got, numbers.Integral) and not isinstance(got, bool) and got == expected:
            continue
        hint = _size_hint(got, n, f, p, s)
        _integer(got, what, expected, f"{why}; {hint}" if hint != _SIZE_HINT and strict else why)  # strict: a why without floor

    misfits = [  # strict: the stride does not fit
        (7, 3, 0, 3, "(7 - 3)/3 + 1 = 2.33"),
        (224, 11, 0, 4, "(224 - 11)/4 + 1 = 54.25"),
        (256, 3, 1, 2, "(256 + 2·1 - 3)/2 + 1 = 128.5"),
        (10, 4, 1, 3, "(10 + 2·1 - 4)/3 + 1 = 3.67"),
    ]
    for n, f, p, s, why in misfits:
        what = f"conv_output_size({n}, {f}, p={p}, s={s})"
        hint = _("{why} is not a whole number: with strict=True, raise ValueError (the stride does not fit)").format(why=why)
        try:
            got = conv_output_size(n, f, p=p, s=s)
        except ValueError:
            continue
        except NotImplementedError:
            raise
        except Exception as err:  # noqa: BLE001 — any other error is the wrong one
            try:
                fail(what, "ValueError", error_line(err), _("raise ValueError(...): {why}").format(why=why))
            except AssertionError as failure:
                raise failure from err
        fail(what, "ValueError", repr(got), hint)


# --- conv2d -------------------------------------------------------------------------------------

def _conv_by_hand() -> str:
    return _("slide the window yourself (loops over output positions, or unfold + matmul); "
             "F.conv2d / nn.Conv2d are what you are rebuilding")


def _conv_case(g: torch.Generator, N: int, C: int, H: int, W: int, O: int, kh: int, kw: int, bias: bool):
    x = torch.randn(N, C, H, W, generator=g)
    w = torch.randn(O, C, kh, kw, generator=g)
    b = torch.randn(O, generator=g) if bias else None
    return x, w, b


def _seed_image_and_filter() -> tuple[torch.Tensor, torch.Tensor]:
    """Seed 001's 5×5 image and 3×3 filter, as [1, 1, H, W] tensors."""
    image = torch.tensor([[1, 1, 1, 0, 0],
                          [0, 1, 1, 1, 0],
                          [0, 0, 1, 1, 1],
                          [0, 0, 1, 1, 0],
                          [0, 1, 1, 0, 0]], dtype=torch.float32).view(1, 1, 5, 5)
    kernel = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=torch.float32).view(1, 1, 3, 3)
    return image, kernel


def conv2d(conv2d: Callable) -> None:
    """Against F.conv2d within 1e-5: the seed 001 feature map (4 3 4 / 2 4 3 / 2 3 4), batched
    multi-channel input with and without bias, stride and padding, a non-square kernel, and a
    stride that does not fit (floored); by hand (no torch convolution op)."""
    g = drawn(11)
    image, kernel = _seed_image_and_filter()
    cases = [  # what, x, w, b, stride, padding, call keywords
        (_("conv2d(the lecture's 5×5 image, its 3×3 filter)"), image, kernel, None, 1, 0, {}),
        ("conv2d(x [2, 3, 7, 7], w [4, 3, 3, 3], b [4])", *_conv_case(g, 2, 3, 7, 7, 4, 3, 3, True), 1, 0, {"b": True}),
        ("conv2d(x [2, 2, 7, 7], w [3, 2, 3, 3], stride=3)", *_conv_case(g, 2, 2, 7, 7, 3, 3, 3, False), 3, 0, {"stride": True}),
        ("conv2d(x [2, 3, 9, 8], w [5, 3, 3, 2], b [5], stride=2, padding=1)", *_conv_case(g, 2, 3, 9, 8, 5, 3, 2, True), 2, 1,
         {"b": True, "stride": True, "padding": True}),
        ("conv2d(x [1, 3, 6, 10], w [2, 3, 5, 5], padding=2)", *_conv_case(g, 1, 3, 6, 10, 2, 5, 5, False), 1, 2, {"padding": True}),
    ]
    for what, x, w, b, stride, padding, keys in cases:
        N, C, H, W = x.shape
        O, _C, kh, kw = w.shape
        kwargs = {k: v for k, v in (("b", b), ("stride", stride), ("padding", padding)) if keys.get(k)}
        given = x.clone()  # the student's copy: x itself stays as it was, for the expectations
        shapes = _("x is [N, C, H, W], w is [O, C, kh, kw]")
        if padding:
            shapes += ngettext("; padded with {n} zero on every side, x is [N, C, H + 2*padding, W + 2*padding]",
                               "; padded with {n} zeros on every side, x is [N, C, H + 2*padding, W + 2*padding]",
                               padding).format(n=padding)
        out = _call(conv2d, what, given, w.clone(), hint=shapes, by_hand=_conv_by_hand(), **kwargs)
        expected = F.conv2d(x, w, b, stride=stride, padding=padding)

        def size(n: int, k: int, before: int = padding, after: int = padding, s: int = stride) -> int:
            return (n + before + after - k) // s + 1

        zeros = ngettext("{n} zero", "{n} zeros", padding).format(n=padding)
        shape_hints: dict[tuple, str] = {}
        for shape, text in (  # the first hint of a shape wins
            ((N, O, size(H, kh, 0, 0), size(W, kw, 0, 0)), _("pad {zeros} on every side first: H + 2*padding").format(zeros=zeros)),
            ((N, O, size(H, kh, padding, 0), size(W, kw, padding, 0)),
             _("pad {zeros} on every side (top and bottom, left and right): H + 2*padding").format(zeros=zeros)),
            ((N, O, size(H, kh, s=1), size(W, kw, s=1)),
             _("move the window {stride} pixels at a time: H_out = (H + 2*padding - kh) // stride + 1").format(stride=stride)),
            ((N, O, C, *expected.shape[2:]), _("each filter sums over all C input channels: out is [N, O, H_out, W_out]")),
            ((N, O, size(H, kw), size(W, kh)), _("w is [O, C, kh, kw]: kh runs along H, kw along W")),
        ):
            shape_hints.setdefault(shape, text)
        value_hints = [(F.conv2d(x, w, None, stride=stride, padding=padding),
                        _("add the bias: b[o] to every value of output channel o"))] if b is not None else []
        if b is not None:
            value_hints.append((F.conv2d(x, w, None, stride=stride, padding=padding) + b.sum(),
                                _("add b[o] to output channel o only (b.view(1, O, 1, 1)), not every bias to every channel")))
        value_hints.append((F.conv2d(x, w.flip(-2, -1), b, stride=stride, padding=padding),
                            _("F.conv2d does not flip the kernel: out[i, j] = sum of x[i*stride + u, j*stride + v] * w[u, v]")))
        if kh == kw:
            value_hints.append((F.conv2d(x, w.transpose(-2, -1), b, stride=stride, padding=padding),
                                _("w is [O, C, kh, kw]: kh runs along H, so w[o, c, u, v] meets x[n, c, i*stride + u, j*stride + v]")))
        if padding:
            one_side = _("pad {zeros} on each side, not {twice} on one side").format(zeros=zeros, twice=2 * padding)
            value_hints.append((F.conv2d(F.pad(x, (2 * padding, 0, 2 * padding, 0)), w, b, stride=stride), one_side))
            value_hints.append((F.conv2d(F.pad(x, (0, 2 * padding, 0, 2 * padding)), w, b, stride=stride), one_side))
        hint = _("out[n, o, i, j] = sum over c, u, v of xp[n, c, i*stride + u, j*stride + v] * w[o, c, u, v] + b[o]")
        _compare(out, expected, what, shape_hints, value_hints, hint)
        expect(bool(torch.equal(given, x)), _("{what}: x after the call").format(what=what), _("unchanged"), _("modified"),
               _("pad a copy (F.pad returns a new tensor); do not write into x"))


# --- pooling ------------------------------------------------------------------------------------

def _pool_by_hand(op: str, module: str) -> str:
    return _("take the windows yourself (loops, or x.unfold(2, k, s).unfold(3, k, s)); "
             "F.{op} / nn.{module} are what you are rebuilding").format(op=op, module=module)


def _pool_cases(g: torch.Generator) -> list[tuple[str, torch.Tensor, int, int | None]]:
    """(what, x, k, s): the 4×4 picture, side-by-side windows, a floored size, overlapping windows.
    The random values are mostly negative: a maximum that starts from 0 shows."""
    return [
        ("{op}(arange(16).view(1, 1, 4, 4), 2)", torch.arange(16.0).view(1, 1, 4, 4), 2, None),
        ("{op}(x [2, 3, 8, 8], 2)", torch.randn(2, 3, 8, 8, generator=g) - 2.0, 2, None),
        ("{op}(x [2, 3, 7, 9], 2)", torch.randn(2, 3, 7, 9, generator=g) - 2.0, 2, None),
        ("{op}(x [1, 4, 7, 7], 3, 2)", torch.randn(1, 4, 7, 7, generator=g) - 2.0, 3, 2),
        ("{op}(x [2, 2, 6, 10], 3)", torch.randn(2, 2, 6, 10, generator=g) - 2.0, 3, None),
        ("{op}(x [1, 2, 9, 9], 2, 1)", torch.randn(1, 2, 9, 9, generator=g) - 2.0, 2, 1),
    ]


def _pool_shape_hints(x: torch.Tensor, k: int, s: int | None, expected: torch.Tensor) -> dict[tuple, str]:
    N, C, H, W = x.shape
    step = k if s is None else s
    hints = {
        (N, C, H // k, W // k): _("H_out = (H - k) // s + 1 with s = {step}").format(step=step),
        (N, *expected.shape[2:]): _("pool each channel on its own: the output keeps all C channels"),
        (N, 1, *expected.shape[2:]): _("pool each channel on its own: the output keeps all C channels"),
        (N, C, -(-(H - k) // step) + 1, -(-(W - k) // step) + 1): _("floor, as PyTorch: drop a window that would fall off the edge"),
    }
    if s is None:
        hints[(N, C, H - k + 1, W - k + 1)] = _("s=None means s=k: the windows sit side by side; stride 1 makes them overlap")
    else:
        hints[(N, C, H - k + 1, W - k + 1)] = _("use the stride s = {s} you are given, not 1").format(s=s)
        hints[(N, C, (H - k) // k + 1, (W - k) // k + 1)] = _("use the stride s = {s} you are given, not k").format(s=s)
    hints.pop(tuple(expected.shape), None)
    return hints


def _pool_check(fn: Callable, op: str, module: str, mean: bool) -> None:
    g = drawn(13 if mean else 12)
    theirs = F.avg_pool2d if mean else F.max_pool2d
    other = F.max_pool2d if mean else F.avg_pool2d
    for what, x, k, s in _pool_cases(g):
        what = what.format(op=op)
        given = x.clone()  # the student's copy: x itself stays as it was, for the expectations
        args = (x, k) if s is None else (x, k, s)
        out = _call(fn, what, given, *args[1:], hint=_("x is [N, C, H, W]; k the window size; s the stride (None: s = k)"),
                    by_hand=_pool_by_hand(op, module))
        expected = theirs(*args)
        step = k if s is None else s
        if mean:
            value_hints = [
                (expected * k * k, _("divide the window's sum by its k*k = {kk} values").format(kk=k * k)),
                (expected * k, _("divide by the k*k = {kk} values of the window, not by k = {k}").format(kk=k * k, k=k)),
                (other(*args), _("the average, not the maximum")),
            ]
            hint = _("the mean of the k*k values of each window, channel by channel")
        else:
            value_hints = [
                (theirs(x, k, step).clamp_min(0.0), _("start the maximum from the window's own values, not from 0")),
                (other(*args), _("the maximum of each window, not the average")),
            ]
            hint = _("the largest of the k*k values of each window, channel by channel")
        _compare(out, expected, what, _pool_shape_hints(x, k, s, expected), value_hints, hint, atol=1e-6)
        expect(bool(torch.equal(given, x)), _("{what}: x after the call").format(what=what), _("unchanged"), _("modified"),
               _("return a new tensor; do not write into x"))


def max_pool2d(max_pool2d: Callable) -> None:
    """Against F.max_pool2d: arange(16) 4×4 with k=2 → (5 7 / 13 15), s=None meaning s=k, a floored
    size, overlapping windows (k=3, s=2), negative values, channels kept; by hand."""
    _pool_check(max_pool2d, "max_pool2d", "MaxPool2d", mean=False)


def avg_pool2d(avg_pool2d: Callable) -> None:
    """Against F.avg_pool2d: arange(16) 4×4 with k=2 → (2.5 4.5 / 10.5 12.5), s=None meaning s=k, a
    floored size, overlapping windows (k=3, s=2), channels kept; by hand."""
    _pool_check(avg_pool2d, "avg_pool2d", "AvgPool2d", mean=True)


# --- conv_params and conv_macs ------------------------------------------------------------------


def conv_params(conv_params: Callable) -> None:
    """c_out·(c_in·k·k + 1): seed 002's 3 → 64 channels 3×3 (1,792: 28 per filter) and 64 → 128
    5×5 (204,928: 1601 per filter), LeNet's convolutions, and random cases, as Python ints."""
    cases = [(3, 64, 3, _("the lecture: 64 filters of 3·3·3 weights + 1 bias = 28 each")),
             (64, 128, 5, _("the lecture: 128 filters of 5·5·64 weights + 1 bias = 1601 each")),
             (1, 6, 5, _("LeNet's conv1: 6 filters of 1·5·5 + 1")),
             (6, 16, 5, _("LeNet's conv2: 16 filters of 6·5·5 + 1"))]
    g = drawn(14)
    for _case in range(4):
        c_in, c_out, k = (int(torch.randint(lo, hi, (1,), generator=g)) for lo, hi in ((1, 65), (1, 129), (1, 8)))
        cases.append((c_in, c_out, k, _("c_out filters of c_in·k·k weights and 1 bias each")))
    for c_in, c_out, k, why in cases:
        what = f"conv_params(c_in={c_in}, c_out={c_out}, k={k})"
        got = _call(conv_params, what, c_in, c_out, k)
        expected = c_out * (c_in * k * k + 1)
        hint = f"{why}: c_out·(c_in·k·k + 1)"
        if got == c_out * c_in * k * k:
            hint = _("each filter has one bias too: c_out·(c_in·k·k + 1) = {c_out}·({weights} + 1)").format(
                c_out=c_out, weights=c_in * k * k)
        elif got == c_out * c_in * k * k + 1:
            hint = _("one bias per filter (c_out of them), not one per layer")
        elif got == c_out * (k * k + 1) and c_in > 1:
            hint = _("a filter spans all c_in = {c_in} input channels: c_in·k·k weights each").format(c_in=c_in)
        elif got == c_in * k * k + 1 and c_out > 1:
            hint = _("that is one filter: there are c_out = {c_out} of them").format(c_out=c_out)
        _integer(got, what, expected, hint)


def conv_macs(conv_macs: Callable) -> None:
    """c_out·h_out·w_out·c_in·k·k, the bias not counted: seed 002's 28,311,552 (64 filters 3×3 on
    3 channels → 128×128×64) and 838,860,800 (128 filters 5×5 on 64 channels → 64×64×128), LeNet's
    conv1 and random cases, as Python ints."""
    cases = [(3, 64, 3, 128, 128, _("the lecture: 128·128·64 output values, 3·3·3 = 27 multiplications each")),
             (64, 128, 5, 64, 64, _("the lecture: 64·64·128 output values, 5·5·64 = 1600 multiplications each")),
             (1, 6, 5, 28, 28, _("LeNet's conv1: 6·28·28 output values, 25 multiplications each"))]
    g = drawn(15)
    for _case in range(4):
        c_in, c_out, k, h, w = (int(torch.randint(lo, hi, (1,), generator=g)) for lo, hi in ((1, 65), (1, 129), (1, 8), (1, 57), (1, 57)))
        cases.append((c_in, c_out, k, h, w, _("c_out·h_out·w_out output values, c_in·k·k multiplications each")))
    for c_in, c_out, k, h, w, why in cases:
        what = f"conv_macs(c_in={c_in}, c_out={c_out}, k={k}, h_out={h}, w_out={w})"
        got = _call(conv_macs, what, c_in, c_out, k, h, w)
        expected = c_out * h * w * c_in * k * k
        hint = f"{why}: c_out·h_out·w_out·c_in·k·k"
        if got == c_out * h * w * (c_in * k * k + 1):
            hint = _("the bias is an addition, not a multiply-accumulate: count c_in·k·k = {macs} "
                     "per output value, not {more}").format(macs=c_in * k * k, more=c_in * k * k + 1)
        elif got == c_out * h * w * k * k and c_in > 1:
            hint = _("every output value sums over all c_in = {c_in} input channels: c_in·k·k multiplications").format(c_in=c_in)
        elif got == h * w * c_in * k * k and c_out > 1:
            hint = _("each of the c_out = {c_out} filters makes its own h_out·w_out map").format(c_out=c_out)
        _integer(got, what, expected, hint)


# --- conv2d_backward ----------------------------------------------------------------------------

def _backward_by_hand() -> str:
    return _("compute the gradients yourself: visit the positions the window visited and add up what each "
             "one gives; autograd, F.conv2d, F.conv_transpose2d and torch.nn.grad are what you are rebuilding")


def _backward_oracle(x: torch.Tensor, w: torch.Tensor, grad_out: torch.Tensor, stride: int, padding: int):
    """(dL/dx, dL/dw, dL/db) through F.conv2d and autograd, in float64."""
    x, w = (t.detach().to(torch.float64).requires_grad_(True) for t in (x, w))
    b = torch.zeros(w.shape[0], dtype=torch.float64, requires_grad=True)
    F.conv2d(x, w, b, stride=stride, padding=padding).backward(grad_out.to(torch.float64))
    return x.grad, w.grad, b.grad


def _windows(x: torch.Tensor, w: torch.Tensor, grad_out: torch.Tensor, stride: int, padding: int):
    """(i, j, the padded input's window at output position (i, j), grad_out there) for every
    position, in float64: what the usual slips are computed from."""
    xp = F.pad(x.to(torch.float64), (padding,) * 4)
    kh, kw = w.shape[2:]
    for i in range(grad_out.shape[2]):
        for j in range(grad_out.shape[3]):
            yield i, j, xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw], grad_out[:, :, i, j].to(torch.float64)


def _backward_slips(x, w, grad_out, stride, padding) -> dict[str, torch.Tensor]:
    """The gradients a usual slip gives: the weight gradient of the last position only (`=` for
    `+=`), the input gradient of overlapping windows assigned instead of added."""
    w64 = w.to(torch.float64)
    H, W = x.shape[2:]
    kh, kw = w.shape[2:]
    last_w = torch.zeros_like(w64)
    assigned = torch.zeros(x.shape[0], x.shape[1], H + 2 * padding, W + 2 * padding, dtype=torch.float64)
    for i, j, window, g in _windows(x, w, grad_out, stride, padding):
        last_w = (g[:, :, None, None, None] * window[:, None]).sum(dim=0)
        r, c = i * stride, j * stride
        assigned[:, :, r:r + kh, c:c + kw] = (g[:, :, None, None, None] * w64).sum(dim=1)
    return {"last_w": last_w, "assigned_x": assigned[:, :, padding:padding + H, padding:padding + W]}


def conv2d_backward(conv2d_backward: Callable) -> None:
    """(grad_x, grad_w, grad_b) against autograd through F.conv2d: the seed 001 feature map with every
    output gradient 1 (grad_w 6 7 6 / 4 7 7 / 4 6 6, grad_b 9), batched multi-channel input, stride,
    padding, a non-square kernel and a stride that does not fit; by hand (no autograd, no torch
    convolution op), its inputs left unchanged."""
    g = drawn(16)
    image, kernel = _seed_image_and_filter()

    def case(N, C, H, W, O, kh, kw, stride, padding):
        x, w, _b = _conv_case(g, N, C, H, W, O, kh, kw, False)
        H_out, W_out = (H + 2 * padding - kh) // stride + 1, (W + 2 * padding - kw) // stride + 1
        return x, w, torch.randn(N, O, H_out, W_out, generator=g), stride, padding

    cases = [  # what, x, w, grad_out, stride, padding
        (_("conv2d_backward(the lecture's 5×5 image, its 3×3 filter, grad_out = ones(1, 1, 3, 3))"),
         image, kernel, torch.ones(1, 1, 3, 3), 1, 0),
        ("conv2d_backward(x [2, 3, 7, 7], w [4, 3, 3, 3], grad_out [2, 4, 5, 5])", *case(2, 3, 7, 7, 4, 3, 3, 1, 0)),
        ("conv2d_backward(x [2, 2, 7, 7], w [3, 2, 3, 3], grad_out [2, 3, 2, 2], stride=3)", *case(2, 2, 7, 7, 3, 3, 3, 3, 0)),
        ("conv2d_backward(x [2, 3, 9, 8], w [5, 3, 3, 2], grad_out [2, 5, 5, 5], stride=2, padding=1)",
         *case(2, 3, 9, 8, 5, 3, 2, 2, 1)),
        ("conv2d_backward(x [1, 3, 6, 10], w [2, 3, 5, 5], grad_out [1, 2, 6, 10], padding=2)", *case(1, 3, 6, 10, 2, 5, 5, 1, 2)),
    ]
    for what, x, w, grad_out, stride, padding in cases:
        N, C, H, W = x.shape
        O, _C, kh, kw = w.shape
        H_out, W_out = grad_out.shape[2:]
        kwargs = {k: v for k, v in (("stride", stride), ("padding", padding)) if v != (1 if k == "stride" else 0)}
        given = [t.clone() for t in (x, w, grad_out)]  # the student's copies: ours stay as they were
        out = _call(conv2d_backward, what, *given,
                    hint=_("x is [N, C, H, W], w is [O, C, kh, kw], grad_out is [N, O, H_out, W_out]"),
                    by_hand=_backward_by_hand(), no_autograd=True, **kwargs)
        if not (isinstance(out, (tuple, list)) and len(out) == 3):
            fail(what, _("(grad_x, grad_w, grad_b): three tensors"),
                 _("{kind} of {n}").format(kind=type(out).__name__, n=len(out)) if isinstance(out, (tuple, list))
                 else type(out).__name__,
                 _("return the three gradients as a tuple, (grad_x, grad_w, grad_b)"))
        grad_x, grad_w, grad_b = out
        exp_x, exp_w, exp_b = _backward_oracle(x, w, grad_out, stride, padding)
        slips = _backward_slips(x, w, grad_out, stride, padding)
        positions = H_out * W_out
        go = grad_out.to(torch.float64)
        _compare(grad_w, exp_w, f"{what}: grad_w", {
            (N, O, C, kh, kw): _("sum over the batch as well: grad_w has w's shape [O, C, kh, kw]"),
            (C, O, kh, kw): _("grad_w has w's shape [O, C, kh, kw]"),
        }, [
            (slips["last_w"], _("weight sharing: the same w is used at all {positions} positions, so its gradient is the sum "
                                "of every position's contribution (+=), not the last one's").format(positions=positions)),
            (exp_w / positions, _("add up the contributions of the {positions} positions; do not average them").format(
                positions=positions)),
            (exp_w / N, _("sum over the batch, do not average: grad_out already holds whatever mean the loss took")),
            (exp_w.flip(-2, -1), _("no flip: w[o, c, u, v] met xp[n, c, i*stride + u, j*stride + v], so that pixel times "
                                   "grad_out[n, o, i, j] goes to grad_w[o, c, u, v]")),
        ], _("grad_w[o, c, u, v] = sum over n, i, j of grad_out[n, o, i, j] * xp[n, c, i*stride + u, j*stride + v]"),
            atol=1e-4, grid=w.numel() <= 9)
        _compare(grad_b, exp_b, f"{what}: grad_b", {
            (O, H_out, W_out): _("sum over every position as well: grad_b has b's shape [O]"),
            (N, O): _("sum over the batch as well: grad_b has b's shape [O]"),
            (N, O, H_out, W_out): _("b[o] is added at every position of every image: sum grad_out over N, H_out and W_out"),
        }, [
            (go.mean(dim=(0, 2, 3)), _("b[o] is added at every position of every image: sum grad_out over them, do not average")),
            (go.sum(dim=(2, 3))[0], _("sum over the batch as well")),
        ], _("grad_b[o] = sum over n, i, j of grad_out[n, o, i, j]"), atol=1e-4)
        _compare(grad_x, exp_x, f"{what}: grad_x", {
            (N, C, H + 2 * padding, W + 2 * padding): _("crop the padding: grad_x has x's shape [N, C, H, W] (the {padding} "
                                                        "zero rows and columns added on each side are not x)").format(
                                                          padding=padding),
            (N, O, H, W): _("grad_x has x's shape [N, C, H, W]: sum over the O filters"),
        }, [
            (slips["assigned_x"], _("windows overlap: a pixel read by several windows gets the sum of what each one gives "
                                    "(+=, not =)")),
            (_backward_oracle(x, w.flip(-2, -1), grad_out, stride, padding)[0],
             _("the pixel at (i*stride + u, j*stride + v) met w[o, c, u, v]: as one convolution of grad_out that is the "
               "kernel flipped, and by hand no flip at all")),
            (F.pad(_backward_oracle(x, w, grad_out, stride, padding)[0], (padding, -padding) * 2) if padding else exp_x,
             ngettext("crop {n} padded row and column from each side", "crop {n} padded rows and columns from each side",
                      padding).format(n=padding)),
        ], _("grad_x[n, c, p, q] = sum of grad_out[n, o, i, j] * w[o, c, u, v] over the windows (i, j) that read the pixel "
             "(p, q) at (u, v)"), atol=1e-4, grid=x.numel() <= 25)
        for name, before, after in zip(("x", "w", "grad_out"), (x, w, grad_out), given):
            expect(bool(torch.equal(after, before)), _("{what}: {name} after the call").format(what=what, name=name),
                   _("unchanged"), _("modified"),
                   _("work on new tensors (torch.zeros_like, F.pad); do not write into the arguments"))
