"""The checks of lab 04 (xor): every one can fail, and says why.

Each check runs on buggy variants (must raise an AssertionError that reads `... expected ...,
got ... — hint`, here and from the judge); tests/test_contract.py runs the reference through every
check, and plants each bug of tests/planted/xor.py in the reference as a notebook holds it (the
four exercises in one namespace: train_xor calls that make_xor_data) to prove it fails exactly
the checks it declares, here and from the judge.
"""
from __future__ import annotations

import copy
from typing import Callable

import pytest
import torch
from torch import nn

import reference.xor as R
from autograder.checks import xor as checks
from tests.judging import fails

CHECKS = ["make_xor_data", "single_layer", "param_count", "train_xor", "mlp_accuracy"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: one thread is faster than two, and leaves the other core alone."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


ARGS = {
    "make_xor_data": lambda: R.make_xor_data,
    "single_layer": lambda: R.make_single_layer,
    "param_count": lambda: R.make_xor_mlp,
    "train_xor": lambda: R.train_xor,
    "mlp_accuracy": lambda: R.make_xor_mlp,
}


@pytest.mark.parametrize("name", CHECKS)
def test_unfilled_cell_propagates_not_implemented(name):
    def blank(*args, **kwargs):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        getattr(checks, name)(blank)


# --- buggy variants, per check ------------------------------------------------------------------


def data_rows_reordered():
    X, Y = R.make_xor_data()
    return X[[0, 2, 1, 3]], Y


def data_or_labels():
    X, _ = R.make_xor_data()
    return X, torch.tensor([[0.0], [1.0], [1.0], [1.0]])


def data_and_labels():
    X, _ = R.make_xor_data()
    return X, torch.tensor([[0.0], [0.0], [0.0], [1.0]])


def data_flat_labels():
    X, Y = R.make_xor_data()
    return X, Y.flatten()


def data_integers():
    return torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]]), torch.tensor([[0], [1], [1], [0]])


def data_swapped():
    X, Y = R.make_xor_data()
    return Y, X


def single_no_sigmoid():
    return nn.Sequential(nn.Linear(2, 1))


def single_no_bias():
    return nn.Sequential(nn.Linear(2, 1, bias=False), nn.Sigmoid())


def single_hidden_layer():
    return nn.Sequential(nn.Linear(2, 4), nn.Sigmoid(), nn.Linear(4, 1), nn.Sigmoid())


def single_tanh():
    return nn.Sequential(nn.Linear(2, 1), nn.Tanh())


def single_two_outputs():
    return nn.Sequential(nn.Linear(2, 2), nn.Sigmoid())


def single_the_class():
    return nn.Sequential


def mlp_width_8():
    return nn.Sequential(nn.Linear(2, 8), nn.Sigmoid(), nn.Linear(8, 10), nn.Sigmoid(), nn.Linear(10, 10), nn.Sigmoid(),
                         nn.Linear(10, 1), nn.Sigmoid())


def mlp_output_no_bias():
    return nn.Sequential(nn.Linear(2, 10), nn.Sigmoid(), nn.Linear(10, 10), nn.Sigmoid(), nn.Linear(10, 10), nn.Sigmoid(),
                         nn.Linear(10, 1, bias=False), nn.Sigmoid())


def mlp_two_hidden_layers():
    return nn.Sequential(nn.Linear(2, 10), nn.Sigmoid(), nn.Linear(10, 10), nn.Sigmoid(), nn.Linear(10, 1), nn.Sigmoid())


def mlp_no_final_sigmoid():
    return nn.Sequential(*list(R.make_xor_mlp())[:-1])


def mlp_mismatched():
    return nn.Sequential(nn.Linear(2, 10), nn.Sigmoid(), nn.Linear(10, 20), nn.Sigmoid(), nn.Linear(10, 10), nn.Sigmoid(),
                         nn.Linear(10, 1), nn.Sigmoid())


def _loop(model, epochs, lr, *, zero_grad=True, loss_fn=None, optimizer=torch.optim.SGD, after_step=False,
          extra=0, as_tensor=False, fixed_lr=None):
    X, Y = R.make_xor_data()
    loss_fn = loss_fn or nn.BCELoss()
    opt = optimizer(model.parameters(), lr=fixed_lr or lr)
    losses = []
    for _ in range(epochs + extra):
        if zero_grad:
            opt.zero_grad()
        loss = loss_fn(model(X), Y)
        loss.backward()
        opt.step()
        if after_step:
            with torch.no_grad():
                loss = loss_fn(model(X), Y)
        losses.append(loss if as_tensor else loss.item())
    return losses


def train_no_zero_grad(model, epochs, lr):
    return _loop(model, epochs, lr, zero_grad=False)


def train_fixed_lr(model, epochs, lr):
    return _loop(model, epochs, lr, fixed_lr=1.0)


def train_mse(model, epochs, lr):
    return _loop(model, epochs, lr, loss_fn=nn.MSELoss())


def train_loss_after_step(model, epochs, lr):
    return _loop(model, epochs, lr, after_step=True)


def train_one_epoch_too_many(model, epochs, lr):
    return _loop(model, epochs, lr, extra=1)


def train_tensors(model, epochs, lr):
    return _loop(model, epochs, lr, as_tensor=True)


def train_a_copy(model, epochs, lr):
    return _loop(copy.deepcopy(model), epochs, lr)


def train_adam(model, epochs, lr):
    return _loop(model, epochs, lr, optimizer=torch.optim.Adam)


def linear_stack():
    return nn.Sequential(nn.Linear(2, 10), nn.Linear(10, 10), nn.Linear(10, 10), nn.Linear(10, 1), nn.Sigmoid())


def mlp_zero_init():
    """Every weight and bias 0: the hidden units stay copies of each other, and the network stays
    on the ln 2 plateau."""
    model = R.make_xor_mlp()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model


# name → buggy arguments
BUGGY: dict[str, list[Callable]] = {
    "make_xor_data": [data_rows_reordered, data_or_labels, data_and_labels, data_flat_labels, data_integers,
                      data_swapped],
    "single_layer": [single_no_sigmoid, single_no_bias, single_hidden_layer, single_tanh, single_two_outputs,
                     single_the_class],
    "param_count": [mlp_width_8, mlp_output_no_bias, mlp_two_hidden_layers, mlp_no_final_sigmoid, mlp_mismatched],
    "train_xor": [train_no_zero_grad, train_fixed_lr, train_mse, train_loss_after_step, train_one_epoch_too_many,
                  train_tensors, train_a_copy, train_adam],
    "mlp_accuracy": [linear_stack, mlp_zero_init, mlp_mismatched, mlp_no_final_sigmoid],
}


# the words a failing check's hint must hold, for the variant's first check in BUGGY
HINTS = {
    data_rows_reordered: "binary counting",
    data_or_labels: "OR's labels",
    data_and_labels: "AND's labels",
    data_flat_labels: "column [4, 1]",
    data_integers: "floats",
    single_no_sigmoid: "nn.Sigmoid()",
    single_no_bias: "keep the bias",
    single_hidden_layer: "no hidden layer",
    single_the_class: "not the class",
    mlp_width_8: "Linear(2, 8)",
    mlp_output_no_bias: "keeps its bias",
    mlp_no_final_sigmoid: "nn.Sigmoid()",
    mlp_mismatched: "Linear(10, 20)",
    train_no_zero_grad: "zero_grad",
    train_fixed_lr: "lr argument",
    train_mse: "BCELoss",
    train_loss_after_step: "before the step",
    train_one_epoch_too_many: "range(10001)",
    train_tensors: "loss.item()",
    train_a_copy: "in place",
    linear_stack: "no activation in between",
    mlp_zero_init: "plateau",
}


def test_every_hint_is_for_a_variant_of_buggy():
    assert all(any(buggy in fns for fns in BUGGY.values()) for buggy in HINTS)


@pytest.mark.parametrize(
    "name,buggy", [(name, fn) for name, fns in BUGGY.items() for fn in fns], ids=lambda v: getattr(v, "__name__", v)
)
def test_check_fails_on_buggy_variant_and_its_hint_names_the_bug(name, buggy):
    """Each variant fails each of its checks; where HINTS has words for it, its first check's
    message holds them (one run of the check for both: some train a network)."""
    message = fails(getattr(checks, name), buggy)
    if buggy in HINTS and name == next(n for n, fns in BUGGY.items() if buggy in fns):
        assert HINTS[buggy] in message, message


def test_single_layer_on_the_plateau_gets_the_seeds_numbers():
    """The single-layer check trains its own copy: any Linear(2, 1) + Sigmoid ends at ln 2."""
    for seed in range(3):
        torch.manual_seed(seed)
        checks.single_layer(R.make_single_layer)


def test_a_student_error_is_one_clear_line_with_the_original_chained():
    with pytest.raises(AssertionError) as info:
        checks.param_count(mlp_mismatched)
    assert "371" in str(info.value)
    with pytest.raises(AssertionError) as info:
        checks.mlp_accuracy(mlp_mismatched)
    assert "RuntimeError" in str(info.value) and isinstance(info.value.__cause__, RuntimeError)


def test_checks_leave_the_global_rng_alone():
    args = {name: make() for name, make in ARGS.items()}
    torch.manual_seed(123)
    state = torch.get_rng_state()
    for name in CHECKS:
        getattr(checks, name)(args[name])
        assert torch.equal(torch.get_rng_state(), state), name
