"""Lab 04 — Perceptron, XOR and the multilayer perceptron (seed 001).

A single neuron (Linear(2, 1) + Sigmoid) draws one straight line through the plane: it solves AND
and OR but not XOR, and trained on XOR with BCE and SGD at lr 1 its loss settles at
ln 2 = 0.6931, the loss of answering 0.5 everywhere. The seed's 2-10-10-10-1 sigmoid MLP
(261 parameters) bends the boundary and learns XOR — from most initialisations; a few stall on
the same ln 2 plateau.

Every exercise function is self-contained (torch and nn only), because its source is what the
notebook shows; `train_xor` takes its data from `make_xor_data`, the one natural dependency.
`train_seeds` is given to the student (a locked cell): the same training for many seeds at once.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["make_xor_data", "make_single_layer", "make_xor_mlp", "train_xor", "train_seeds"]


def make_xor_data() -> tuple[torch.Tensor, torch.Tensor]:
    """The four XOR examples.

    Returns X: float32 [4, 2], the rows (0,0), (0,1), (1,0), (1,1) in that order, and
    Y: float32 [4, 1], their labels x1 XOR x2 = 0, 1, 1, 0 (a column: shaped like the model's output).
    """
    X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])  # [4, 2]
    Y = torch.tensor([[0.0], [1.0], [1.0], [0.0]])  # [4, 1]
    return X, Y


def make_single_layer() -> nn.Sequential:
    """One neuron: Linear(2, 1) then Sigmoid, 3 parameters (two weights and a bias).

    Maps x: [N, 2] to probabilities [N, 1] in (0, 1).
    """
    return nn.Sequential(nn.Linear(2, 1), nn.Sigmoid())


def make_xor_mlp() -> nn.Sequential:
    """The lecture's multilayer perceptron 2-10-10-10-1 with a Sigmoid after every layer.

    Maps x: [N, 2] to probabilities [N, 1] in (0, 1), as one nn.Sequential of nn.Linear and
    nn.Sigmoid layers.
    """
    return nn.Sequential(
        nn.Linear(2, 10),  # input -> hidden 1: 30 parameters
        nn.Sigmoid(),
        nn.Linear(10, 10),  # hidden 1 -> hidden 2: 110
        nn.Sigmoid(),
        nn.Linear(10, 10),  # hidden 2 -> hidden 3: 110
        nn.Sigmoid(),
        nn.Linear(10, 1),  # hidden 3 -> output: 11
        nn.Sigmoid(),  # a probability, for BCE
    )


def train_xor(model: nn.Module, epochs: int = 10_000, lr: float = 1.0) -> list[float]:
    """Train `model` in place on make_xor_data()'s four examples: full-batch SGD on BCE, `epochs` steps.

    model:  maps [4, 2] to probabilities [4, 1] (ends in a Sigmoid).
    Returns a list of `epochs` Python floats: the loss of each epoch, computed on the forward
    pass before that epoch's step (so losses[0] is the loss of the untrained model).
    """
    X, Y = make_xor_data()  # X [4, 2], Y [4, 1]
    criterion = nn.BCELoss()  # mean over the 4 examples
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        optimizer.zero_grad()  # .grad accumulates: clear the previous epoch's gradient
        loss = criterion(model(X), Y)  # forward: [4, 1] probabilities against [4, 1] labels
        loss.backward()  # backward: fills p.grad for every parameter
        optimizer.step()  # p -= lr * p.grad
        losses.append(loss.item())
    return losses


@torch.inference_mode()
def train_seeds(seeds: list[int], epochs: int = 10_000, lr: float = 1.0, every: int = 10) -> torch.Tensor:
    """train_xor(make_xor_mlp(), epochs, lr) from every seed at once: the BCE curves, [epochs // every, S].

    Row r holds the loss of each seed's network before epoch r * every (row 0: untrained). The
    networks are those of `make_xor_mlp` (its nn.Linear layers, a sigmoid after each), stacked
    along a first dimension of size S = len(seeds) and trained together by full-batch SGD on BCE,
    with the gradients written out by hand (lab 03) — one batched matrix product per layer and
    epoch instead of S of them. Same arithmetic as train_xor, up to float rounding.
    """
    X, Y = make_xor_data()  # [4, 2], [4, 1]
    nets = []
    for seed in seeds:
        torch.manual_seed(seed)  # as seed_everything(seed) before make_xor_mlp()
        nets.append([m for m in make_xor_mlp().modules() if isinstance(m, nn.Linear)])
    W = [torch.stack([net[k].weight.T for net in nets]) for k in range(len(nets[0]))]  # [S, in, out]
    B = [torch.stack([net[k].bias[None] for net in nets]) for k in range(len(nets[0]))]  # [S, 1, out]
    S = len(seeds)
    x, y = X.expand(S, 4, 2), Y.expand(S, 4, 1)
    curves = []
    for epoch in range(epochs):
        hs = [x]  # the input and every layer's activation, [S, 4, width]
        for w, b in zip(W, B):
            hs.append(torch.baddbmm(b, hs[-1], w).sigmoid_())  # sigmoid(h @ w + b)
        p = hs[-1]  # [S, 4, 1] probabilities
        if epoch % every == 0:
            curves.append(nn.functional.binary_cross_entropy(p, y, reduction="none").mean(dim=(1, 2)))
        dz = (p - y) / 4  # d(mean BCE)/d(logit of the output sigmoid), [S, 4, 1]
        for k in reversed(range(len(W))):
            h = hs[k]  # this layer's input
            dW, db = torch.bmm(h.transpose(1, 2), dz), dz.sum(dim=1, keepdim=True)
            if k:  # back through layer k and the sigmoid before it
                dz = torch.bmm(dz, W[k].transpose(1, 2)).mul_(h * (1 - h))
            W[k].sub_(dW, alpha=lr)
            B[k].sub_(db, alpha=lr)
    return torch.stack(curves)  # [epochs // every, S]
