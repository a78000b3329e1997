"""reference.forward against torch as the oracle (nn.Linear, torch.sigmoid/tanh/relu, autograd)
and the seeds' numbers (LABS.md, lab 02)."""
from __future__ import annotations

import dis

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from reference.forward import linear_forward, perceptron, relu, sigmoid, tanh

ACTIVATIONS = [(sigmoid, torch.sigmoid), (tanh, torch.tanh), (relu, torch.relu)]


# --- the lecture's nn.Linear(3, 7) --------------------------------------------------------------


def seed_network():
    torch.manual_seed(1017)
    network = nn.Linear(in_features=3, out_features=7)
    torch.manual_seed(1017)
    inputs = torch.randn(3)
    return network, inputs


def test_the_seed_numbers_and_the_bias():
    network, inputs = seed_network()
    out = network(inputs)
    by_hand = torch.sum(inputs * network.weight[0])
    assert round(out[0].item(), 4) == 0.0314  # the value the lecture expected from the sum
    assert round(by_hand.item(), 4) == -0.1617  # ...which the sum does not give
    assert round(network.bias[0].item(), 4) == 0.1931  # the difference is the bias
    assert out[0].item() == pytest.approx(by_hand.item() + network.bias[0].item(), abs=1e-6)

    torch.manual_seed(1017)
    network_nobias = nn.Linear(3, 7, bias=False)  # same seed: the same weights, no bias
    assert torch.equal(network_nobias.weight, network.weight)
    torch.testing.assert_close(network(inputs) - network_nobias(inputs), network.bias.detach())


def test_linear_forward_reproduces_the_seed_network():
    network, inputs = seed_network()
    W, b = network.weight.detach(), network.bias.detach()
    out = linear_forward(inputs.unsqueeze(0), W, b)
    assert out.shape == (1, 7)
    torch.testing.assert_close(out[0], network(inputs).detach())
    torch.testing.assert_close(linear_forward(inputs, W, b), network(inputs).detach())  # a single [in] vector too


@pytest.mark.parametrize("N,fin,fout", [(1, 1, 1), (5, 3, 7), (4, 6, 6), (16, 10, 2)])
def test_linear_forward_equals_nn_linear(N, fin, fout):
    g = torch.Generator().manual_seed(N * 100 + fin * 10 + fout)
    layer = nn.Linear(fin, fout)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(fout, fin, generator=g))
        layer.bias.copy_(torch.randn(fout, generator=g))
    x = torch.randn(N, fin, generator=g)
    W, b = layer.weight.detach(), layer.bias.detach()
    out = linear_forward(x, W, b)
    assert out.shape == (N, fout)
    torch.testing.assert_close(out, layer(x).detach())
    torch.testing.assert_close(out, F.linear(x, W, b))


def test_linear_forward_gradients_match_nn_linear():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    x = torch.randn(5, 4)
    layer(x).square().sum().backward()
    W = layer.weight.detach().clone().requires_grad_(True)
    b = layer.bias.detach().clone().requires_grad_(True)
    linear_forward(x, W, b).square().sum().backward()
    torch.testing.assert_close(W.grad, layer.weight.grad)
    torch.testing.assert_close(b.grad, layer.bias.grad)


# --- activations --------------------------------------------------------------------------------


@pytest.mark.parametrize("fn,torch_fn", ACTIVATIONS, ids=lambda f: getattr(f, "__name__", ""))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_activation_matches_torch(fn, torch_fn, dtype):
    x = torch.linspace(-50, 50, 10001, dtype=dtype)
    out = fn(x)
    assert out.dtype == dtype and out.shape == x.shape
    torch.testing.assert_close(out, torch_fn(x), atol=1e-6, rtol=0)
    x2 = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0), dtype=dtype)
    torch.testing.assert_close(fn(x2), torch_fn(x2), atol=1e-6, rtol=0)


@pytest.mark.parametrize("fn,torch_fn", ACTIVATIONS, ids=lambda f: getattr(f, "__name__", ""))
def test_activation_is_finite_at_1000_in_value_and_gradient(fn, torch_fn):
    x = torch.tensor([-1000.0, -100.0, -1.0, 0.5, 100.0, 1000.0], requires_grad=True)
    out = fn(x)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    xr = x.detach().clone().requires_grad_(True)
    torch_fn(xr).sum().backward()
    torch.testing.assert_close(out.detach(), torch_fn(x.detach()), atol=1e-6, rtol=0)
    torch.testing.assert_close(x.grad, xr.grad, atol=1e-6, rtol=0)


@pytest.mark.parametrize("fn,torch_fn", ACTIVATIONS, ids=lambda f: getattr(f, "__name__", ""))
def test_activation_gradient_matches_autograd_of_torch(fn, torch_fn):
    grid = torch.linspace(-8, 8, 33, dtype=torch.float64)  # includes 0
    if fn is relu:
        grid = grid[grid != 0]  # relu's derivative at 0 is a convention
    x, xr = grid.clone().requires_grad_(True), grid.clone().requires_grad_(True)
    fn(x).sum().backward()
    torch_fn(xr).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad, atol=1e-12, rtol=1e-12)
    assert torch.autograd.gradcheck(fn, (grid[:5].clone().requires_grad_(True),))


def test_derivatives_at_zero():
    x = torch.zeros(1, requires_grad=True)
    sigmoid(x).backward()
    assert x.grad.item() == 0.25  # the sigmoid's steepest point, at most 0.25
    x.grad = None
    tanh(x).backward()
    assert x.grad.item() == 1.0
    x.grad = None
    relu(x).backward()
    assert x.grad.item() == 0.0  # as torch.relu


@pytest.mark.parametrize("fn", [sigmoid, tanh, relu], ids=lambda f: f.__name__)
def test_activation_uses_no_builtin_activation(fn):
    names = {i.argval for i in dis.get_instructions(fn) if i.opname in ("LOAD_ATTR", "LOAD_METHOD", "LOAD_GLOBAL")}
    assert not names & {"sigmoid", "tanh", "relu", "Sigmoid", "Tanh", "ReLU", "expit"}
    assert not set(fn.__code__.co_names) & {"sigmoid", "tanh", "relu"}


def test_naive_formulas_break_at_1000():
    # what the checks rely on: the textbook formulas give NaN at |x| = 1000, in value or gradient
    x = torch.tensor([-1000.0, 1000.0], requires_grad=True)
    naive = 1 / (1 + torch.exp(-x))
    assert torch.isfinite(naive).all()  # the value survives: 1 / (1 + inf) = 0 ...
    naive.sum().backward()
    assert torch.isnan(x.grad[0])  # ... but the gradient is 0 * inf = NaN
    assert torch.isnan(torch.exp(x) / (1 + torch.exp(x)))[1]  # inf / inf
    assert torch.isnan((torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x))).all()


# --- the perceptron -----------------------------------------------------------------------------

OR_INPUTS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # the lecture's x1..x4


def test_perceptron_or_seed_numbers():
    w, b = torch.tensor([1.0, 1.0]), -0.5
    sums = OR_INPUTS @ w + b
    assert sums.tolist() == [-0.5, 0.5, 0.5, 1.5]
    out = perceptron(OR_INPUTS, w, b)
    assert out.dtype == torch.float32 and out.shape == (4,)
    assert out.tolist() == [-1.0, 1.0, 1.0, 1.0]


def test_perceptron_sum_of_zero_gives_minus_one():
    out = perceptron(OR_INPUTS, torch.tensor([1.0, 1.0]), -1.0)  # AND: sums -1, 0, 0, 1
    assert out.tolist() == [-1.0, -1.0, -1.0, 1.0]


def test_perceptron_random_batch_and_tensor_bias():
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(50, 3, generator=g), torch.randn(3, generator=g), torch.randn((), generator=g)
    out = perceptron(x, w, b)
    s = x @ w + b
    assert set(out.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(out > 0, s > 0)
