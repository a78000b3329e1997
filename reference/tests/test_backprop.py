"""reference.backprop against the seed's numbers (LABS.md, lab 03) and torch.autograd as the oracle."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from reference.backprop import (
    mlp_backward,
    mlp_forward,
    numerical_gradient,
    rel_error,
    sgd_step,
    sigmoid_grad,
    worked_example,
)


def make_mlp(D: int, H: int, O: int, N: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    params = {
        "W1": torch.randn(H, D, generator=g, dtype=dtype),
        "b1": torch.randn(H, generator=g, dtype=dtype),
        "W2": torch.randn(O, H, generator=g, dtype=dtype),
        "b2": torch.randn(O, generator=g, dtype=dtype),
    }
    x = torch.randn(N, D, generator=g, dtype=dtype)
    y = torch.randn(N, O, generator=g, dtype=dtype)
    return x, y, params


def autograd_grads(x, y, params):
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    model = nn.Sequential(nn.Linear(*leaves["W1"].shape[::-1]), nn.Sigmoid(), nn.Linear(*leaves["W2"].shape[::-1]))
    model = model.to(x.dtype)
    with torch.no_grad():
        model[0].weight.copy_(leaves["W1"]), model[0].bias.copy_(leaves["b1"])
        model[2].weight.copy_(leaves["W2"]), model[2].bias.copy_(leaves["b2"])
    nn.functional.mse_loss(model(x), y).backward()
    return {"W1": model[0].weight.grad, "b1": model[0].bias.grad, "W2": model[2].weight.grad, "b2": model[2].bias.grad}


# --- the seed's worked example ------------------------------------------------------------------


def test_worked_example_matches_the_seed_numbers():
    r = worked_example()
    assert set(r) == {"pred", "error", "grads", "new_w", "new_pred", "new_error"}
    for key in ("pred", "error", "new_pred", "new_error"):
        assert type(r[key]) is float, key
    # matched to the digits the seed shows
    assert round(r["pred"], 2) == 0.81
    assert round(r["error"], 2) == 0.69
    assert round(r["new_pred"], 4) == 0.8158
    assert round(r["new_error"], 4) == 0.6842
    assert isinstance(r["grads"], torch.Tensor) and isinstance(r["new_w"], torch.Tensor)
    assert r["grads"].dtype == r["new_w"].dtype == torch.float32
    assert [round(v, 1) for v in r["grads"].tolist()] == [-0.3, -0.7]
    assert [round(v, 3) for v in r["new_w"].tolist()] == [0.603, 0.907]
    assert r["new_error"] < r["error"]  # one step reduced the error: 0.69 > 0.6842


def test_worked_example_grads_are_autograd_of_the_error():
    i = torch.tensor([0.3, 0.7])
    w = torch.tensor([0.6, 0.9], requires_grad=True)
    (1.5 - (i * w).sum()).backward()
    torch.testing.assert_close(worked_example()["grads"], w.grad)


@pytest.mark.parametrize("lr", [0.0, 0.1, 1.0])
def test_worked_example_uses_lr(lr):
    r = worked_example(lr)
    i, w = torch.tensor([0.3, 0.7]), torch.tensor([0.6, 0.9])
    new_w = w + lr * i
    torch.testing.assert_close(r["new_w"], new_w)
    assert r["new_pred"] == pytest.approx(float((i * new_w).sum()), abs=1e-6)
    assert r["new_error"] == pytest.approx(1.5 - float((i * new_w).sum()), abs=1e-6)


# --- sgd_step -----------------------------------------------------------------------------------


def test_sgd_step_tensor_not_in_place():
    p, g = torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0])
    before = p.clone()
    new = sgd_step(p, g, 0.1)
    assert isinstance(new, torch.Tensor) and new is not p
    torch.testing.assert_close(new, torch.tensor([0.95, 2.1]))
    assert torch.equal(p, before)


def test_sgd_step_list_and_dict_keep_structure():
    ps = [torch.randn(3, 2, dtype=torch.float64), torch.randn(4, dtype=torch.float64)]
    gs = [torch.randn_like(p) for p in ps]
    before = [p.clone() for p in ps]
    new = sgd_step(ps, gs, 0.5)
    assert type(new) is list and len(new) == 2
    for n, p, g, b in zip(new, ps, gs, before):
        assert n is not p
        torch.testing.assert_close(n, b - 0.5 * g)
        assert torch.equal(p, b)

    pd = {"W": ps[0], "b": ps[1]}
    gd = {"W": gs[0], "b": gs[1]}
    new = sgd_step(pd, gd, 0.5)
    assert type(new) is dict and list(new) == ["W", "b"]
    torch.testing.assert_close(new["W"], before[0] - 0.5 * gs[0])
    assert torch.equal(pd["b"], before[1])


def test_sgd_step_matches_torch_optim_sgd():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x, y = torch.randn(5, 3), torch.randn(5, 2)
    nn.functional.mse_loss(model(x), y).backward()
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    grads = {k: v.grad.clone() for k, v in model.named_parameters()}
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    new = sgd_step(params, grads, 0.1)
    for k, v in model.named_parameters():
        torch.testing.assert_close(new[k], v.detach())


def test_sgd_step_reproduces_the_worked_example():
    new_w = sgd_step(torch.tensor([0.6, 0.9]), torch.tensor([-0.3, -0.7]), 0.01)
    assert [round(v, 3) for v in new_w.tolist()] == [0.603, 0.907]


# --- the MLP ------------------------------------------------------------------------------------


@pytest.mark.parametrize("D,H,O,N,seed", [(3, 4, 2, 5, 0), (1, 1, 1, 1, 1), (6, 8, 3, 10, 2), (5, 7, 1, 4, 3)])
def test_mlp_forward_matches_nn_sequential(D, H, O, N, seed):
    x, _, params = make_mlp(D, H, O, N, seed)
    model = nn.Sequential(nn.Linear(D, H), nn.Sigmoid(), nn.Linear(H, O)).double()
    with torch.no_grad():
        model[0].weight.copy_(params["W1"]), model[0].bias.copy_(params["b1"])
        model[2].weight.copy_(params["W2"]), model[2].bias.copy_(params["b2"])
    out = mlp_forward(x, params)
    assert out.shape == (N, O)
    torch.testing.assert_close(out, model(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("D,H,O,N,seed", [(3, 4, 2, 5, 0), (1, 1, 1, 1, 1), (6, 8, 3, 10, 2), (5, 7, 1, 4, 3), (2, 16, 4, 32, 4)])
def test_mlp_backward_matches_autograd(D, H, O, N, seed):
    x, y, params = make_mlp(D, H, O, N, seed)
    before = {k: v.clone() for k, v in params.items()}
    grads = mlp_backward(x, y, params)
    expected = autograd_grads(x, y, params)
    assert set(grads) == {"W1", "b1", "W2", "b2"}
    for k in expected:
        assert grads[k].shape == params[k].shape, k
        assert rel_error(grads[k], expected[k]) < 1e-7, k
        assert torch.equal(params[k], before[k]), k


def test_mlp_backward_uses_no_autograd():
    x, y, params = make_mlp(3, 4, 2, 5, 0)
    with torch.no_grad():
        grads = mlp_backward(x, y, params)
    assert all(not g.requires_grad for g in grads.values())


# --- numerical gradient and rel_error -----------------------------------------------------------


def test_numerical_gradient_matches_autograd_and_leaves_x_alone():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, generator=g, dtype=torch.float64)
    before = x.clone()

    def f(t):
        return (torch.sin(t) * t.sum()).sum() + (t**3).mean()

    num = numerical_gradient(f, x)
    assert num.shape == x.shape
    assert torch.equal(x, before)
    xr = x.clone().requires_grad_(True)
    f(xr).backward()
    assert rel_error(num, xr.grad) < 1e-7


def test_numerical_gradient_is_centred():
    # for sum(x**3) the centred difference is exactly 3x² + h²; one-sided would add 3xh
    x = torch.tensor([[0.5, -1.0], [2.0, 0.25]], dtype=torch.float64)
    num = numerical_gradient(lambda t: (t**3).sum(), x, h=1e-2)
    torch.testing.assert_close(num, 3 * x**2 + 1e-4, rtol=1e-9, atol=1e-9)


def test_numerical_gradient_sees_nudges_through_a_closure():
    x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    num = numerical_gradient(lambda _: (x**2).sum(), x)
    torch.testing.assert_close(num, 2 * x)


def test_numerical_gradient_checks_mlp_backward():
    x, y, params = make_mlp(3, 4, 2, 5, 7)
    grads = mlp_backward(x, y, params)
    for k in params:
        num = numerical_gradient(lambda p: ((mlp_forward(x, {**params, k: p}) - y) ** 2).mean(), params[k])
        assert rel_error(num, grads[k]) < 1e-6, k


def test_rel_error():
    assert rel_error(torch.zeros(3), torch.zeros(3)) == 0.0
    assert type(rel_error(torch.ones(2), torch.ones(2))) is float
    assert rel_error(torch.tensor([1.0, 2.0, 0.0]), torch.tensor([1.0, 2.2, 0.0])) == pytest.approx(0.2 / 4.2)
    assert rel_error(torch.tensor([-1.0]), torch.tensor([1.0])) == pytest.approx(1.0)
    assert rel_error(torch.tensor([1e-9]), torch.tensor([0.0])) == pytest.approx(0.1)  # the 1e-8 floor


def test_rel_error_agrees_with_the_autograder_helper():
    from autograder.checks import rel_error as helper

    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    assert rel_error(a, b) == pytest.approx(helper(a, b))


# --- sigmoid_grad -------------------------------------------------------------------------------


def test_sigmoid_grad_matches_autograd_and_peaks_at_a_quarter():
    x = torch.linspace(-10, 10, 2001, dtype=torch.float64).requires_grad_(True)
    torch.sigmoid(x).sum().backward()
    got = sigmoid_grad(x.detach())
    assert got.shape == x.shape
    torch.testing.assert_close(got, x.grad)
    assert float(got.max()) == pytest.approx(0.25)
    assert float(sigmoid_grad(torch.tensor(0.0))) == 0.25
    big = sigmoid_grad(torch.tensor([-1000.0, 1000.0]))
    assert torch.isfinite(big).all() and float(big.abs().max()) < 1e-30
