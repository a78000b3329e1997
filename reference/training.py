"""Lab training — the training loop: an MLP on MNIST (seeds 000, 001).

The seeds train a 784-256-128-10 ReLU network on MNIST with a hand-written loop: `model.train()`,
then for every mini-batch `zero_grad → forward → loss → backward → step`; then `model.eval()`
and a pass over the validation data under `torch.no_grad()`. This lab writes that loop as four
reusable pieces — `MLP`, `train_one_epoch`, `evaluate`, `fit` — and gets the averaging right:
losses and accuracies are means **per sample**, so a short last batch counts for what it holds
(seed 000 sums per-batch accuracies and divides the validation sum by `len(train_loader)`).

Shapes through MLP:
    x        [N, 1, 28, 28]
    flatten  [N, 784]
    fc1      [N, 256]   784·256 + 256 = 200,960 params, ReLU
    fc2      [N, 128]   256·128 + 128 =  32,896 params, ReLU
    fc3      [N, 10]    128·10 + 10   =   1,290 params, logits (no softmax)
                                        235,146

The last helpers (`deep_mlp`, `layer_grad_norms`) serve the vanishing-gradient demo: the
gradient norm of every layer of a deep sigmoid network and of the same network with ReLU.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from autograder.data import mnist_splits
from autograder.runtime import count_params, get_device, seed_everything

__all__ = [
    "MLP",
    "train_one_epoch",
    "evaluate",
    "fit",
    "confusion_matrix",
    "per_class_accuracy",
    "make_loaders",
    "deep_mlp",
    "layer_grad_norms",
    "TRAIN_SETTINGS",
    "count_params",
    "get_device",
    "mnist_splits",
    "seed_everything",
]

# The settings the notebook trains with (benchmarks/training.py measures them; course.yml's
# thresholds.accuracy for this lab is derived from that measurement).
TRAIN_SETTINGS = {"epochs": 5, "lr": 1e-3, "batch_size": 64}


class MLP(nn.Module):
    """The seeds' multilayer perceptron for MNIST: 784-256-128-10 with ReLU, 235,146 parameters.

    x: [N, 1, 28, 28] (or anything with 784 values per sample) → logits [N, 10].
    No softmax at the end: F.cross_entropy / nn.CrossEntropyLoss applies log-softmax itself.
    """

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, 256)  # 784·256 + 256 = 200,960
        self.fc2 = nn.Linear(256, 128)      # 256·128 + 128 =  32,896
        self.fc3 = nn.Linear(128, 10)       # 128·10 + 10   =   1,290

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)   # [N, 784]
        x = F.relu(self.fc1(x))   # [N, 256]
        x = F.relu(self.fc2(x))   # [N, 128]
        return self.fc3(x)        # [N, 10] logits


def train_one_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    device: torch.device | str) -> float:
    """One pass over `loader`, one optimizer step per mini-batch; returns the mean training loss.

    model: already on `device`; loader yields (x [B, ...], y int64 [B]); the loss of a batch is
    F.cross_entropy(model(x), y) (the mean over its B samples).
    Puts the model in training mode; per batch: zero_grad, forward, loss, backward, step.
    Returns a Python float: the loss per SAMPLE over the epoch, sum(batch loss · B) / N, so a
    short last batch weighs what it holds (not the mean of the per-batch losses).
    """
    model.train()
    total, count = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()               # gradients accumulate otherwise
        loss = F.cross_entropy(model(x), y)  # mean over the batch
        loss.backward()
        optimizer.step()
        total += loss.item() * len(y)       # back to a sum over the batch's samples
        count += len(y)
    return total / count


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device | str) -> tuple[float, float]:
    """Mean loss and accuracy of `model` over every sample of `loader`, in eval mode, without gradients.

    model: already on `device`; loader yields (x [B, ...], y int64 [B]).
    Returns (loss, accuracy) as Python floats: the cross-entropy summed over all samples and
    divided by their number, and the fraction (in [0, 1]) classified right. Both are the same
    for any batch size, a short last batch included.
    """
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)                                                  # [B, classes]
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()  # a sum, not a mean
            correct += (logits.argmax(dim=1) == y).sum().item()
            count += len(y)
    return total_loss / count, correct / count


def fit(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader, epochs: int, lr: float,
        device: torch.device | str) -> dict:
    """Train `model` with Adam(lr) for `epochs` epochs, evaluating on `val_loader` after each one.

    Moves the model to `device`. Returns the history, a dict of per-epoch lists of Python floats,
    each of length `epochs`: train_loss (what train_one_epoch returned), val_loss and val_acc
    (what evaluate returned; accuracies are fractions in [0, 1]).
    """
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = {"train_loss": [], "val_loss": [], "val_acc": []}
    for _ in range(epochs):
        train_loss = train_one_epoch(model, train_loader, optimizer, device)
        val_loss, val_acc = evaluate(model, val_loader, device)
        history["train_loss"].append(train_loss)
        history["val_loss"].append(val_loss)
        history["val_acc"].append(val_acc)
    return history


def confusion_matrix(model: nn.Module, loader: DataLoader, num_classes: int,
                     device: torch.device | str) -> torch.Tensor:
    """How often each true class is predicted as each class, over every sample of `loader`.

    Returns an int64 tensor [num_classes, num_classes] on the CPU: entry [t, p] counts the samples
    of true class t that the model (in eval mode, without gradients) predicted as p. Rows sum to
    each class's number of samples; the diagonal holds the right predictions.
    """
    model.eval()
    counts = torch.zeros(num_classes * num_classes, dtype=torch.int64)
    with torch.no_grad():
        for x, y in loader:
            predicted = model(x.to(device)).argmax(dim=1).cpu()                     # [B]
            counts += torch.bincount(y * num_classes + predicted, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def per_class_accuracy(confusion: torch.Tensor) -> torch.Tensor:
    """The accuracy of each true class: the diagonal over each row's sum, float64 [num_classes].
    A class with no samples has no accuracy: nan, never 0 or 1."""
    confusion = confusion.to(torch.float64)
    return confusion.diagonal() / confusion.sum(dim=1)


def make_loaders(batch_size: int = 64, seed: int = 0) -> tuple[DataLoader, DataLoader, DataLoader]:
    """DataLoaders over the embedded MNIST splits: (train, val, test).

    The training loader shuffles (with torch's global generator, so `seed_everything` makes it
    repeat); validation and test keep their order, in batches of 500. In-memory TensorDatasets
    need no worker processes (num_workers=0). `seed` picks the split (autograder.data.mnist_splits).
    """
    splits = mnist_splits(seed)
    train = DataLoader(splits["train"], batch_size=batch_size, shuffle=True)
    val = DataLoader(splits["val"], batch_size=500)
    test = DataLoader(splits["test"], batch_size=500)
    return train, val, test


def deep_mlp(activation: type[nn.Module], depth: int = 8, width: int = 64, he_init: bool = False) -> nn.Sequential:
    """A deep MNIST MLP for the vanishing-gradient demo: Flatten, then `depth` hidden layers
    (Linear → activation) of `width` units, then Linear(width, 10).

    x: [N, 1, 28, 28] → logits [N, 10]. PyTorch's default initialisation, unless `he_init`:
    then every hidden Linear gets He (Kaiming) normal weights for ReLU, std sqrt(2 / fan_in),
    and zero biases, which keeps the signal's size from layer to layer.
    """
    layers: list[nn.Module] = [nn.Flatten()]
    n_in = 28 * 28
    for _ in range(depth):
        linear = nn.Linear(n_in, width)
        if he_init:
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
            nn.init.zeros_(linear.bias)
        layers += [linear, activation()]
        n_in = width
    layers.append(nn.Linear(n_in, 10))
    return nn.Sequential(*layers)


def layer_grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """The L2 norm of the weight gradient of every nn.Linear of `model`, input side first,
    after one backward pass of F.cross_entropy(model(x), y).

    x: [N, ...], y int64 [N]. Clears the gradients before and leaves them filled after.
    """
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return [m.weight.grad.norm().item() for m in model.modules() if isinstance(m, nn.Linear)]
