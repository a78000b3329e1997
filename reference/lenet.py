"""Lab lenet — LeNet-5, and CNN vs MLP (seeds 000, 001, 002).

The seed compares a fully connected network with a convolutional one on MNIST, builds LeNet-5
(LeCun et al., 1998) and ends with a "zip-code reader": an OpenCV window where five digits are
drawn with the mouse and recognised. Here the window becomes a plain array (`canvas`) so that
the reader can be tested. Seed 000 names Grad-CAM among the advanced CNN topics ("the CNN and
its layers find the features and guess what the object is"): `grad_cam` shows what it really
is, an explanation of a trained network's decision, on LeNet5's conv2 (Captum's LayerGradCam
is the tests' oracle).

Shapes through LeNet5 (padding 2 on conv1 keeps MNIST's 28x28 where the paper had 32x32 input):
    x      [N, 1, 28, 28]
    conv1  [N, 6, 28, 28]    5x5, padding 2   (6·(1·5·5) + 6     =    156 params)
    pool1  [N, 6, 14, 14]    2x2 max
    conv2  [N, 16, 10, 10]   5x5, no padding  (16·(6·5·5) + 16   =  2,416)
    pool2  [N, 16, 5, 5]     2x2 max
    fc1    [N, 120]          400 → 120        (400·120 + 120     = 48,120)
    fc2    [N, 84]                            (120·84 + 84       = 10,164)
    fc3    [N, 10]                            (84·10 + 10        =    850)
                                                                   61,706
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from autograder.data import draw_zip_code, mnist_splits
from autograder.runtime import count_params, get_device, seed_everything

__all__ = [
    "LeNet5",
    "Standardize",
    "MnistFC",
    "SeedSmallCNN",
    "count_params",
    "train_classifier",
    "accuracy",
    "read_zip_code",
    "grad_cam",
    "draw_zip_code",
    "mnist_splits",
    "seed_everything",
    "get_device",
    "TRAIN_SETTINGS",
    "FAST_SETTINGS",
    "REGULARIZED_SETTINGS",
    "random_shift",
]

# The settings the notebook trains with (benchmarks/lenet.py measures them; course.yml's
# thresholds.accuracy for lenet is derived from that measurement).
TRAIN_SETTINGS = {"epochs": 10, "lr": 1e-3, "batch_size": 64}
# The same network trained well: standardized inputs (Standardize in front) and a one-cycle
# schedule peaking at `lr` (benchmarks/lenet.py measures both recipes).
FAST_SETTINGS = {"epochs": 5, "lr": 1e-2, "batch_size": 64, "one_cycle": True}
# ... and the last points: every digit moved by up to one pixel at random each time it is drawn,
# and label smoothing 0.1; 12 epochs, in batches of 128 to keep them fast.
REGULARIZED_SETTINGS = {"epochs": 12, "lr": 1e-2, "batch_size": 128, "one_cycle": True, "max_shift": 1,
                        "label_smoothing": 0.1}


class LeNet5(nn.Module):
    """LeNet-5 with ReLU and max pooling, for 1x28x28 digits.

    x: [N, 1, 28, 28] → logits [N, num_classes] (no softmax: CrossEntropyLoss applies it).
    Submodules, in order (checks hook each one by name): conv1 (6 filters 5x5, padding 2),
    pool1 (2x2 max), conv2 (16 filters 5x5, no padding), pool2 (2x2 max), then flattened,
    fc1 (120 units), fc2 (84 units), fc3 (num_classes); ReLU after every conv and after fc1 and
    fc2. Work out each layer's output shape and parameters in the table above (61,706 in all).
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5, padding=2)   # [N, 6, 28, 28]
        self.pool1 = nn.MaxPool2d(kernel_size=2, stride=2)        # [N, 6, 14, 14]
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)              # [N, 16, 10, 10]
        self.pool2 = nn.MaxPool2d(kernel_size=2, stride=2)        # [N, 16, 5, 5]
        self.fc1 = nn.Linear(16 * 5 * 5, 120)                     # [N, 120]
        self.fc2 = nn.Linear(120, 84)                             # [N, 84]
        self.fc3 = nn.Linear(84, num_classes)                     # [N, num_classes]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(F.relu(self.conv1(x)))   # [N, 6, 14, 14]
        x = self.pool2(F.relu(self.conv2(x)))   # [N, 16, 5, 5]
        x = torch.flatten(x, 1)                 # [N, 400]
        x = F.relu(self.fc1(x))                 # [N, 120]
        x = F.relu(self.fc2(x))                 # [N, 84]
        return self.fc3(x)                      # [N, num_classes]


class Standardize(nn.Module):
    """x → (x − mean) / std, with the training data's pixel mean and standard deviation.

    Put in front of a network (`nn.Sequential(Standardize(mean, std), LeNet5())`) it gives the
    first layer inputs of mean 0 and variance 1 while everything that feeds the model, the
    grader and `read_zip_code` included, keeps sending pixels in [0, 1]. `mean` and `std` are
    buffers: saved in the `state_dict` and moved by `.to(device)`, never trained.
    """

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class MnistFC(nn.Module):
    """The seed's fully connected network, 784-256-10: 203,530 parameters.

    x: [N, 1, 28, 28] → flatten [N, 784] → fc1 [N, 256] → ReLU → fc2 [N, 10] logits.
    (The seed used Sigmoid and ended in nn.Softmax before nn.CrossEntropyLoss; the loss already
    applies log-softmax, so the network returns logits. The parameter count is the same.)
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, 256)   # 784·256 + 256 = 200,960
        self.fc2 = nn.Linear(256, num_classes)  # 256·10 + 10 = 2,570

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)              # [N, 784]
        return self.fc2(F.relu(self.fc1(x)))  # [N, num_classes]


class SeedSmallCNN(nn.Module):
    """The seed's first CNN: two 3x3 convolutions without pooling, then 4,608 → 48 → 10.

    x: [N, 1, 28, 28] → conv1 [N, 4, 26, 26] → conv2 [N, 8, 24, 24] → flatten [N, 4608]
    → fc1 [N, 48] → fc2 [N, 10]. 222,058 parameters — more than the FC network, almost all of
    them in fc1: without pooling the flattened feature map stays large.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, kernel_size=3)      # 4·9 + 4 = 40
        self.conv2 = nn.Conv2d(4, 8, kernel_size=3)      # 8·4·9 + 8 = 296
        self.fc1 = nn.Linear(8 * 24 * 24, 48)            # 4608·48 + 48 = 221,232
        self.fc2 = nn.Linear(48, num_classes)            # 48·10 + 10 = 490

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))   # [N, 8, 24, 24]
        x = F.relu(self.fc1(torch.flatten(x, 1)))       # [N, 48]
        return self.fc2(x)                              # [N, num_classes]


def random_shift(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Each image of x [N, C, H, W] moved by its own random offset, a whole number of pixels in
    -max_shift..max_shift along each axis (torch's global generator); what moves in from outside
    is 0. Returns a new tensor of x's shape, dtype and device (x itself when max_shift is 0).
    """
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)                                   # [N, C, H + 2m, W + 2m]
    top = torch.randint(0, 2 * max_shift + 1, (n, 1, 1)).to(x.device)     # where each crop starts
    left = torch.randint(0, 2 * max_shift + 1, (n, 1, 1)).to(x.device)
    rows = top + torch.arange(h, device=x.device).view(1, h, 1)           # [N, H, 1]
    cols = left + torch.arange(w, device=x.device).view(1, 1, w)          # [N, 1, W]
    images = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded[images, :, rows, cols].permute(0, 3, 1, 2)              # [N, H, W, C] → [N, C, H, W]


def train_classifier(
    model: nn.Module,
    dataset: TensorDataset,
    epochs: int = 3,
    lr: float = 1e-3,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    one_cycle: bool = False,
    max_shift: int = 0,
    label_smoothing: float = 0.0,
) -> list[float]:
    """Train `model` on an in-memory `TensorDataset` (X [N, ...], y int64 [N]) with Adam and
    cross-entropy; return the mean training loss of each epoch (per sample).

    `one_cycle`: the learning rate follows a one-cycle schedule (OneCycleLR, stepped after every
    batch): it rises from lr/25 to `lr` over the first 30% of the steps, then anneals to almost
    zero. Without it the learning rate stays `lr`.
    `max_shift`: every image of a batch is moved by up to that many pixels (`random_shift`), a new
    offset each time it is drawn. `label_smoothing`: passed to `F.cross_entropy`.

    Mini-batches come from a random permutation of the indices drawn from torch's global
    generator (no DataLoader workers), so after `seed_everything(seed)` a CPU run repeats exactly.
    `device`: where to train (default: `get_device()`); the model is moved there.
    """
    device = torch.device(device) if device is not None else get_device()
    model.to(device)
    X, y = dataset.tensors[0], dataset.tensors[1]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * -(-len(y) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps) if one_cycle else None
    losses = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y))
        total = 0.0
        for start in range(0, len(y), batch_size):
            idx = order[start:start + batch_size]
            xb, yb = random_shift(X[idx], max_shift).to(device), y[idx].to(device)
            loss = F.cross_entropy(model(xb), yb, label_smoothing=label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            total += loss.item() * len(idx)
        losses.append(total / len(y))
    return losses


@torch.no_grad()
def accuracy(model: nn.Module, dataset: TensorDataset, device: torch.device | str | None = None,
             batch_size: int = 500) -> float:
    """Fraction of `dataset` (X [N, ...], y [N]) that `model` classifies right, in eval mode.

    `device`: where to evaluate (default: where the model's parameters are).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device).eval()
    X, y = dataset.tensors[0], dataset.tensors[1]
    correct = 0
    for start in range(0, len(y), batch_size):
        logits = model(X[start:start + batch_size].to(device))
        correct += int((logits.argmax(dim=1).cpu() == y[start:start + batch_size]).sum())
    return correct / len(y)


def read_zip_code(canvas, model: nn.Module) -> str:
    """Read the five digits drawn on a zip-code canvas with a trained digit classifier.

    canvas: uint8 array [200, 520] or [200, 520, 3] (numpy or torch), dark ink on white, with
        five 100x100 boxes whose insides are rows 51:149 and columns 11+100*i : 9+100*(i+1).
    model: maps x [N, 1, 28, 28] in [0, 1] (white digit on black, like the training data)
        to logits [N, 10].
    Returns the five predicted digits as a string, left to right, e.g. "40213".
    """
    img = torch.as_tensor(np.asarray(canvas), dtype=torch.float32)            # [200, 520] or [200, 520, 3]
    if img.ndim == 3:
        img = img.mean(dim=2)                                                 # gray: [200, 520]
    crops = torch.stack([img[51:149, 11 + 100 * i: 9 + 100 * (i + 1)] for i in range(5)])  # [5, 98, 98]
    crops = 255.0 - crops                                                     # ink becomes bright, as in MNIST
    x = F.interpolate(crops.unsqueeze(1), size=(28, 28), mode="area")          # [5, 1, 28, 28], 0..255
    x = x / 255.0                                                             # [0, 1], like the training data
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        digits = model(x.to(device)).argmax(dim=1)                            # [5]
    return "".join(str(int(d)) for d in digits)


def grad_cam(model: nn.Module, layer: nn.Module, x: torch.Tensor, target=None) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., 2017): where in each image `model` finds the evidence for a
    class, as one of its convolution layers sees it.

    model: maps x [N, C, H, W] to logits [N, K]; layer: a submodule of `model` whose output is a
        feature map [N, Ck, h, w] (LeNet5's conv2: [N, 16, 10, 10]); x: [N, C, H, W], on the
        model's device.
    target: the class to explain: None (each image's predicted class), an int (the same class
        for every image) or an int64 tensor [N] (one class per image).
    Returns the heatmaps [N, h, w] at the layer's resolution (not upsampled), detached, on x's
        device: each image's Grad-CAM map for its class (the evidence for the class only, so
        nothing negative) divided by its own maximum, so that its largest value is 1; an image
        with no evidence for its class gets 0 everywhere, never NaN.
    The model runs in eval mode and is left as it was found: its mode, no hook left on any of
    its layers, its parameters' .grad untouched (the images do not interact in eval mode, so one
    backward pass serves the whole batch).
    """
    was_training = model.training
    saved = {}

    def keep(_module, _inputs, out):        # a forward hook: the layer's output, kept with its graph
        saved["maps"] = out

    handle = layer.register_forward_hook(keep)
    try:
        model.eval()
        with torch.enable_grad():
            logits = model(x)                                                # [N, K]
            if target is None:
                target = logits.argmax(dim=1)                                # the predicted classes
            target = torch.as_tensor(target, device=logits.device).long().expand(len(logits))  # [N]
            score = logits.gather(1, target.view(-1, 1)).sum()               # each image's class logit
            maps = saved["maps"]                                             # [N, Ck, h, w]
            grads = torch.autograd.grad(score, maps)[0]                      # [N, Ck, h, w]; no .grad written
    finally:
        handle.remove()
        model.train(was_training)
    weights = grads.mean(dim=(2, 3), keepdim=True)                           # [N, Ck, 1, 1]: each channel's importance
    cam = F.relu((weights * maps).sum(dim=1)).detach()                       # [N, h, w]: the evidence for the class
    peak = cam.amax(dim=(1, 2), keepdim=True)                                # [N, 1, 1]
    return cam / torch.where(peak > 0, peak, torch.ones_like(peak))          # largest value 1; all 0 stays 0
