"""The checks of lab 02 (forward): the reference passes every one, and every one can fail.

Each check runs on the reference function (must pass) and on buggy variants (must raise an
AssertionError that reads `... expected ..., got ... — hint`). The planted bugs of
tests/planted/forward.py are applied to the reference source here too, function by function,
to prove each fails exactly the checks it declares (the notebook-level run is the grader's test).
"""
from __future__ import annotations

import inspect
import textwrap
from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import reference.forward as R
from autograder.checks import forward as checks
from tests.judging import fails, passes


def _notebook_function(src: str, **globals_) -> Callable:
    """A function defined as in a notebook cell: its globals are the notebook's (module __main__)."""
    namespace = {"__name__": "__main__", "torch": torch, "np": np, "nn": nn, "F": F, **globals_}
    exec(compile(textwrap.dedent(src), "<cell>", "exec"), namespace)  # noqa: S102
    return [v for k, v in namespace.items() if inspect.isfunction(v) and v.__module__ == "__main__"][-1]


# --- buggy variants, per check ------------------------------------------------------------------


def linear_not_transposed(x, W, b):
    return x @ W + b


def linear_no_bias(x, W, b):
    return x @ W.T


def linear_minus_bias(x, W, b):
    return x @ W.T - b


def linear_transposed_output(x, W, b):
    return W @ x.T + b[:, None]


def linear_elementwise(x, W, b):
    return torch.sum(x * W[0], dim=1, keepdim=True) + b[0]


def linear_in_place(x, W, b):
    out = x @ W.T
    b += 0.0 * b + 1.0  # modifies the bias
    return out + b - 1.0


def sigmoid_naive(x):
    return 1 / (1 + torch.exp(-x))


def sigmoid_naive_reversed(x):
    return torch.exp(x) / (1 + torch.exp(x))


def sigmoid_builtin(x):
    return torch.sigmoid(x)


def sigmoid_method(x):
    return x.sigmoid()


sigmoid_is_torch = torch.sigmoid

sigmoid_module = nn.Sigmoid()


def sigmoid_abs(x):
    z = torch.exp(-x.abs())
    return torch.where(x >= 0, 1 / (1 + z), z / (1 + z))


def sigmoid_numpy(x):
    return torch.tensor(1 / (1 + np.exp(-x.detach().numpy())))


def sigmoid_wrong_sign(x):
    z = torch.exp(-(x.abs()))
    return torch.where(x >= 0, z / (1 + z), 1 / (1 + z))


def _sig(x):
    """A stable sigmoid, written out (a global of this module, as a student's own would be)."""
    z = torch.exp(torch.where(x >= 0, -x, x))
    return torch.where(x >= 0, 1 / (1 + z), z / (1 + z))


def sigmoid_float64(x):
    return _sig(x.double())


def tanh_naive(x):
    return (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x))


def tanh_is_sigmoid(x):
    return _sig(x)


def tanh_builtin(x):
    return torch.tanh(x)


def tanh_half_arg(x):
    return 2 * _sig(x) - 1


def relu_abs(x):
    return x.abs()


def relu_in_place(x):
    x[x < 0] = 0
    return x


def relu_builtin(x):
    return F.relu(x)


# red team: library functions that give an activation in a line
def sigmoid_logsigmoid(x):
    return F.logsigmoid(x).exp()


def tanh_logsigmoid(x):
    return 2 * F.logsigmoid(2 * x).exp() - 1


def tanh_tanhshrink(x):
    return x - F.tanhshrink(x)


def relu_leaky(x):
    return F.leaky_relu(x, 0.0)


def relu_threshold(x):
    return F.threshold(x, 0.0, 0.0)


def relu_step(x):
    return (x > 0).float()


def relu_detached(x):
    return torch.tensor(np.maximum(x.detach().numpy(), 0))


def relu_negative_part(x):
    return torch.where(x < 0, x, torch.zeros_like(x))


def perceptron_ge(x, w, b):
    return torch.where(x @ w + b >= 0, 1.0, -1.0)


def perceptron_sign(x, w, b):
    return torch.sign(x @ w + b)


def perceptron_zero_one(x, w, b):
    return (x @ w + b > 0).float()


def perceptron_flipped(x, w, b):
    return torch.where(x @ w + b > 0, -1.0, 1.0)


def perceptron_column(x, w, b):
    return R.perceptron(x, w, b).unsqueeze(1)


def perceptron_no_bias(x, w, b):
    return torch.where(x @ w > 0, 1.0, -1.0)


BUGGY: dict[str, list] = {
    "linear_forward": [linear_not_transposed, linear_no_bias, linear_minus_bias, linear_transposed_output,
                       linear_elementwise, linear_in_place],
    "sigmoid": [sigmoid_naive, sigmoid_naive_reversed, sigmoid_builtin, sigmoid_method, sigmoid_is_torch,
                sigmoid_module, sigmoid_abs, sigmoid_numpy, sigmoid_wrong_sign, sigmoid_float64, sigmoid_logsigmoid],
    "tanh": [tanh_naive, tanh_is_sigmoid, tanh_builtin, tanh_half_arg, tanh_logsigmoid, tanh_tanhshrink],
    "relu": [relu_abs, relu_in_place, relu_builtin, relu_step, relu_detached, relu_negative_part, relu_leaky,
             relu_threshold],
    "perceptron": [perceptron_ge, perceptron_sign, perceptron_zero_one, perceptron_flipped, perceptron_column,
                   perceptron_no_bias],
}


def _id(v):
    return getattr(v, "__name__", None) or type(v).__name__


@pytest.mark.parametrize("name,buggy", [(name, fn) for name, fns in BUGGY.items() for fn in fns], ids=_id)
def test_check_fails_on_buggy_variant(name, buggy):
    message = fails(getattr(checks, name), buggy)


@pytest.mark.parametrize(
    "buggy,words",
    [
        (linear_not_transposed, "x @ W.T"),
        (linear_no_bias, "add the bias"),
        (linear_no_bias, "expected 0.0314"),
        (linear_minus_bias, "do not subtract"),
        (linear_transposed_output, "one row per sample"),
        (linear_in_place, "unchanged"),
        (sigmoid_naive, "NaN"),
        (sigmoid_naive_reversed, "overflows"),
        (sigmoid_builtin, "no built-in"),
        (sigmoid_method, "no built-in"),
        (sigmoid_is_torch, "a function you wrote"),
        (sigmoid_module, "a function you wrote"),
        (sigmoid_abs, "abs()"),
        (sigmoid_numpy, "autograd"),
        (sigmoid_float64, "dtype"),
        (tanh_naive, "exp(-2|x|)"),
        (tanh_is_sigmoid, "(-1, 1)"),
        (tanh_builtin, "no built-in"),
        (relu_abs, "not -x"),
        (relu_in_place, "do not assign into x"),
        (relu_builtin, "no built-in"),
        (sigmoid_logsigmoid, "got .logsigmoid"),
        (tanh_logsigmoid, "got .logsigmoid"),
        (tanh_tanhshrink, "got .tanhshrink"),
        (relu_leaky, "got .leaky_relu"),
        (relu_threshold, "got .threshold"),
        (relu_step, "the step"),
        (relu_detached, "autograd"),
        (perceptron_ge, "exactly 0 gives -1"),
        (perceptron_sign, "torch.sign"),
        (perceptron_zero_one, "not 1 or 0"),
        (perceptron_flipped, "flipped"),
        (perceptron_column, "flat [N]"),
        (perceptron_no_bias, "add the bias"),
    ],
    ids=_id,
)
def test_failure_hints_name_the_bug(buggy, words):
    name = next(n for n, fns in BUGGY.items() if any(buggy is f for f in fns))
    message = fails(getattr(checks, name), buggy)
    assert words in message, message


def test_a_student_error_is_one_clear_line_with_the_original_chained():
    with pytest.raises(AssertionError) as info:
        checks.linear_forward(linear_not_transposed)
    assert "RuntimeError" in str(info.value) and isinstance(info.value.__cause__, RuntimeError)


# --- the built-in detector: notebook functions, helpers, stable alternatives --------------------


def test_a_torch_sigmoid_hidden_in_a_helper_is_seen_at_run_time():
    helper = _notebook_function("def _squash(x):\n    return torch.sigmoid(x)\n")
    fn = _notebook_function("def sigmoid(x):\n    return _squash(x)\n", _squash=helper)
    with pytest.raises(AssertionError, match="a call to sigmoid"):
        checks.sigmoid(fn)


@pytest.mark.parametrize("builtin", [torch.sigmoid, F.sigmoid, nn.Sigmoid], ids=["torch", "functional", "module"])
def test_an_imported_builtin_is_seen_in_the_code(builtin):
    # `from torch import sigmoid` in the notebook: a global named sigmoid bound to a library object
    fn = _notebook_function("def tanh(x):\n    return 2 * sigmoid(2 * x) - 1\n", sigmoid=builtin)
    with pytest.raises(AssertionError, match=r"no built-in .* got sigmoid \(from torch"):
        checks.tanh(fn)


def test_an_imported_builtin_under_another_name_is_seen_in_the_code():
    """`from torch.nn.functional import relu as r`: the global's object is a library's relu."""
    fn = _notebook_function("def relu(x):\n    return r(x)\n", r=F.relu)
    with pytest.raises(AssertionError, match=r"got r \(from torch"):
        checks.relu(fn)


def test_tanh_may_use_the_students_own_sigmoid():
    # `sigmoid` here is a global bound to a function written in the notebook, not torch's
    own = _notebook_function(inspect.getsource(R.sigmoid))
    fn = _notebook_function("def tanh(x):\n    return 2 * sigmoid(2 * x) - 1\n", sigmoid=own)
    checks.tanh(fn)


@pytest.mark.parametrize(
    "name,src",
    [
        ("sigmoid", "def sigmoid(x):\n    return 1 / (1 + torch.exp(-x.clamp(-80, 80)))\n"),
        ("sigmoid", "def sigmoid(x):\n    return torch.exp(-torch.logaddexp(torch.zeros_like(x), -x))\n"),
        ("tanh", "def tanh(x):\n    e = torch.exp(-2 * x.clamp(-40, 40))\n    return (1 - e) / (1 + e)\n"),
        ("relu", "def relu(x):\n    return x.clamp(min=0)\n"),
        ("relu", "def relu(x):\n    return x * (x > 0)\n"),
        ("relu", "def relu(x):\n    return torch.maximum(x, torch.zeros_like(x))\n"),
        ("relu", "def relu(x):\n    return (x + x.abs()) / 2\n"),
    ],
)
def test_other_correct_stable_answers_pass(name, src):
    passes(getattr(checks, name), _notebook_function(src))


# --- planted bugs, applied to the reference source ----------------------------------------------

