"""The checks of lab 04 (xor): the reference passes every one, and every one can fail.

Each check runs on the reference (must pass) and on buggy variants (must raise an AssertionError
that reads `... expected ..., got ... — hint`). The planted bugs of tests/planted/xor.py are applied
to the reference source here too, and the notebook's pipeline (seed 4, make_xor_mlp, train_xor) is
run with them, to prove each fails exactly the checks it declares. In process the pipeline trains
quicker than the notebook (lr 4 for 1,500 epochs: seed 4 leaves the ln 2 plateau near epoch 1,150,
against 2,950 at the notebook's lr 1 for 4,000 epochs); the notebook-level run is the grader's test.
"""
from __future__ import annotations

import copy
import inspect
import textwrap
from typing import Callable

import pytest
import torch
from torch import nn

import reference.xor as R
from autograder.checks import xor as checks
from autograder.runtime import seed_everything
from tests.planted.xor import BUGS
from tests.judging import fails

CHECKS = ["make_xor_data", "single_layer", "param_count", "train_xor", "mlp_accuracy"]
NOTEBOOK_SEED = 4  # the seed of the notebook's MLP (reference/notebooks/xor.py.j2)
QUICK_LR, QUICK_EPOCHS = 4.0, 1500  # the in-process pipeline: the notebook trains 4,000 epochs at lr 1


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: one thread is faster than two, and leaves the other core alone."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def xor_by_hand() -> nn.Sequential:
    """make_xor_mlp's layout with weights set by hand, the seed's construction: hidden 1 holds OR and
    NAND, hidden 2 their AND (= XOR), hidden 3 and the output pass it on. Gets all four right."""
    torch.manual_seed(0)
    model = R.make_xor_mlp()
    linears = [m for m in model if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for layer in linears:
            layer.weight.zero_(), layer.bias.zero_()
        linears[0].weight[0], linears[0].bias[0] = torch.tensor([20.0, 20.0]), -10.0  # OR
        linears[0].weight[1], linears[0].bias[1] = torch.tensor([-20.0, -20.0]), 30.0  # NAND
        linears[1].weight[0, :2], linears[1].bias[0] = torch.tensor([20.0, 20.0]), -30.0  # AND of the two
        for layer in linears[2:]:
            layer.weight[0, 0], layer.bias[0] = 20.0, -10.0  # pass it on
    return model


ARGS = {
    "make_xor_data": lambda: R.make_xor_data,
    "single_layer": lambda: R.make_single_layer,
    "param_count": lambda: R.make_xor_mlp,
    "train_xor": lambda: R.train_xor,
    "mlp_accuracy": xor_by_hand,
}


def test_the_hand_built_network_is_the_seeds_construction():
    X, Y = R.make_xor_data()
    with torch.no_grad():
        torch.testing.assert_close(xor_by_hand()(X), Y, atol=1e-3, rtol=0)


def test_the_reference_mlp_passes_its_accuracy_check():
    """The one xor check whose argument is a trained model (tests/test_contract.py runs the rest)."""
    checks.mlp_accuracy(ARGS["mlp_accuracy"]())


@pytest.mark.parametrize("name", CHECKS)
def test_unfilled_cell_propagates_not_implemented(name):
    def blank(*args, **kwargs):
        raise NotImplementedError()

    class Blank(nn.Module):
        def forward(self, x):
            raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        getattr(checks, name)(Blank() if name == "mlp_accuracy" else blank)


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


def _trained(make, epochs=300):
    def build():
        torch.manual_seed(0)
        model = make()
        R.train_xor(model, epochs, 1.0)
        return model
    build.__name__ = f"trained_{make.__name__}"
    return build


def untrained_mlp():
    seed_everything(NOTEBOOK_SEED)
    return R.make_xor_mlp()


def linear_stack():
    return nn.Sequential(nn.Linear(2, 10), nn.Linear(10, 10), nn.Linear(10, 1), nn.Sigmoid())


def or_network():
    """Confident, and wrong on (1, 1): what training on OR's labels gives."""
    model = nn.Sequential(nn.Linear(2, 1), nn.Sigmoid())
    with torch.no_grad():
        model[0].weight.fill_(20.0), model[0].bias.fill_(-10.0)
    return model


def logits_mlp():
    model = xor_by_hand()
    return nn.Sequential(*list(model)[:-1])


# name → buggy arguments (for mlp_accuracy: functions that build the buggy model)
BUGGY: dict[str, list[Callable]] = {
    "make_xor_data": [data_rows_reordered, data_or_labels, data_and_labels, data_flat_labels, data_integers,
                      data_swapped],
    "single_layer": [single_no_sigmoid, single_no_bias, single_hidden_layer, single_tanh, single_two_outputs,
                     single_the_class],
    "param_count": [mlp_width_8, mlp_output_no_bias, mlp_two_hidden_layers, mlp_no_final_sigmoid, mlp_mismatched],
    "train_xor": [train_no_zero_grad, train_fixed_lr, train_mse, train_loss_after_step, train_one_epoch_too_many,
                  train_tensors, train_a_copy, train_adam],
    "mlp_accuracy": [untrained_mlp, _trained(linear_stack), or_network, logits_mlp, mlp_mismatched],
}


def _arg(name, buggy):
    return buggy() if name == "mlp_accuracy" else buggy


@pytest.mark.parametrize(
    "name,buggy", [(name, fn) for name, fns in BUGGY.items() for fn in fns], ids=lambda v: getattr(v, "__name__", v)
)
def test_check_fails_on_buggy_variant(name, buggy):
    message = fails(getattr(checks, name), _arg(name, buggy))


@pytest.mark.parametrize(
    "buggy,words",
    [
        (data_rows_reordered, "binary counting"),
        (data_or_labels, "OR's labels"),
        (data_and_labels, "AND's labels"),
        (data_flat_labels, "column [4, 1]"),
        (data_integers, "floats"),
        (single_no_sigmoid, "nn.Sigmoid()"),
        (single_no_bias, "keep the bias"),
        (single_hidden_layer, "no hidden layer"),
        (single_the_class, "not the class"),
        (mlp_width_8, "Linear(2, 8)"),
        (mlp_output_no_bias, "keeps its bias"),
        (mlp_no_final_sigmoid, "nn.Sigmoid()"),
        (mlp_mismatched, "Linear(10, 20)"),
        (train_no_zero_grad, "zero_grad"),
        (train_fixed_lr, "lr argument"),
        (train_mse, "BCELoss"),
        (train_loss_after_step, "before the step"),
        (train_one_epoch_too_many, "range(10001)"),
        (train_tensors, "loss.item()"),
        (train_a_copy, "in place"),
        (untrained_mlp, "train"),
        (_trained(linear_stack), "no activation in between"),
        (or_network, "check make_xor_data"),
        (logits_mlp, "probabilities"),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
def test_failure_hints_name_the_bug(buggy, words):
    name = next(n for n, fns in BUGGY.items() if any(getattr(f, "__name__", None) == buggy.__name__ for f in fns))
    message = fails(getattr(checks, name), _arg(name, buggy))
    assert words in message, message


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
        checks.mlp_accuracy(mlp_mismatched())
    assert "RuntimeError" in str(info.value) and isinstance(info.value.__cause__, RuntimeError)


def test_checks_leave_the_global_rng_alone():
    args = {name: make() for name, make in ARGS.items()}  # xor_by_hand seeds: build it first
    torch.manual_seed(123)
    state = torch.get_rng_state()
    for name in CHECKS:
        getattr(checks, name)(args[name])
        assert torch.equal(torch.get_rng_state(), state), name


# --- planted bugs, applied to the reference source ----------------------------------------------

_CELLS = ["make_xor_data", "make_single_layer", "make_xor_mlp", "train_xor"]


def _functions(bug) -> dict[str, Callable]:
    """The four exercise functions as the notebook defines them, with `bug` planted in its cell:
    exec'd in one namespace, so train_xor calls this make_xor_data as in the notebook."""
    namespace = {"torch": torch, "nn": nn}
    for name in _CELLS:
        src = textwrap.dedent(inspect.getsource(getattr(R, name)))
        exec(compile(bug.apply(src) if name == bug.cell else src, f"<planted {bug.name}: {name}>", "exec"), namespace)  # noqa: S102
    return {name: namespace[name] for name in _CELLS}


@pytest.mark.parametrize("bug", BUGS, ids=lambda b: b.name)
def test_planted_bug_fails_exactly_its_checks(bug):
    assert bug.fails <= set(CHECKS)
    f = _functions(bug)
    if bug.cell == "make_single_layer":
        mlp = xor_by_hand()  # the MLP pipeline does not touch this cell: its result is the reference's
    else:  # the notebook's pipeline, with the bug in it
        seed_everything(NOTEBOOK_SEED)
        mlp = f["make_xor_mlp"]()
        try:
            f["train_xor"](mlp, QUICK_EPOCHS, QUICK_LR)
        except RuntimeError:
            pass  # the notebook's training cell fails the same way; the checks still run
    calls = {
        "make_xor_data": lambda: checks.make_xor_data(f["make_xor_data"]),
        "single_layer": lambda: checks.single_layer(f["make_single_layer"]),
        "param_count": lambda: checks.param_count(f["make_xor_mlp"]),
        "train_xor": lambda: checks.train_xor(f["train_xor"]),
        "mlp_accuracy": lambda: checks.mlp_accuracy(mlp, 1.0),
    }
    failed = set()
    for name, call in calls.items():
        try:
            call()
        except AssertionError:
            failed.add(name)
    assert failed == set(bug.fails)
