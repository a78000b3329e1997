"""Lab 02 — Neurons and the forward pass (seeds 000, 001).

A neuron computes a weighted sum of its inputs plus a bias, `W·x + b`, and passes it through an
activation function. The lecture checks `nn.Linear(3, 7)` by hand: `sum(x * W[0])` differs from
`network(x)[0]` by exactly the bias `b[0]`. Then the activations (sigmoid, tanh, ReLU), written
here without `torch.sigmoid/tanh/relu` and numerically stable: finite values and gradients at
|x| = 1000, where the textbook formulas overflow. Last, the perceptron of seed 001: a step
activation returning ±1, with the lecture's OR example.

Every exercise function is self-contained (it uses only torch), because its source is what the
notebook shows.
"""
from __future__ import annotations

import torch

__all__ = ["linear_forward", "sigmoid", "tanh", "relu", "perceptron"]


def linear_forward(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The fully connected layer `nn.Linear` computes: y = x W^T + b.

    x: [N, in]; W: [out, in] (nn.Linear's layout: one row of weights per output node);
    b: [out]. Returns y: [N, out] with y[n, j] = sum_i x[n, i] * W[j, i] + b[j].
    """
    return x @ W.T + b  # [N, in] @ [in, out] -> [N, out]; b broadcasts over the N rows


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """The logistic sigmoid 1 / (1 + exp(-x)), element-wise, in (0, 1); same shape as x.

    Stable: only ever takes exp of a non-positive number, so the value and the gradient stay
    finite for any x (exp(1000) overflows to inf). Works with autograd.
    """
    pos = x >= 0
    z = torch.exp(torch.where(pos, -x, x))  # exp(-|x|), in (0, 1]: never overflows
    return torch.where(pos, 1 / (1 + z), z / (1 + z))  # for x < 0: e^x / (1 + e^x), the same function


def tanh(x: torch.Tensor) -> torch.Tensor:
    """The hyperbolic tangent (e^x - e^-x) / (e^x + e^-x), element-wise, in (-1, 1); same shape as x.

    Stable: tanh is odd, so compute tanh(|x|) = (1 - e) / (1 + e) with e = exp(-2|x|) in (0, 1]
    and put the sign back. Finite value and gradient for any x; works with autograd.
    """
    pos = x >= 0
    e = torch.exp(torch.where(pos, -2 * x, 2 * x))  # exp(-2|x|), in (0, 1]: never overflows
    t = (1 - e) / (1 + e)  # tanh(|x|)
    return torch.where(pos, t, -t)


def relu(x: torch.Tensor) -> torch.Tensor:
    """The rectified linear unit max(x, 0), element-wise; same shape and dtype as x.

    Its gradient is 1 where x > 0 and 0 elsewhere (0 at x = 0, as torch.relu). Works with autograd.
    """
    return torch.where(x > 0, x, torch.zeros_like(x))


def perceptron(x: torch.Tensor, w: torch.Tensor, b: float | torch.Tensor) -> torch.Tensor:
    """Rosenblatt's perceptron: a weighted sum followed by a step activation returning ±1.

    x: [N, d]; w: [d]; b: a number (Python float or 0-d tensor).
    Returns [N] float32: +1 where s = x @ w + b > 0, and -1 elsewhere (s = 0 included).
    """
    s = x @ w + b  # [N] weighted sums
    return torch.where(s > 0, 1.0, -1.0)  # the step function tau(s)
