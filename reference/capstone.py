"""Lab capstone — a CNN of your own, on the GPU (seeds 001, 002).

The seeds end with the data sets that made CNNs famous beyond digits: Fashion-MNIST (seed 001:
an MLP reaches 86.93%, 88.98% with dropout and flips, the "89%"), and CIFAR-10 (seed 001: a
LeNet-like net 56% after 2 epochs, a wider one with dropout 74% after 20; seed 002: a Keras
VGG-style net with dropout). Here students design their own CNN under a budget:

    make_model() -> nn.Module                                      # their architecture
    train_model(model, train_loader, val_loader, device) -> dict   # the history of lab 07

graded on a hidden test split (accuracy ≥ a threshold), a parameter budget, a training-time
budget and where training ran (the GPU when the grader has one). Data: Fashion-MNIST or
CIFAR-10 when they are on disk (`autograder.data.capstone_dataset()` says which), else the
embedded MNIST digits.

The notebook gives a baseline to beat, not the answer: seed 001's first CNN (`BaselineCNN`, its
`forward` where it belongs) trained plainly (`baseline_train`: Adam at 1e-3, 3 epochs, no
schedule, no augmentation) reaches 0.88-0.91 on the digits' validation split, below the
threshold (0.95). The student designs the rest; this module's `CapstoneCNN`, `make_model` and
`train_model` are the solution notebook's answer.

The reference is one small CNN, VGG-style blocks and global average pooling:

    x          [N, C, H, W]           C, H, W = 1, 28, 28 (digits, Fashion-MNIST) or 3, 32, 32 (CIFAR-10)
    block 1    [N, w1, H/2, W/2]      conv 3x3 (padding 1) → max pool 2x2 → BatchNorm → ReLU
    block 2    [N, w2, H/4, W/4]
    block 3    [N, w3, H/8, W/8]      (28 → 14 → 7 → 3;  32 → 16 → 8 → 4)
    pool       [N, w3]                global average pooling: any H, W
    head       [N, 128] → [N, 10]     Linear → ReLU → Dropout → Linear (logits)

with widths (16, 32, 64) for the digits (33,018 parameters: convs 144 + 4,608 + 18,432,
BatchNorms 2·(16 + 32 + 64) = 224, fc1 64·128 + 128 = 8,320, fc2 128·10 + 10 = 1,290) and
(32, 64, 128) for Fashion-MNIST and CIFAR-10 (110,698 and 111,274 parameters).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from autograder.data import DATASETS, capstone_dataset, dataset_splits
from autograder.runtime import count_params, get_device, seed_everything

__all__ = [
    "DATASET",
    "INPUT_SHAPE",
    "NUM_CLASSES",
    "CapstoneCNN",
    "make_model",
    "train_model",
    "evaluate",
    "augment",
    "make_loaders",
    "BaselineCNN",
    "baseline_train",
    "SeedCifarNet",
    "SeedLeNetAsWritten",
    "TRAIN_SETTINGS",
    "capstone_dataset",
    "dataset_splits",
    "count_params",
    "get_device",
    "seed_everything",
]

# The data set of this machine ($COURSE_DATA, i.e. course.yml's data.root, decides) and the
# shape (C, H, W) of one of its images. The notebook's first cells define the same names.
DATASET: str = capstone_dataset()
INPUT_SHAPE: tuple[int, int, int] = DATASETS[DATASET][1]
NUM_CLASSES = 10

# What the notebook's locked training cell and train_model use (benchmarks/capstone.py measures
# them; course.yml's thresholds and budgets for this lab come from that measurement).
TRAIN_SETTINGS = {"batch_size": 64, "lr": 3e-3, "weight_decay": 1e-4,
                  "epochs": {"mnist": 5, "fashion_mnist": 10, "cifar10": 20}}


class CapstoneCNN(nn.Module):
    """A small VGG-style CNN: blocks of conv 3x3 → max pool 2x2 → BatchNorm → ReLU, global
    average pooling, and a two-layer head.

    x: [N, in_channels, H, W] floats in [0, 1] (H, W ≥ 8; 28x28 and 32x32 both work)
    → logits [N, num_classes] (no softmax: the loss applies it).
    Pooling right after each convolution lets BatchNorm and ReLU work on a quarter of the
    values (the same parameters, less time). 33,018 parameters for in_channels=1 with the defaults.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, widths: tuple[int, ...] = (16, 32, 64),
                 hidden: int = 128, dropout: float = 0.2):
        super().__init__()
        blocks, c = [], in_channels
        for w in widths:
            blocks += [
                nn.Conv2d(c, w, kernel_size=3, padding=1, bias=False),  # same H, W; BatchNorm has the bias
                nn.MaxPool2d(2),                                         # halves H and W
                nn.BatchNorm2d(w),
                nn.ReLU(),
            ]
            c = w
        self.features = nn.Sequential(*blocks)              # [N, widths[-1], H/8, W/8] for 3 blocks
        self.pool = nn.AdaptiveAvgPool2d(1)                  # [N, widths[-1], 1, 1]
        self.fc1 = nn.Linear(c, hidden)                      # [N, hidden]
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)            # [N, num_classes]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)                    # [N, w3, H/8, W/8]
        x = torch.flatten(self.pool(x), 1)      # [N, w3]: one average per channel
        x = self.dropout(F.relu(self.fc1(x)))   # [N, hidden]
        return self.fc2(x)                      # [N, num_classes] logits


def make_model() -> nn.Module:
    """A fresh, untrained model for this machine's data set, DATASET.

    Its forward takes x [N, C, H, W] with (C, H, W) = INPUT_SHAPE (the grader feeds the test
    images exactly as `dataset_splits` gives them: floats in [0, 1]) and returns logits
    [N, NUM_CLASSES]. Its parameter count must stay within the lab's budget.
    """
    widths = (16, 32, 64) if DATASET == "mnist" else (32, 64, 128)   # more channels for the harder sets
    return CapstoneCNN(in_channels=INPUT_SHAPE[0], num_classes=NUM_CLASSES, widths=widths, hidden=128)


def augment(x: torch.Tensor, max_shift: int = 2) -> torch.Tensor:
    """Random training-time changes to a batch x [B, C, H, W]; returns a new tensor of the same shape.

    Every image moves by up to `max_shift` pixels in each direction (zero padding, then a random
    H x W crop); colour photos (C = 3, CIFAR-10) are also mirrored left-right half of the time.
    Digits are never mirrored: a mirrored 2 or 7 is no digit. Runs on x's device.
    """
    B, C, H, W = x.shape
    padded = F.pad(x, (max_shift,) * 4)                                        # [B, C, H+2s, W+2s]
    dy = torch.randint(0, 2 * max_shift + 1, (B,), device=x.device)            # top-left corner per image
    dx = torch.randint(0, 2 * max_shift + 1, (B,), device=x.device)
    rows = (dy[:, None] + torch.arange(H, device=x.device))[:, None, :, None]   # [B, 1, H, 1]
    cols = (dx[:, None] + torch.arange(W, device=x.device))[:, None, None, :]   # [B, 1, 1, W]
    batch = torch.arange(B, device=x.device)[:, None, None, None]               # [B, 1, 1, 1]
    chans = torch.arange(C, device=x.device)[None, :, None, None]               # [1, C, 1, 1]
    out = padded[batch, chans, rows, cols]                                      # [B, C, H, W]
    if C == 3:
        flip = torch.rand(B, device=x.device) < 0.5
        out = torch.where(flip[:, None, None, None], out.flip(3), out)
    return out


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device | str) -> tuple[float, float]:
    """Mean loss and accuracy of `model` over every sample of `loader` (lab 07), in eval mode.

    loader yields (x [B, C, H, W], y int64 [B]); returns Python floats: the cross-entropy per
    sample and the fraction (in [0, 1]) classified right, whatever the batch size.
    """
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)                                                  # [B, classes]
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y).sum().item()
        count += len(y)
    return total_loss / count, correct / count


def train_model(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader,
                device: torch.device | str) -> dict:
    """Train `model` on `train_loader` on `device`, evaluating on `val_loader` after every epoch.

    Moves the model to `device` and every batch too. Returns the history of lab 07: a dict of
    per-epoch lists of Python floats, train_loss (mean per sample over the epoch), val_loss and
    val_acc (a fraction in [0, 1], from `evaluate`).
    """
    # The recipe: AdamW with a one-cycle learning rate (warm up to 3e-3, then anneal to ~0),
    # light augmentation (`augment`), and more epochs for the harder data sets.
    epochs = {"mnist": 5, "fashion_mnist": 10, "cifar10": 20}[DATASET]
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=epochs * len(train_loader))
    history = {"train_loss": [], "val_loss": [], "val_acc": []}
    for _ in range(epochs):
        model.train()
        total, count = 0.0, 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(augment(x)), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()                  # one-cycle: the learning rate changes every batch
            total += loss.item() * len(y)
            count += len(y)
        val_loss, val_acc = evaluate(model, val_loader, device)
        history["train_loss"].append(total / count)
        history["val_loss"].append(val_loss)
        history["val_acc"].append(val_acc)
    return history


def make_loaders(splits: dict[str, TensorDataset], batch_size: int = 64) -> tuple[DataLoader, DataLoader]:
    """(train, val) DataLoaders over in-memory TensorDatasets, without worker processes.

    The training loader shuffles (torch's global generator: `seed_everything` repeats it); the
    validation loader keeps its order, in batches of 500. The test split is the grader's.
    """
    train = DataLoader(splits["train"], batch_size=batch_size, shuffle=True)
    val = DataLoader(splits["val"], batch_size=500)
    return train, val


# --------------------------------------------------------------------------- the baseline to beat
class BaselineCNN(nn.Module):
    """Seed 001's first CNN (LeNet-like: two 5x5 convolutions, 2x2 max pooling, three linear
    layers), with its `forward` a method, as the notes meant it (see SeedLeNetAsWritten).

    x: [N, in_channels, size, size] → conv1 [N, 6, size-4, size-4] → pool → conv2 [N, 16, ...]
    → pool → flatten [N, 16·s·s] with s = ((size - 4) // 2 - 4) // 2 (4 for 28x28 digits, 5 for
    CIFAR-10's 32x32) → 120 → 84 → logits [N, num_classes]. 44,426 parameters on the digits.
    """

    def __init__(self, in_channels: int = 1, size: int = 28, num_classes: int = 10):
        super().__init__()
        side = ((size - 4) // 2 - 4) // 2
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def baseline_train(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader,
                   device: torch.device | str, epochs: int = 3, lr: float = 1e-3) -> dict:
    """The plain recipe: Adam at a constant `lr` for `epochs`, no schedule, no augmentation.
    Returns lab 07's history, as `train_model` must."""
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = {"train_loss": [], "val_loss": [], "val_acc": []}
    for _ in range(epochs):
        model.train()
        total, count = 0.0, 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
            count += len(y)
        val_loss, val_acc = evaluate(model, val_loader, device)
        history["train_loss"].append(total / count)
        history["val_loss"].append(val_loss)
        history["val_acc"].append(val_acc)
    return history


# --------------------------------------------------------------------------- the seeds' networks
class SeedCifarNet(nn.Module):
    """Seed 001's "improved" CIFAR-10 network (74% after 20 epochs), as written, logits out.

    x: [N, 3, 32, 32] → conv 5x5 (32) [N, 32, 28, 28] → pool (2, 2, padding 1) [N, 32, 15, 15]
    → conv 5x5 (64) [N, 64, 11, 11] → pool [N, 64, 6, 6] → conv 5x5 (128) [N, 128, 2, 2]
    → pool [N, 128, 2, 2] → flatten 512 → 256 → 128 → 84 → 10. 434,534 parameters: 258,624
    in the convolutions, 175,910 in the fully connected layers.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 5)
        self.conv2 = nn.Conv2d(32, 64, 5)
        self.conv3 = nn.Conv2d(64, 128, 5)
        self.pool = nn.MaxPool2d(2, 2, 1)
        self.fc1 = nn.Linear(128 * 2 * 2, 256)
        self.fc2 = nn.Linear(256, 128)
        self.fc3 = nn.Linear(128, 84)
        self.fc4 = nn.Linear(84, 10)
        self.dropout1 = nn.Dropout(p=0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))                       # [N, 32, 15, 15]
        x = self.pool(F.relu(self.conv2(x)))                       # [N, 64, 6, 6]
        x = self.pool(self.dropout1(F.relu(self.conv3(x))))        # [N, 128, 2, 2]
        x = x.view(-1, 128 * 2 * 2)                                # [N, 512]
        x = self.dropout1(F.relu(self.fc1(x)))
        x = F.relu(self.fc3(F.relu(self.fc2(x))))
        return self.fc4(x)                                         # [N, 10]


class SeedLeNetAsWritten(nn.Module):
    """Seed 001's first CIFAR-10 network with the indentation of the notes: `forward` sits
    inside `__init__`, a local function that is never used. The class has no forward method."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

        def forward(self, x):
            x = self.pool(F.relu(self.conv1(x)))
            x = self.pool(F.relu(self.conv2(x)))
            x = x.view(-1, 16 * 5 * 5)
            x = F.relu(self.fc1(x))
            x = F.relu(self.fc2(x))
            return self.fc3(x)
