"""Lab debugging — debugging a training script (seed 000).

The lecture's code trains a CNN on MNIST-like digits, stops early and filters detections with NMS,
and it carries real bugs. This module is that script **fixed**; `SEED_BUGS` is the table of the
seed's bugs, each a piece of fixed text and the broken text the seed wrote instead. The student
starts from `broken_source(cell)` (the fixed code of an answer cell with its seed bugs put back),
and one check per bug says whether it is still there. No code is written twice: the broken script
is derived from this one.

The script, one answer cell each (`CELLS`):
    Net            the seed's Fashion-MNIST CNN ("Anet") for 1x28x28 digits
    training       train(model, loader, optimizer, device) -> mean loss per sample (lab 07)
                   evaluate(model, loader, device) -> (loss, accuracy), per sample (lab 07)
    EarlyStopping  patience counter with a copy of the best weights (lab 08)
    nms_rows       iou and the lecture's NMS on [class, score, x1, y1, x2, y2] rows (lab 14)
`fit` (given code) is the seed's epoch loop over them.

Shapes through Net (x: [N, 1, 28, 28]); a 3x3 convolution with padding 1 keeps the size, a 2x2
max pooling halves it, rounding down:
    block 1   conv 1→16, pool   [N, 16, 14, 14]      160 params
    block 2   conv 16→32, pool  [N, 32, 7, 7]      4,640
    block 3   conv 32→64, pool  [N, 64, 3, 3]     18,496   (7 // 2 = 3)
    flatten                     [N, 576]
    fc        576→256→64→10     [N, 10] logits   164,810   (dropout 0.2 after each hidden layer)
                                                 188,106
The seed's network had two or three convolutions per block (the same channels, the same
poolings, so the same 64·3·3 = 576 features on 28x28 input); one per block trains in seconds on
a CPU. Its `64*29*29` matches no input size: 29 is not what three poolings leave of 28.
"""
from __future__ import annotations

import inspect
import textwrap
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from autograder.data import mnist_splits
from autograder.runtime import count_params, get_device, seed_everything

__all__ = [
    "Net",
    "train",
    "evaluate",
    "EarlyStopping",
    "iou",
    "nms_rows",
    "fit",
    "CELLS",
    "SeedBug",
    "SEED_BUGS",
    "fixed_source",
    "broken_source",
    "TRAIN_SETTINGS",
    "count_params",
    "get_device",
    "mnist_splits",
    "seed_everything",
]

# What the notebook trains with: Adam, at most `epochs` epochs, early stopping with `patience`.
TRAIN_SETTINGS = {"epochs": 2, "lr": 1e-3, "batch_size": 64, "patience": 2}


# ============================================================== the script, fixed (answer cells)
class Net(nn.Module):
    """The lecture's CNN for 1x28x28 digits: three blocks, then a classifier.

    Each block is a 3x3 convolution (padding 1: height and width stay) with ReLU and a 2x2 max
    pooling (height and width halve, rounded down); the blocks have 16, 32 and 64 channels.
    The classifier flattens the last feature map and maps it to 256, 64 and 10 outputs, with
    ReLU and 20% dropout after both hidden layers.
    x: [N, 1, 28, 28] → [N, 10], the class scores nn.CrossEntropyLoss expects.
    """

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # block 1
            nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # block 2
            nn.Conv2d(32, 64, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # block 3
        )
        self.network = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 3 * 3, 256),  # 28 -> 14 -> 7 -> 3 after three poolings
            nn.ReLU(),
            nn.Dropout(0.2),  # drop 20% of the 256 nodes
            nn.Linear(256, 64),
            nn.ReLU(),
            nn.Dropout(0.2),  # drop 20% of the 64 nodes
            nn.Linear(64, 10),  # logits: nn.CrossEntropyLoss applies log-softmax itself
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.features(x))


def train(model: nn.Module, loader, optimizer: torch.optim.Optimizer, device: torch.device | str) -> float:
    """One epoch over `loader` (batches img [B, 1, 28, 28], labels int64 [B]): training mode, and
    per batch forward, cross-entropy, zero_grad, backward, step. `model` is already on `device`.
    Returns the mean training loss per sample (a short last batch weighs what it holds).
    """
    criterion = nn.CrossEntropyLoss()
    model.train()
    total_loss, count = 0.0, 0
    for img, labels in loader:
        img, labels = img.to(device), labels.to(device)
        pred = model(img)
        loss = criterion(pred, labels)  # the mean over the batch
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(labels)
        count += len(labels)
    return total_loss / count


def evaluate(model: nn.Module, loader, device: torch.device | str) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` over every sample of `loader`, in eval mode,
    without gradients. `model` is already on `device`.
    Returns (loss, accuracy) as Python floats, accuracy a fraction in [0, 1].
    """
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for img, labels in loader:
            img, labels = img.to(device), labels.to(device)
            pred = model(img)
            total_loss += F.cross_entropy(pred, labels, reduction="sum").item()
            correct += (pred.argmax(dim=1) == labels).sum().item()
            count += len(labels)
    return total_loss / count, correct / count


class EarlyStopping:
    """Stop training once the validation loss has not improved for `patience` epochs in a row.

    An epoch improves when val_loss < best - min_delta. `step(val_loss, model)`, once per epoch,
    returns True when training should stop; with a model it keeps a copy of the best weights,
    which `restore(model)` loads back. Patience 2, losses 1.0, 0.9, 0.95, 0.96 → False, False,
    False, True.
    """

    def __init__(self, patience: int, min_delta: float = 0.0):
        self.patience = patience
        self.min_delta = min_delta
        self.best = float("inf")  # the best validation loss so far
        self.counter = 0  # epochs in a row without improvement
        self.best_state = None  # a copy of the best weights

    def step(self, val_loss: float, model: nn.Module | None = None) -> bool:
        if val_loss < self.best - self.min_delta:  # improved: remember it, reset the counter
            self.best = val_loss
            self.counter = 0
            if model is not None:
                self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:  # not improved: add 1
            self.counter += 1
        return self.counter >= self.patience

    def restore(self, model: nn.Module) -> nn.Module:
        if self.best_state is None:
            raise RuntimeError("no weights stored: pass the model to step(val_loss, model)")
        model.load_state_dict(self.best_state)
        return model


def iou(box1, box2) -> float:
    """Intersection over union of two boxes (x1, y1, x2, y2); 0 when the union has no area."""
    x1, y1 = max(box1[0], box2[0]), max(box1[1], box2[1])
    x2, y2 = min(box1[2], box2[2]), min(box1[3], box2[3])
    intersection = max(x2 - x1, 0) * max(y2 - y1, 0)
    area1 = (box1[2] - box1[0]) * (box1[3] - box1[1])
    area2 = (box2[2] - box2[0]) * (box2[3] - box2[1])
    union = area1 + area2 - intersection
    return float(intersection / union) if union > 0 else 0.0


def nms_rows(rows: list, iou_threshold: float) -> list:
    """Non-maximum suppression on rows [class, score, x1, y1, x2, y2].

    Repeatedly keep the row of highest score left and drop the rows of its class whose IoU
    with it is greater than `iou_threshold` (rows of another class are never dropped).
    Returns the kept rows in descending score order (ties: input order); `rows` is not modified.
    """
    bboxes = sorted(rows, key=lambda box: box[1], reverse=True)  # a new list, highest score first
    bboxes_after_nms = []
    while bboxes:
        chosen_box = bboxes.pop(0)  # the highest score left
        bboxes = [
            box
            for box in bboxes
            if box[0] != chosen_box[0]  # another class
            or iou(chosen_box[2:], box[2:]) <= iou_threshold  # same class, small overlap
        ]
        bboxes_after_nms.append(chosen_box)
    return bboxes_after_nms


# ============================================================== given code: the epoch loop
def fit(model: nn.Module, train_loader, val_loader, optimizer: torch.optim.Optimizer,
        device: torch.device | str, epochs: int, patience: int) -> dict:
    """The seed's loop: at most `epochs` epochs of train + evaluate, early stopping with
    `patience`, then the weights of the best epoch restored. `model` is already on `device`.
    Returns per-epoch lists of Python floats: train_loss, val_loss, val_acc.
    """
    stopper = EarlyStopping(patience)
    history = {"train_loss": [], "val_loss": [], "val_acc": []}
    for epoch in range(1, epochs + 1):
        train_loss = train(model, train_loader, optimizer, device)
        val_loss, val_acc = evaluate(model, val_loader, device)
        for key, value in zip(history, (train_loss, val_loss, val_acc)):
            history[key].append(value)
        print(f"epoch {epoch}/{epochs}: train loss {train_loss:.3f}, valid loss {val_loss:.3f}, "
              f"valid accuracy {val_acc:.3f}")
        if stopper.step(val_loss, model):
            print(f"early stopping: no improvement for {patience} epochs")
            break
    stopper.restore(model)
    return history


# ============================================================== the seed's bugs, as data
# answer cell (its grade id) → the objects of this module it holds, in order
CELLS: dict[str, tuple[str, ...]] = {
    "Net": ("Net",),
    "training": ("train", "evaluate"),
    "EarlyStopping": ("EarlyStopping",),
    "nms_rows": ("iou", "nms_rows"),
}


class SeedBug(NamedTuple):
    check: str        # the check (course.yml) that finds it
    cell: str         # the answer cell it lives in (a key of CELLS)
    fixed: str        # text of fixed_source(cell), exactly once
    broken: str       # what the seed wrote instead
    explanation: str  # why it is a bug (shown in the notebook)


SEED_BUGS: list[SeedBug] = [
    SeedBug("network_assignment", "Net",
            "self.network = nn.Sequential(", "self.network==nn.Sequential(",
            "`==` compares and throws the result away: the layers are built and never stored, so "
            "`Net()` fails on reading `self.network`, which was never assigned."),
    SeedBug("flatten_size", "Net",
            "nn.Linear(64 * 3 * 3, 256),  # 28 -> 14 -> 7 -> 3 after three poolings",
            "nn.Linear(64 * 29 * 29, 256),",
            "three 2×2 poolings take 28 to 14, 7 and 3 (the convolutions are padded): the flattened "
            "map has 64·3·3 = 576 values, not 64·29·29; the first batch fails with a shape mismatch."),
    SeedBug("dropout_rate", "Net",
            "nn.Dropout(0.2),  # drop 20% of the 256 nodes", "nn.Dropout(0,2),  # drop 20% of the 256 nodes",
            "`nn.Dropout(0,2)` is two arguments, p=0 and inplace=2: it drops nothing. A comma is not a "
            "decimal point: `nn.Dropout(0.2)`."),
    SeedBug("dropout_rate", "Net",
            "nn.Dropout(0.2),  # drop 20% of the 64 nodes", "nn.Dropout(0,2),  # drop 20% of the 64 nodes",
            "the same comma in the second dropout layer."),
    SeedBug("softmax_before_loss", "Net",
            "nn.Linear(64, 10),  # logits: nn.CrossEntropyLoss applies log-softmax itself",
            "nn.Linear(64, 10), nn.Softmax(dim=1),  # classification: the outputs sum to 1 (probabilities)",
            "nn.CrossEntropyLoss applies log-softmax to what it gets: after a softmax the scores are "
            "squashed into [0, 1], the loss cannot fall below ln(1 + 9/e) ≈ 1.46 and the gradients "
            "shrink. The network returns logits."),
    SeedBug("accuracy_denominator", "training",
            "return total_loss / count, correct / count",
            "return total_loss / count, correct / len(train_loader)",
            "the accuracy is the number right over the number of samples of *this* loader; the seed "
            "divides by len(train_loader), the number of *training batches*."),
    SeedBug("patience_counter", "EarlyStopping",
            "self.counter += 1", "self.counter = 1",
            "`counter = 1` sets the counter instead of adding to it: it never reaches a patience of "
            "2, and training never stops early."),
    SeedBug("nms_names", "nms_rows",
            "chosen_box = bboxes.pop(0)", "chose_box = bboxes.pop(0)",
            "the box is stored as `chose_box` and used as `chosen_box`: a NameError."),
    SeedBug("nms_names", "nms_rows",
            "iou(chosen_box[2:], box[2:])", "iou(chosen_box[2:], bbox[2:])",
            "the loop variable is `box`, the comparison reads `bbox`: another NameError, met once "
            "two boxes of one class meet."),
]


def fixed_source(cell: str) -> str:
    """The fixed code of answer cell `cell`: the source of its objects in this module."""
    return "\n\n\n".join(textwrap.dedent(inspect.getsource(globals()[name])).rstrip() for name in CELLS[cell])


def broken_source(cell: str, bugs: list[SeedBug] | None = None) -> str:
    """The seed's code of answer cell `cell`: `fixed_source(cell)` with every bug of `bugs`
    (default: SEED_BUGS) that lives in that cell put back."""
    source = fixed_source(cell)
    for bug in SEED_BUGS if bugs is None else bugs:
        if bug.cell != cell:
            continue
        found = source.count(bug.fixed)
        if found != 1:
            raise ValueError(f"seed bug {bug.check!r}: its fixed text occurs {found} times in cell {cell!r}")
        source = source.replace(bug.fixed, bug.broken)
    return source
