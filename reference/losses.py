"""Lab 05 — Softmax and cross-entropy (seeds 001, 002).

The output layer of a classifier turns scores (logits) into probabilities with the softmax, and
the cross-entropy measures how far those probabilities are from the answer (seed 001's table:
per-sample 0.51, 0.51, 1.20, mean 0.74, in natural log). Then the loss PyTorch actually uses,
`F.cross_entropy` on logits, written with log-sum-exp; the focal loss of Lin et al. (seed 002),
which down-weights easy examples; and the pitfall of seed 000, an `nn.Softmax` in front of
`nn.CrossEntropyLoss`, which softmaxes twice and squashes the gradient.

Every exercise function is self-contained (it uses only `torch`), because its source is what the
notebook shows: `cross_entropy_from_logits` does its own log-sum-exp instead of calling
`softmax`, so a bug in one is never reported as a bug in the other. The last two functions are
not exercises: the notebook shows them (`source`) to measure the pitfall.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from autograder.data import mnist_splits
from autograder.runtime import seed_everything

__all__ = [
    "softmax",
    "cross_entropy",
    "cross_entropy_from_logits",
    "focal_loss",
    "logit_gradient",
    "train_digits",
]


def softmax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax along `dim`: exp(z_i) / sum_j exp(z_j), numerically stable.

    z: any shape (float); dim: the axis that holds the classes (the last one by default).
    Returns probabilities of the shape of z: non-negative, summing to 1 along `dim`. Finite for
    logits of any size (z = 1000 or -1000 gives no NaN): the maximum is subtracted first, which
    leaves the result unchanged because softmax(z) = softmax(z - c) for any constant c.
    Does not modify z; autograd flows through it.
    """
    shifted = z - z.amax(dim=dim, keepdim=True)  # the largest exponent is now exp(0) = 1
    e = torch.exp(shifted)  # in (0, 1]: no overflow
    return e / e.sum(dim=dim, keepdim=True)  # the sum is at least 1: no division by 0


def cross_entropy(probs: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy between predicted probabilities and one-hot targets, natural log.

    probs:  [N, C] probabilities (each row sums to 1), e.g. the output of a softmax.
    onehot: [N, C] targets, 1 at the true class and 0 elsewhere.
    Per sample: H = -sum_c onehot[n, c] * ln(probs[n, c]); returns the mean over the N samples as
    a 0-d tensor. A probability of exactly 0 where the target is 0 contributes 0 (not 0 * -inf =
    NaN): probs are clamped to at least 1e-12 before the log.
    """
    log_p = torch.log(probs.clamp_min(1e-12))  # [N, C]; the floor keeps 0 * log(0) at 0
    per_sample = -(onehot * log_p).sum(dim=1)  # [N]: sum over the classes
    return per_sample.mean()  # mean over the samples


def cross_entropy_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of raw scores against integer labels, as `F.cross_entropy(logits, labels)`.

    logits: [N, C] raw scores (no softmax applied); labels: int64 [N], class indices in [0, C).
    -ln softmax(z)_y = logsumexp(z) - z_y, with logsumexp(z) = m + ln sum_j exp(z_j - m) and
    m = max_j z_j, so it stays finite for logits of 1000. Returns the mean over the N samples,
    a 0-d tensor; autograd gives d/dlogits = (softmax(z) - onehot(y)) / N.
    """
    m = logits.amax(dim=1, keepdim=True)  # [N, 1]
    log_sum_exp = m.squeeze(1) + torch.log(torch.exp(logits - m).sum(dim=1))  # [N]
    true_logit = logits.gather(1, labels.view(-1, 1)).squeeze(1)  # [N]: z[n, labels[n]]
    return (log_sum_exp - true_logit).mean()


def focal_loss(p: torch.Tensor, y: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Binary focal loss of Lin et al. (2017), mean over all elements.

    p: predicted probabilities of the positive class, any shape, values in (0, 1).
    y: targets of the shape of p, 1.0 (positive) or 0.0 (negative).
    p_t = p where y = 1 and 1 - p where y = 0 (the probability given to the true class);
    FL = -(1 - p_t)**gamma * ln(p_t) element-wise, then the mean over every element (a 0-d tensor).
    gamma = 0 is the binary cross-entropy, `F.binary_cross_entropy(p, y)`; a larger gamma
    shrinks the loss of easy examples (p_t near 1) much more than that of hard ones.
    """
    p_t = y * p + (1 - y) * (1 - p)  # probability of the true class
    weight = (1 - p_t) ** gamma  # near 0 for easy examples, near 1 for hard ones
    return (-weight * torch.log(p_t)).mean()


def logit_gradient(logits: torch.Tensor, labels: torch.Tensor, extra_softmax: bool = False) -> torch.Tensor:
    """d loss / d logits for `F.cross_entropy`, by autograd; the pitfall when `extra_softmax`.

    logits: [N, C]; labels: int64 [N]. With `extra_softmax=True` the logits first go through a
    softmax, as when a model ends in `nn.Softmax` and is trained with `nn.CrossEntropyLoss`
    (which applies its own log-softmax): the loss then sees probabilities as if they were logits.
    Returns the gradient, [N, C].
    """
    z = logits.detach().clone().requires_grad_(True)
    scores = torch.softmax(z, dim=1) if extra_softmax else z
    F.cross_entropy(scores, labels).backward()
    return z.grad


def train_digits(extra_softmax: bool, epochs: int = 5, lr: float = 0.1, optimizer: str = "sgd",
                 seed: int = 0) -> list[float]:
    """A 784-64-10 ReLU MLP trained on the embedded MNIST training digits; its validation accuracy.

    Mini-batches of 100, `nn.CrossEntropyLoss`, `optimizer` "sgd" (plain SGD) or "adam" with
    learning rate `lr`. With `extra_softmax=True` the model ends in `nn.Softmax(dim=1)`, the
    pitfall; otherwise it returns logits. The same seed gives both models the same initial
    weights and the same batches.
    Returns the validation accuracy (a fraction in [0, 1]) after each epoch, a list of `epochs` floats.
    """
    splits = mnist_splits()
    X, y = splits["train"].tensors  # [3500, 1, 28, 28], [3500]
    X_val, y_val = splits["val"].tensors  # [500, 1, 28, 28], [500]
    seed_everything(seed)
    layers = [nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10)]
    model = nn.Sequential(*layers, nn.Softmax(dim=1)) if extra_softmax else nn.Sequential(*layers)
    criterion = nn.CrossEntropyLoss()
    make = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[optimizer]
    opt = make(model.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)  # the batches, independent of the global RNG
    accuracies = []
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(X), generator=order).split(100):
            loss = criterion(model(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            accuracies.append((model(X_val).argmax(dim=1) == y_val).float().mean().item())
    return accuracies
