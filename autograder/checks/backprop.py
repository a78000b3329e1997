"""Checks of lab 03, Backpropagation by hand (course.yml: lab `backprop`).

Each public function takes the student's function and raises AssertionError (expected / got /
hint). Expectations come from the seed's numbers and from torch autograd, never from `reference`.
Random inputs use a private torch.Generator, so a check leaves the student's RNG state alone.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch.nn import functional as F

from autograder.checks import expect, expect_close, expect_shape, fail, fmt, rel_error

__all__ = [
    "worked_example",
    "sgd_step",
    "mlp_forward",
    "mlp_backward",
    "rel_error_check",
    "numerical_gradient",
    "sigmoid_grad",
]


# --- helpers (private) --------------------------------------------------------------------------


def _call(fn: Callable, what: str, *args: Any, hint: str = "", **kwargs: Any) -> Any:
    """fn(*args): an unfilled cell's NotImplementedError propagates unchanged; any other error
    from the student's code becomes a one-line failure (the original stays chained)."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as err:  # noqa: BLE001 — the student's code may raise anything
        first = (str(err).strip().splitlines() or [""])[0][:200]
        try:
            fail(what, "a result", f"{type(err).__name__}: {first}", hint)
        except AssertionError as failure:
            raise failure from err


def _is_float(value: Any) -> bool:
    return isinstance(value, float)


def _scale(got: torch.Tensor, expected: torch.Tensor) -> float | None:
    """c when got == c * expected (to 1e-6), else None: tells sign and normalisation bugs apart."""
    g, e = got.detach().to(torch.float64).flatten(), expected.to(torch.float64).flatten()
    denom = float(e @ e)
    if denom == 0.0 or not torch.isfinite(g).all():
        return None
    c = float(g @ e) / denom
    return c if rel_error(g, c * e) < 1e-6 else None


def _where(got: torch.Tensor, expected: torch.Tensor) -> tuple[str, str]:
    """(expected, got) strings for a message: whole tensors when small, else the worst element."""
    g, e = got.detach().to(torch.float64), expected.to(torch.float64)
    if e.numel() <= 8:
        return fmt(e), fmt(g)
    err = (g - e).abs() / (g.abs() + e.abs()).clamp_min(1e-8)
    flat = int(err.flatten().argmax())
    idx = list(torch.unravel_index(torch.tensor(flat), e.shape))
    at = "[" + ", ".join(str(int(i)) for i in idx) + "]"
    return f"{float(e.flatten()[flat]):.6g} at {at}", f"{float(g.flatten()[flat]):.6g}"


def _mlp_case(N: int, D: int, H: int, O: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    y = torch.randn(N, O, generator=g, dtype=torch.float64)
    params = {
        "W1": torch.randn(H, D, generator=g, dtype=torch.float64),
        "b1": torch.randn(H, generator=g, dtype=torch.float64),
        "W2": torch.randn(O, H, generator=g, dtype=torch.float64),
        "b2": torch.randn(O, generator=g, dtype=torch.float64),
    }
    return x, y, params


def _forward(x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    return F.linear(torch.sigmoid(F.linear(x, params["W1"], params["b1"])), params["W2"], params["b2"])


# --- worked_example -----------------------------------------------------------------------------

_FLOATS = ("pred", "error", "new_pred", "new_error")
_KEYS = ("pred", "error", "grads", "new_w", "new_pred", "new_error")


def _seed_numbers(lr: float) -> dict[str, Any]:
    i, w, tar = torch.tensor([0.3, 0.7], dtype=torch.float64), torch.tensor([0.6, 0.9], dtype=torch.float64), 1.5
    new_w = w + lr * i  # w - lr * (-i)
    return {
        "pred": 0.81,
        "error": 0.69,
        "grads": -i,
        "new_w": new_w,
        "new_pred": float(i @ new_w),
        "new_error": tar - float(i @ new_w),
    }


_WORKED_HINTS = {
    "pred": "pred = i1*w1 + i2*w2 = 0.3*0.6 + 0.7*0.9",
    "error": "the seed's error is tar - pred = 1.5 - pred",
    "grads": "error = tar - i1*w1 - i2*w2, so d(error)/dw_k = -i_k",
    "new_w": "the SGD rule: w_up = w_past - lr * grad (the grad is negative, so w grows)",
    "new_pred": "recompute the prediction with new_w: i1*new_w1 + i2*new_w2",
    "new_error": "recompute the error with the new prediction: tar - new_pred",
}


def worked_example(fn: Callable[..., dict]) -> None:
    """The seed's numbers 0.81, 0.69, (-0.3, -0.7), (0.603, 0.907), 0.8158, 0.6842, and lr honoured."""
    for lr, call in ((0.01, "worked_example()"), (0.1, "worked_example(lr=0.1)")):
        r = _call(fn, call) if lr == 0.01 else _call(fn, call, lr=0.1)
        expect(isinstance(r, dict), call, "a dict with keys " + ", ".join(_KEYS), type(r).__name__, "return a dict")
        missing = [k for k in _KEYS if k not in r]
        expect(not missing, f"{call} keys", ", ".join(_KEYS), ", ".join(map(str, r)), f"add {', '.join(missing)}")
        expected = _seed_numbers(lr)
        for key in _KEYS:
            what = f"{call}['{key}']"
            value, exp = r[key], expected[key]
            if key in _FLOATS:
                expect(
                    _is_float(value), what, "a Python float", type(value).__name__,
                    "convert a 0-d tensor with float(t) or t.item()",
                )
            else:
                expect_shape(value, (2,), what, "a tensor of the two weights' values")
            hint = _WORKED_HINTS[key]
            if key == "error" and _is_float(value) and abs(value + 0.69) < 1e-4:
                hint = "the sign: the seed's error is tar - pred, not pred - tar"
            if key == "new_w" and lr != 0.01 and rel_error(value, _seed_numbers(0.01)["new_w"]) < 1e-5:
                hint = "use the lr argument, not a fixed 0.01"
            if key == "new_w" and isinstance(value, torch.Tensor) and rel_error(value, 2 * expected["new_w"] - expected["new_w"] * 0 - (torch.tensor([0.6, 0.9], dtype=torch.float64) * 2 - expected["new_w"]) * 0 - expected["new_w"] + (torch.tensor([0.6, 0.9], dtype=torch.float64) - lr * torch.tensor([0.3, 0.7], dtype=torch.float64)) - expected["new_w"] + expected["new_w"] - expected["new_w"]) < 1e-5:
                hint = "w_up = w_past - lr * grad: subtract lr * grad; with grad = -i that adds lr * i"
            expect_close(value, exp, what, atol=1e-5, rtol=1e-5, hint=hint)
