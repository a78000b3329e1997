"""Lab regularization — Regularization (seeds 000, 001, 002, 003).

Overfitting and the tools against it, each written by hand and compared with PyTorch's:
inverted dropout, early stopping that keeps the best weights, batch normalization with its
running statistics, and data augmentation by small random shifts and rotations. Weight decay
(L2), checkpointing, ReduceLROnPlateau and global average pooling are taught with PyTorch's own
tools in the notebook.

Every exercise is self-contained (it uses only torch, nn, F and math) because its source is what
the notebook shows. `run_epoch` and `MLP` are given code: the notebook's demos train with them.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

__all__ = ["Dropout", "EarlyStopping", "BatchNorm2d", "augment", "kfold_indices", "cross_validate", "MLP", "run_epoch"]


class Dropout(nn.Module):
    """Inverted dropout: during training each element is zeroed with probability p and the
    survivors are scaled by 1/(1-p), so the expected value of every element is unchanged; in
    eval mode (`model.eval()`) the input passes through untouched.

    x: any shape (e.g. [N, D] or [N, C, H, W]) → the same shape and dtype. A new mask is drawn
    at every call, from torch's global random generator.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x  # eval mode: identity (nothing to rescale at test time)
        if self.p == 1.0:
            return torch.zeros_like(x)  # everything dropped (and no division by 0)
        keep = (torch.rand_like(x) >= self.p).to(x.dtype)  # 1 with probability 1 - p, else 0
        return x * keep / (1.0 - self.p)  # scale the survivors: E[output] = x


class EarlyStopping:
    """Stop training once the validation loss has not improved for `patience` epochs in a row.

    An epoch improves when val_loss < best - min_delta (strictly better than the best loss so
    far by more than min_delta); anything else counts as one more epoch without improvement.
    Call `step(val_loss, model)` once per epoch: it returns True when training should stop.
    With a model, every improvement stores a copy of its weights (a deep copy of the
    state_dict: the tensors themselves keep changing while training goes on), and
    `restore(model)` loads that copy back. Patience 2, losses 1.0, 0.9, 0.95, 0.96 →
    False, False, False, True.
    """

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf  # the best validation loss so far
        self.counter = 0  # epochs in a row without improvement
        self.best_state: dict[str, torch.Tensor] | None = None  # a copy of the best weights

    def step(self, val_loss: float, model: nn.Module | None = None) -> bool:
        if val_loss < self.best - self.min_delta:  # improved by more than min_delta
            self.best = val_loss
            self.counter = 0
            if model is not None:  # copy the tensors: state_dict() shares them with the model
                self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.counter += 1
        return self.counter >= self.patience

    def restore(self, model: nn.Module) -> nn.Module:
        if self.best_state is None:
            raise RuntimeError("no weights stored: pass the model to step(val_loss, model)")
        model.load_state_dict(self.best_state)
        return model


class BatchNorm2d(nn.Module):
    """Batch normalization over [N, C, H, W], per channel, as nn.BatchNorm2d (eps 1e-5,
    momentum 0.1, affine, tracking running statistics).

    Training: normalise with the mean and the *biased* variance of the batch over N, H and W;
    update running_mean and running_var (with the *unbiased* variance, n/(n-1) times the biased
    one, n = N*H*W) as running = (1 - momentum) * running + momentum * batch statistic.
    Eval: normalise with running_mean and running_var. Then scale by weight and shift by bias.
    weight [C] (ones) and bias [C] (zeros) are parameters; running_mean [C] (zeros),
    running_var [C] (ones) and num_batches_tracked (0, a count of training batches; optional
    here) are buffers, so the state_dict of an nn.BatchNorm2d loads into it and back.
    x: [N, C, H, W] → [N, C, H, W].
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))  # gamma, learned
        self.bias = nn.Parameter(torch.zeros(num_features))  # beta, learned
        self.register_buffer("running_mean", torch.zeros(num_features))  # saved, not learned
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            mean = x.mean(dim=(0, 2, 3))  # [C]
            var = x.var(dim=(0, 2, 3), unbiased=False)  # [C], biased: divides by n
            n = x.numel() // x.shape[1]  # values per channel: N*H*W
            with torch.no_grad():  # running statistics are bookkeeping, not part of the graph
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * var * n / (n - 1))  # unbiased
                self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps)
        return self.weight[None, :, None, None] * x_hat + self.bias[None, :, None, None]


def augment(x: torch.Tensor, max_shift: float = 0.1, max_degrees: float = 15.0) -> torch.Tensor:
    """A random shift and a small random rotation of every image of a batch (no flip).

    x: [N, C, H, W] float → [N, C, H, W], same dtype and device; x is left unchanged. Each image
    gets its own angle, uniform in [-max_degrees, max_degrees], and its own shift of up to
    max_shift of its width and height; what moves in from outside is 0 (black). Uses torch's
    global random generator.
    """
    N, _, H, W = x.shape
    angle = (torch.rand(N, device=x.device, dtype=x.dtype) * 2 - 1) * math.radians(max_degrees)  # [N]
    shift = (torch.rand(N, 2, device=x.device, dtype=x.dtype) * 2 - 1) * 2 * max_shift  # [N, 2]; the grid spans 2
    cos, sin = torch.cos(angle), torch.sin(angle)
    # theta maps each output position (grid coordinates in [-1, 1]) to where it samples the input;
    # H/W and W/H keep the rotation a rotation when the image is not square
    theta = torch.stack([
        torch.stack([cos, -sin * H / W, shift[:, 0]], dim=1),
        torch.stack([sin * W / H, cos, shift[:, 1]], dim=1),
    ], dim=1)  # [N, 2, 3]
    grid = F.affine_grid(theta, [N, x.shape[1], H, W], align_corners=False)  # [N, H, W, 2]
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def kfold_indices(n: int, k: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """k-fold cross-validation splits of n samples: a list of k (train_idx, val_idx) int64 pairs.

    The samples are shuffled once (`torch.randperm(n)` with a generator seeded with `seed`: the
    same folds on every call with the same seed) and cut into k consecutive folds, the first
    n % k of them one sample larger (scikit-learn's KFold sizes). Fold i is the validation set of
    split i and the other k - 1 folds, in their shuffled order, its training set: every sample is
    validated exactly once and trained on k - 1 times.
    """
    if not 2 <= k <= n:
        raise ValueError(f"k must be between 2 and n = {n}, got {k}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
    folds = list(torch.split(order, sizes))
    return [(torch.cat(folds[:i] + folds[i + 1:]), folds[i]) for i in range(k)]


def cross_validate(make_model, dataset, k: int, train, seed: int = 0) -> list[float]:
    """The accuracy of k models, each trained on k - 1 folds of `dataset` and measured on the fold
    it never saw: one number per fold, in fold order.

    make_model() -> a fresh nn.Module; dataset: a TensorDataset (X, y); train(model, TensorDataset)
    trains the model in place. Accuracy: the share of the validation fold classified right, in
    eval mode, without gradients.
    """
    X, y = dataset.tensors
    accuracies = []
    for train_idx, val_idx in kfold_indices(len(y), k, seed):
        model = make_model()
        train(model, TensorDataset(X[train_idx], y[train_idx]))
        model.eval()
        with torch.no_grad():
            accuracies.append((model(X[val_idx]).argmax(dim=1) == y[val_idx]).double().mean().item())
    return accuracies


# --- given code: the model and the epoch loop the notebook's demos use ----------------------------


class MLP(nn.Module):
    """The seed's MNIST network 784-256-128-10 with ReLU, and optional dropout after each hidden
    layer (`dropout` is a module class such as nn.Dropout or the lab's Dropout; p=0: none).

    x: [N, 1, 28, 28] → logits [N, 10] (no softmax: CrossEntropyLoss applies it).
    """

    def __init__(self, p: float = 0.0, dropout: type[nn.Module] = nn.Dropout) -> None:
        super().__init__()
        self.network = nn.Sequential(
            nn.Flatten(),
            nn.Linear(28 * 28, 256), nn.ReLU(), dropout(p),
            nn.Linear(256, 128), nn.ReLU(), dropout(p),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)


def run_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer | None = None,
              transform=None) -> tuple[float, float]:
    """One pass over `loader`: trains (model.train(), one optimizer step per batch) when an
    optimizer is given, else evaluates (model.eval(), no gradients). `transform` (e.g. augment)
    is applied to each training batch. Returns (mean cross-entropy loss, accuracy), both averaged
    per sample.
    """
    training = optimizer is not None
    model.train(training)
    total_loss, correct, count = 0.0, 0, 0
    with torch.set_grad_enabled(training):
        for images, labels in loader:
            if training and transform is not None:
                images = transform(images)
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
            if training:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            total_loss += loss.item() * len(labels)
            correct += (logits.argmax(dim=1) == labels).sum().item()
            count += len(labels)
    return total_loss / count, correct / count
