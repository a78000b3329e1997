"""Lab 03 — Backpropagation by hand (seeds 000, 002).

The seed's worked example (one linear neuron, one SGD step), then a two-layer MLP
(Linear → Sigmoid → Linear, mean-squared error) whose gradients are derived with the chain rule
and checked against autograd and against centred finite differences. Ends with the sigmoid's
derivative, whose maximum of 0.25 is the root of the vanishing gradient.

Every exercise function is self-contained (it uses only `torch`), because its source is what the
notebook shows. `mlp_backward` recomputes the forward pass itself instead of calling
`mlp_forward`, so that a bug in one is not reported as a bug in the other.
"""
from __future__ import annotations

from typing import Callable

import torch

__all__ = [
    "sgd_step",
    "worked_example",
    "mlp_forward",
    "mlp_backward",
    "numerical_gradient",
    "rel_error",
    "sigmoid_grad",
]


def sgd_step(
    params: torch.Tensor | list[torch.Tensor] | dict[str, torch.Tensor],
    grads: torch.Tensor | list[torch.Tensor] | dict[str, torch.Tensor],
    lr: float,
) -> torch.Tensor | list[torch.Tensor] | dict[str, torch.Tensor]:
    """One step of plain gradient descent: `new = param - lr * grad`, for every parameter.

    params: a tensor, a list of tensors or a dict of tensors.
    grads:  the same structure as params, each gradient of the shape of its parameter.
    lr:     the learning rate (a Python float).
    Returns new tensors in the structure it was given (tensor -> tensor, list -> list,
    dict -> dict with the same keys). Never modifies `params` in place.
    """
    if isinstance(params, torch.Tensor):
        return params - lr * grads  # a new tensor: `-=` would modify the caller's params
    if isinstance(params, dict):
        return {name: sgd_step(params[name], grads[name], lr) for name in params}
    return type(params)(sgd_step(p, g, lr) for p, g in zip(params, grads))


def worked_example(lr: float = 0.01) -> dict:
    """The lecture's worked example: one linear neuron without bias, one SGD step.

    Inputs i = (0.3, 0.7), weights w = (0.6, 0.9), target tar = 1.5.
      pred  = i1*w1 + i2*w2                      (0.81)
      error = tar - pred                          (0.69)
      grads = d(error)/dw = -i                    (-0.3, -0.7), tensor [2]
      new_w = w - lr * grads                      (0.603, 0.907) for lr = 0.01, tensor [2]
      new_pred, new_error with new_w              (0.8158, 0.6842)
    Returns a dict with keys pred, error, new_pred, new_error (Python floats) and
    grads, new_w (float32 tensors of shape [2]).
    """
    i = torch.tensor([0.3, 0.7])  # inputs
    w = torch.tensor([0.6, 0.9])  # weights
    tar = 1.5  # target
    pred = (i * w).sum()  # 0.3*0.6 + 0.7*0.9 = 0.81
    error = tar - pred  # 0.69
    grads = -i  # error = tar - i1*w1 - i2*w2, so d(error)/dw_k = -i_k
    new_w = w - lr * grads  # the SGD rule, written out: w_up = w_past - lr * grad
    new_pred = (i * new_w).sum()
    new_error = tar - new_pred
    return {
        "pred": float(pred),
        "error": float(error),
        "grads": grads,
        "new_w": new_w,
        "new_pred": float(new_pred),
        "new_error": float(new_error),
    }


def mlp_forward(x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Forward pass of Linear → Sigmoid → Linear, by hand (no nn layers).

    x: [N, D]; params: W1 [H, D], b1 [H], W2 [O, H], b2 [O], in `nn.Linear`'s layout.
    Returns out: [N, O], what `nn.Sequential(nn.Linear(D, H), nn.Sigmoid(), nn.Linear(H, O))`
    returns for x with these weights and biases.
    """
    h = torch.sigmoid(x @ params["W1"].T + params["b1"])  # [N, H]
    return h @ params["W2"].T + params["b2"]  # [N, O]


def mlp_backward(x: torch.Tensor, y: torch.Tensor, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Gradients of L = mean((out - y)**2) for out = mlp_forward(x, params), by hand (no autograd).

    x: [N, D]; y: [N, O]; params: W1 [H, D], b1 [H], W2 [O, H], b2 [O].
    The mean runs over every element of out - y (N*O of them), as nn.MSELoss does.
    Recomputes the forward intermediates itself (it does not call mlp_forward).
    Returns {"W1": [H, D], "b1": [H], "W2": [O, H], "b2": [O]}: dL/dparam, each of the
    shape of its parameter.
    """
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    # forward, keeping what the backward pass needs
    z = x @ W1.T + b1  # [N, H]
    h = torch.sigmoid(z)  # [N, H]
    out = h @ W2.T + b2  # [N, O]
    # backward: the chain rule, from the loss back to W1
    d_out = 2 * (out - y) / out.numel()  # dL/dout [N, O]
    d_W2 = d_out.T @ h  # [O, H]
    d_b2 = d_out.sum(dim=0)  # [O]
    d_h = d_out @ W2  # [N, H]
    d_z = d_h * h * (1 - h)  # sigmoid'(z) = h * (1 - h); [N, H]
    d_W1 = d_z.T @ x  # [H, D]
    d_b1 = d_z.sum(dim=0)  # [H]
    return {"W1": d_W1, "b1": d_b1, "W2": d_W2, "b2": d_b2}


def numerical_gradient(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, h: float = 1e-5) -> torch.Tensor:
    """Centred finite differences: grad[i] = (f(x + h e_i) - f(x - h e_i)) / (2h).

    f: maps a tensor of the shape of x to a scalar tensor (or a Python number).
    x: any shape, contiguous (use float64: in float32, h = 1e-5 drowns in rounding).
    Returns a tensor of the shape of x. x may be nudged in place while computing, but on
    return it must hold exactly its original values.
    """
    grad = torch.zeros_like(x)
    # nudge x itself, in place (an f that reads x through a closure sees the nudge too)
    with torch.no_grad():  # the nudges are not part of any graph
        flat_x, flat_grad = x.view(-1), grad.view(-1)  # flat views sharing memory with x, grad
        for k in range(flat_x.numel()):
            old = flat_x[k].item()
            flat_x[k] = old + h
            f_plus = float(f(x))
            flat_x[k] = old - h
            f_minus = float(f(x))
            flat_x[k] = old  # restore
            flat_grad[k] = (f_plus - f_minus) / (2 * h)
    return grad


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative error as in CS231n: max over elements of |a - b| / max(1e-8, |a| + |b|).

    a, b: tensors of the same shape (or broadcastable). Returns a Python float; 0.0 when a == b,
    even where both are 0 (the 1e-8 floor avoids 0/0).
    """
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float(((a - b).abs() / (a.abs() + b.abs()).clamp(min=1e-8)).max())


def sigmoid_grad(x: torch.Tensor) -> torch.Tensor:
    """Derivative of the sigmoid at every element of x; same shape as x.

    Finite for any x, |x| = 1000 included (what autograd gives for torch.sigmoid).
    """
    # d/dx 1 / (1 + e^-x) = e^-x / (1 + e^-x)^2 = s * (1 - s): written with s, no exp overflows
    s = torch.sigmoid(x)
    return s * (1 - s)
