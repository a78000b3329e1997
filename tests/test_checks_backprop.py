"""The checks of lab 03 (backprop): the reference passes every one, and every one can fail.

Each check runs on the reference function (must pass) and on buggy variants (must raise an
AssertionError that reads `... expected ..., got ... — hint`). The planted bugs of
tests/planted/backprop.py are applied to the reference source here too, function by function,
to prove each fails exactly the checks it declares (the notebook-level run is the grader's test).
"""
from __future__ import annotations

from typing import Callable

import pytest
import torch

import reference.backprop as R
from autograder.checks import backprop as checks
from tests.judging import fails


# --- buggy variants, per check ------------------------------------------------------------------


def worked_error_sign(lr=0.01):
    r = R.worked_example(lr)
    return {**r, "error": -r["error"]}


def worked_adds_the_step(lr=0.01):
    i, w = torch.tensor([0.3, 0.7]), torch.tensor([0.6, 0.9])
    new_w = w + lr * (-i)
    return {**R.worked_example(lr), "new_w": new_w, "new_pred": float(i @ new_w), "new_error": 1.5 - float(i @ new_w)}


def worked_fixed_lr(lr=0.01):
    return R.worked_example(0.01)


def worked_tensors_not_floats(lr=0.01):
    return {k: torch.tensor(v) if isinstance(v, float) else v for k, v in R.worked_example(lr).items()}


def worked_grads_sign(lr=0.01):
    return {**R.worked_example(lr), "grads": torch.tensor([0.3, 0.7])}


def worked_missing_key(lr=0.01):
    r = R.worked_example(lr)
    del r["new_error"]
    return r


def sgd_in_place(params, grads, lr):
    if isinstance(params, torch.Tensor):
        return params.sub_(lr * grads)
    if isinstance(params, dict):
        return {k: sgd_in_place(params[k], grads[k], lr) for k in params}
    return [sgd_in_place(p, g, lr) for p, g in zip(params, grads)]


def sgd_adds(params, grads, lr):
    if isinstance(params, torch.Tensor):
        return params + lr * grads
    if isinstance(params, dict):
        return {k: sgd_adds(params[k], grads[k], lr) for k in params}
    return [sgd_adds(p, g, lr) for p, g in zip(params, grads)]


def sgd_no_lr(params, grads, lr):
    if isinstance(params, torch.Tensor):
        return params - grads
    if isinstance(params, dict):
        return {k: sgd_no_lr(params[k], grads[k], lr) for k in params}
    return [sgd_no_lr(p, g, lr) for p, g in zip(params, grads)]


def sgd_dict_as_list(params, grads, lr):
    if isinstance(params, torch.Tensor):
        return params - lr * grads
    if isinstance(params, dict):
        return [params[k] - lr * grads[k] for k in params]
    return [p - lr * g for p, g in zip(params, grads)]


def forward_no_sigmoid(x, params):
    return (x @ params["W1"].T + params["b1"]) @ params["W2"].T + params["b2"]


def forward_not_transposed(x, params):
    return torch.sigmoid(x @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]


def forward_sigmoid_on_output(x, params):
    return torch.sigmoid(R.mlp_forward(x, params))


def forward_no_bias(x, params):
    return torch.sigmoid(x @ params["W1"].T) @ params["W2"].T


def _backward(x, y, params, sign=1.0, denom=None, sig=True, transpose=False):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    h = torch.sigmoid(x @ W1.T + b1)
    out = h @ W2.T + b2
    d_out = sign * 2 * (out - y) / (out.numel() if denom is None else denom(out))
    d_z = (d_out @ W2) * (h * (1 - h) if sig else h)
    g = {"W1": d_z.T @ x, "b1": d_z.sum(0), "W2": d_out.T @ h, "b2": d_out.sum(0)}
    if transpose:
        g["W2"] = h.T @ d_out
    return g


def backward_sign(x, y, params):
    return _backward(x, y, params, sign=-1.0)


def backward_mean_over_n(x, y, params):
    return _backward(x, y, params, denom=lambda out: out.shape[0])


def backward_no_factor_2(x, y, params):
    return _backward(x, y, params, sign=0.5)


def backward_sigmoid_derivative(x, y, params):
    return _backward(x, y, params, sig=False)


def backward_transposed(x, y, params):
    return _backward(x, y, params, transpose=True)


def backward_autograd(x, y, params):
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    loss = ((R.mlp_forward(x, leaves) - y) ** 2).mean()
    return dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))


def backward_enable_grad(x, y, params):
    """Red team: the check's no_grad() undone, and the check's own forward."""
    from autograder.checks.backprop import _mlp
    with torch.enable_grad():
        leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
        loss = ((_mlp(x, leaves) - y) ** 2).mean()
        return dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))


def forward_checks_helper(x, params):
    """Red team: the check's own correct forward, shipped with the checks."""
    from autograder.checks.backprop import _mlp
    return _mlp(x, params)


def backward_missing_bias(x, y, params):
    g = R.mlp_backward(x, y, params)
    del g["b1"]
    return g


def rel_no_floor(a, b):
    return float(((a - b).abs() / (a.abs() + b.abs())).max())


def rel_mean(a, b):
    return float(((a - b).abs() / (a.abs() + b.abs()).clamp(min=1e-8)).mean())


def rel_tensor(a, b):
    return ((a - b).abs() / (a.abs() + b.abs()).clamp(min=1e-8)).max()


def rel_no_abs(a, b):
    return float(((a - b).abs() / (a + b).abs().clamp(min=1e-8)).max())


def numgrad_one_sided(f, x, h=1e-5):
    grad, flat = torch.zeros_like(x), x.view(-1)
    for k in range(flat.numel()):
        old = flat[k].item()
        f0 = float(f(x))
        flat[k] = old + h
        grad.view(-1)[k] = (float(f(x)) - f0) / h
        flat[k] = old
    return grad


def numgrad_forgets_2(f, x, h=1e-5):
    return 2 * R.numerical_gradient(f, x, h)


def numgrad_no_restore(f, x, h=1e-5):
    grad, flat = torch.zeros_like(x), x.view(-1)
    for k in range(flat.numel()):
        old = flat[k].item()
        flat[k] = old + h
        fp = float(f(x))
        flat[k] = old - h
        grad.view(-1)[k] = (fp - float(f(x))) / (2 * h)
    return grad


def numgrad_flat(f, x, h=1e-5):
    return R.numerical_gradient(f, x, h).flatten()


def numgrad_ignores_h(f, x, h=1e-5):
    return R.numerical_gradient(f, x, 1e-6)


def sgrad_of_x(x):
    return x * (1 - x)


def sgrad_overflows(x):
    e = torch.exp(-x)
    return e / (1 + e) ** 2


def sgrad_is_sigmoid(x):
    return torch.sigmoid(x)


BUGGY: dict[str, list[Callable]] = {
    "worked_example": [worked_error_sign, worked_adds_the_step, worked_fixed_lr, worked_tensors_not_floats,
                       worked_grads_sign, worked_missing_key],
    "sgd_step": [sgd_in_place, sgd_adds, sgd_no_lr, sgd_dict_as_list],
    "mlp_forward": [forward_no_sigmoid, forward_not_transposed, forward_sigmoid_on_output, forward_no_bias, forward_checks_helper],
    "mlp_backward": [backward_sign, backward_mean_over_n, backward_no_factor_2, backward_sigmoid_derivative,
                     backward_transposed, backward_autograd, backward_missing_bias, backward_enable_grad],
    "rel_error": [rel_no_floor, rel_mean, rel_tensor, rel_no_abs],
    "numerical_gradient": [numgrad_one_sided, numgrad_forgets_2, numgrad_no_restore, numgrad_flat, numgrad_ignores_h],
    "sigmoid_grad": [sgrad_of_x, sgrad_overflows, sgrad_is_sigmoid],
}


@pytest.mark.parametrize(
    "name,buggy", [(name, fn) for name, fns in BUGGY.items() for fn in fns], ids=lambda v: getattr(v, "__name__", v)
)
def test_check_fails_on_buggy_variant(name, buggy):
    message = fails(getattr(checks, name), buggy)


@pytest.mark.parametrize(
    "buggy,words",
    [
        (worked_error_sign, "tar - pred"),
        (worked_adds_the_step, "subtract"),
        (worked_fixed_lr, "lr argument"),
        (worked_tensors_not_floats, "Python float"),
        (sgd_in_place, "in place"),
        (sgd_adds, "against the gradient"),
        (forward_no_sigmoid, "sigmoid between"),
        (forward_not_transposed, "W1.T"),
        (backward_sign, "sign"),
        (backward_mean_over_n, "N*O"),
        (backward_sigmoid_derivative, "h*(1-h)"),
        (backward_transposed, "transpose"),
        (backward_autograd, "by hand"),
        (backward_enable_grad, "got .autograd, .enable_grad, .grad, import autograder.checks.backprop"),
        (forward_checks_helper, "got import autograder.checks.backprop"),
        (rel_no_floor, "1e-8"),
        (rel_mean, "maximum"),
        (numgrad_one_sided, "centred"),
        (numgrad_forgets_2, "2 * h"),
        (numgrad_no_restore, "nudged"),
        (sgrad_of_x, "not to x"),
        (sgrad_overflows, "overflows"),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_failure_hints_name_the_bug(buggy, words):
    name = next(n for n, fns in BUGGY.items() if buggy in fns)
    message = fails(getattr(checks, name), buggy)
    assert words in message, message


def test_a_student_error_is_one_clear_line_with_the_original_chained():
    with pytest.raises(AssertionError) as info:
        checks.mlp_forward(forward_not_transposed)
    assert "RuntimeError" in str(info.value) and isinstance(info.value.__cause__, RuntimeError)


# --- planted bugs, applied to the reference source ----------------------------------------------

