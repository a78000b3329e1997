"""Lab 06 — Optimizers (seeds 000, 002).

Plain SGD, then what each later optimizer adds to it: momentum (a velocity that keeps a
direction), Nesterov's look-ahead, per-parameter learning rates (AdaGrad), running averages
instead of sums (RMSProp), and both together with bias correction (Adam). Each class follows the
update rule of its `torch.optim` namesake exactly for the arguments it takes, so that 100 steps on
the quadratic bowl and on Rosenbrock from (-1.5, 2.0) match `torch.optim` within 1e-6 in float64.

`Optimizer` holds what they share (the parameter list and `zero_grad`); every subclass keeps its
own state, one tensor per parameter, made in `__init__`. Every `step` runs under
`torch.no_grad()`: the update changes the parameters in place and is no part of any graph.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch

__all__ = [
    "Optimizer",
    "SGD",
    "AdaGrad",
    "RMSProp",
    "Adam",
    "rosenbrock",
    "quadratic_bowl",
    "trajectory",
]

class Optimizer:
    """What every optimizer shares: the parameters it updates, and clearing their gradients.

    params: an iterable of tensors (a list, or `model.parameters()`, which is a generator).
    """

    def __init__(self, params: Iterable[torch.Tensor]) -> None:
        """Keep the parameters as a list in `self.params` (a generator can be read only once)."""
        self.params = list(params)

    def zero_grad(self) -> None:
        """Set the `.grad` of every parameter to None, as `torch.optim`'s zero_grad does."""
        for p in self.params:
            p.grad = None  # the next backward() writes a fresh gradient instead of adding to it


class SGD(Optimizer):
    """Stochastic gradient descent, with optional momentum and Nesterov momentum (torch.optim.SGD).

        plain:     p ← p − lr·g
        momentum:  v ← momentum·v + g;  p ← p − lr·v           (v starts at 0, so v = g at step 1)
        Nesterov:  v ← momentum·v + g;  p ← p − lr·(g + momentum·v)
    with g = p.grad. One velocity v per parameter, of its shape.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, momentum: float = 0.0,
                 nesterov: bool = False) -> None:
        """Call Optimizer's __init__, store the hyper-parameters, make one zero velocity per parameter."""
        super().__init__(params)
        self.lr, self.momentum, self.nesterov = lr, momentum, nesterov
        self.velocity = [torch.zeros_like(p) for p in self.params]  # v, one per parameter

    @torch.no_grad()
    def step(self) -> None:
        """Update every parameter that has a gradient, in place; skip those whose .grad is None."""
        for p, v in zip(self.params, self.velocity):
            if p.grad is None:
                continue
            g = p.grad
            if self.momentum != 0:
                v.mul_(self.momentum).add_(g)  # v = momentum * v + g, in place: v is kept for the next step
                g = (g + self.momentum * v) if self.nesterov else v  # Nesterov looks one velocity ahead
            p -= self.lr * g  # in place: p is the model's own tensor


class AdaGrad(Optimizer):
    """AdaGrad (torch.optim.Adagrad with initial_accumulator_value=0, lr_decay=0).

        G ← G + g²;  p ← p − lr·g / (√G + eps)
    G (one per parameter, starting at 0) sums every squared gradient so far: each element gets its
    own learning rate lr / √G, which only ever shrinks.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 0.01, eps: float = 1e-10) -> None:
        """Call Optimizer's __init__, store lr and eps, make one zero sum G per parameter."""
        super().__init__(params)
        self.lr, self.eps = lr, eps
        self.sum_sq = [torch.zeros_like(p) for p in self.params]  # G, starts at 0 as in torch

    @torch.no_grad()
    def step(self) -> None:
        """Update every parameter that has a gradient, in place; skip those whose .grad is None."""
        for p, G in zip(self.params, self.sum_sq):
            if p.grad is None:
                continue
            g = p.grad
            G += g * g  # the sum of squared gradients, element by element
            p -= self.lr * g / (G.sqrt() + self.eps)  # eps outside the square root, as torch


class RMSProp(Optimizer):
    """RMSProp (torch.optim.RMSprop with momentum=0, centered=False).

        v ← alpha·v + (1 − alpha)·g²;  p ← p − lr·g / (√v + eps)
    v (one per parameter, starting at 0) is a running average of squared gradients: old gradients
    fade by the factor alpha a step, so the learning rate lr / √v can grow again.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 0.01, alpha: float = 0.99,
                 eps: float = 1e-8) -> None:
        """Call Optimizer's __init__, store lr, alpha and eps, make one zero average v per parameter."""
        super().__init__(params)
        self.lr, self.alpha, self.eps = lr, alpha, eps
        self.square_avg = [torch.zeros_like(p) for p in self.params]  # v

    @torch.no_grad()
    def step(self) -> None:
        """Update every parameter that has a gradient, in place; skip those whose .grad is None."""
        for p, v in zip(self.params, self.square_avg):
            if p.grad is None:
                continue
            g = p.grad
            v.mul_(self.alpha).add_((1 - self.alpha) * g * g)  # running average of g²
            p -= self.lr * g / (v.sqrt() + self.eps)  # eps outside the square root, as torch


class Adam(Optimizer):
    """Adam (torch.optim.Adam with amsgrad=False, weight_decay=0): momentum and RMSProp together.

        t ← t + 1
        m ← β1·m + (1 − β1)·g            running average of gradients (the momentum)
        v ← β2·v + (1 − β2)·g²           running average of squared gradients (RMSProp)
        m̂ = m / (1 − β1^t);  v̂ = v / (1 − β2^t)          bias correction: m and v start at 0
        p ← p − lr·m̂ / (√v̂ + eps)
    m and v: one per parameter, starting at 0; t counts the calls to step().
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        """Call Optimizer's __init__, store the hyper-parameters, make zero m and v per parameter, t = 0."""
        super().__init__(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]  # first moment
        self.v = [torch.zeros_like(p) for p in self.params]  # second moment
        self.t = 0  # steps taken

    @torch.no_grad()
    def step(self) -> None:
        """Update every parameter that has a gradient, in place; skip those whose .grad is None."""
        beta1, beta2 = self.betas
        self.t += 1
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad
            m.mul_(beta1).add_((1 - beta1) * g)  # m = beta1 * m + (1 - beta1) * g
            v.mul_(beta2).add_((1 - beta2) * g * g)  # v = beta2 * v + (1 - beta2) * g²
            m_hat = m / (1 - beta1**self.t)  # at t = 1: m = 0.1 g, and m_hat = g
            v_hat = v / (1 - beta2**self.t)
            p -= self.lr * m_hat / (v_hat.sqrt() + self.eps)


# --- the test functions and a runner, given to the students ---------------------------------------


def rosenbrock(xy: torch.Tensor) -> torch.Tensor:
    """Rosenbrock's banana valley f(x, y) = (1 − x)² + 100·(y − x²)², minimum 0 at (1, 1).

    xy: [2] (x, y), or [..., 2] for a grid. Returns f: a scalar, or [...].
    """
    x, y = xy[..., 0], xy[..., 1]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def quadratic_bowl(xy: torch.Tensor) -> torch.Tensor:
    """An elongated bowl f(x, y) = x² + 10·y², minimum 0 at (0, 0): 10× steeper along y than x.

    xy: [2] (x, y), or [..., 2] for a grid. Returns f: a scalar, or [...].
    """
    x, y = xy[..., 0], xy[..., 1]
    return x**2 + 10 * y**2


def trajectory(optimizer_class: type, f: Callable[[torch.Tensor], torch.Tensor], steps: int = 100,
               start: tuple[float, float] = (-1.5, 2.0), **hyper) -> torch.Tensor:
    """Minimise f from `start` with `optimizer_class(params, **hyper)` for `steps` steps, in float64.

    optimizer_class: SGD, Adam, ... or a torch.optim class (same arguments).
    f: maps a point xy [2] to a scalar tensor.
    Returns the points visited, [steps + 1, 2]: the start, then the point after each step.
    """
    xy = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    optimizer = optimizer_class([xy], **hyper)
    path = [xy.detach().clone()]
    for _ in range(steps):
        optimizer.zero_grad()  # the training loop of every lab: zero_grad, forward, backward, step
        loss = f(xy)
        loss.backward()
        optimizer.step()
        path.append(xy.detach().clone())
    return torch.stack(path)
