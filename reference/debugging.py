"""Lab debugging — debugging a training script (seeds 000, 001, 003).

The lecture's code trains a CNN on MNIST-like digits, stops early, reports its test accuracy
overall and per class, and filters detections with NMS, and it carries real bugs. This module is
that script **fixed**; `SEED_BUGS` is the table of the seed's bugs, each a piece of fixed text and
the broken text the seed wrote instead, with what running the broken text shows (`symptom`, for
the student) and why it is wrong (`explanation`, the fix: for the solution and the instructor).
The student starts from `broken_source(cell)` (the fixed code of an answer cell with its seed
bugs put back), and one check per bug says whether it is still there, by what it observes. No
code is written twice: the broken script is derived from this one.

The script, one answer cell each (`CELLS`):
    Net              the seed's Fashion-MNIST CNN ("Anet") for 1x28x28 digits, block by block
    MLP              the lecture's first model, with dropout (lab 07's MLP)
    training         train(model, loader, optimizer, device) -> mean loss per sample (lab 07)
                     evaluate(model, loader, device) -> (loss, accuracy), per sample (lab 07)
    EarlyStopping    patience counter with a copy of the best weights (lab 08)
    fit              epoch_report(epoch, epochs, history, best_epoch) -> the line printed per epoch
                     fit(...) -> history: the seed's epoch loop with early stopping
    percent_correct  percent_correct(model, test_loader, device) -> test accuracy in percent
    class_accuracy   class_accuracy(model, test_loader, classes, device) -> {class: percent}
    nms_rows         iou and the lecture's NMS on [class, score, x1, y1, x2, y2] rows (lab 14)

Shapes through Net (x: [N, 1, 28, 28]); a 3x3 convolution with padding 1 keeps the size, a 2x2
max pooling halves it, rounding down:
    block1    conv 1→16, pool   [N, 16, 14, 14]      160 params
    block2    conv 16→32, pool  [N, 32, 7, 7]      4,640
    block3    conv 32→64, pool  [N, 64, 3, 3]     18,496   (7 // 2 = 3)
    network   flatten           [N, 576]
              576→256→64→10     [N, 10] logits   164,810   (dropout 0.2 after each hidden layer)
                                                 188,106
The seed's network had two or three convolutions per block (the same channels, the same
poolings, so the same 64·3·3 = 576 features on 28x28 input); one per block trains in seconds on
a CPU. Its `64*29*29` matches no input size: 29 is not what three poolings leave of 28.

Where the seeds differ from this script: the bug of seed 003's Keras CNN (its second block reads
`il`, the input, instead of the first block's output) is written here in Net's PyTorch forward
(block 2 fed `x`, not block 1's output). Keras infers a convolution's input channels and so runs
on without block 1; a PyTorch convolution has fixed input channels, and the same slip fails at
block 2 on the channel count. Seed 000's AlexNet (test accuracy over the training set's size,
printed as "train accuracy") and its `def forward` at module level (seed 000's dropout MLP and
AlexNet) are written on MLP and `percent_correct`; seed 001's per-class accuracy is
`class_accuracy`.
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
    "MLP",
    "train",
    "evaluate",
    "EarlyStopping",
    "epoch_report",
    "fit",
    "percent_correct",
    "class_accuracy",
    "iou",
    "nms_rows",
    "CELLS",
    "SeedBug",
    "SEED_BUGS",
    "fixed_source",
    "broken_source",
    "fixes",
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
    pooling (height and width halve, rounded down); the blocks have 16, 32 and 64 channels, and
    each reads the output of the one before. The classifier (`network`) flattens the last feature
    map and maps it to 256, 64 and 10 outputs, with ReLU and 20% dropout after both hidden layers.
    x: [N, 1, 28, 28] → [N, 10], the class scores nn.CrossEntropyLoss expects.
    """

    def __init__(self):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, 16, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.block3 = nn.Sequential(nn.Conv2d(32, 64, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.network = nn.Sequential(  # `=` stores the layers (the seed's `==` compared them with nothing)
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
        x1 = self.block1(x)      # [N, 16, 14, 14]
        x2 = self.block2(x1)     # [N, 32, 7, 7]: block 2 reads block 1's output, not the input x
        x3 = self.block3(x2)     # [N, 64, 3, 3]
        return self.network(x3)  # [N, 10] logits


class MLP(nn.Module):
    """The lecture's first model, with dropout: flatten, then 784→256→128→10 with ReLU and 20%
    dropout after both hidden layers (lab 07's MLP; 235,146 parameters).
    x: [N, 1, 28, 28] → [N, 10] logits.
    """

    def __init__(self):
        super().__init__()
        self.network = nn.Sequential(
            nn.Flatten(),
            nn.Linear(28 * 28, 256), nn.ReLU(), nn.Dropout(0.2),
            nn.Linear(256, 128), nn.ReLU(), nn.Dropout(0.2),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # a method: indented inside the class
        return self.network(x)


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
    return total_loss / count, correct / count  # over the samples this loader holds


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
            self.counter += 1  # add 1 (the seed's `= 1` set it to 1 again and again)
        return self.counter >= self.patience

    def restore(self, model: nn.Module) -> nn.Module:
        if self.best_state is None:
            raise RuntimeError("no weights stored: pass the model to step(val_loss, model)")
        model.load_state_dict(self.best_state)
        return model


def epoch_report(epoch: int, epochs: int, history: dict, best_epoch: int) -> str:
    """The line fit prints after epoch `epoch` (1-based) of `epochs`: the epoch's train loss,
    validation loss and validation accuracy (the last values of `history`, lists as fit returns
    them), then the best validation loss so far (the least of history's) and the epoch
    `best_epoch` it came from; 3 decimals. E.g. "epoch 3/6: train loss 0.700, valid loss 0.900,
    valid accuracy 0.700, best valid loss 0.800 (epoch 2)".
    """
    line = (f"epoch {epoch}/{epochs}: train loss {history['train_loss'][-1]:.3f}, "
            f"valid loss {history['val_loss'][-1]:.3f}, valid accuracy {history['val_acc'][-1]:.3f}")
    best = min(history["val_loss"])  # the best validation loss so far
    return line + ", best valid loss {:.3f} (epoch {})".format(best, best_epoch)  # the loss, not best_epoch.best


def fit(model: nn.Module, train_loader, valid_loader, optimizer: torch.optim.Optimizer,
        device: torch.device | str, epochs: int, patience: int) -> dict:
    """The seed's loop: at most `epochs` epochs, each one epoch of `train` on `train_loader` and
    then `evaluate` on `valid_loader`, printing `epoch_report`; stops once the validation loss
    has not improved for `patience` epochs (EarlyStopping), then restores the best epoch's
    weights. `model` is already on `device`.
    Returns per-epoch lists of Python floats: train_loss, val_loss, val_acc.
    """
    stopper = EarlyStopping(patience)
    history = {"train_loss": [], "val_loss": [], "val_acc": []}
    best_epoch, stop = 0, False
    for epoch in range(1, epochs + 1):
        if stop:  # the last epoch was the `patience`-th without improvement
            print(f"early stopping: no improvement for {patience} epochs")
            break
        history["train_loss"].append(train(model, train_loader, optimizer, device))
        # validation: inside the epoch loop, after every epoch (not once, after the loop)
        val_loss, val_acc = evaluate(model, valid_loader, device)
        history["val_loss"].append(val_loss)
        history["val_acc"].append(val_acc)
        stop = stopper.step(val_loss, model)
        if stopper.counter == 0:  # this epoch improved: the best so far
            best_epoch = epoch
        print(epoch_report(epoch, epochs, history, best_epoch))
    stopper.restore(model)
    return history


def percent_correct(model: nn.Module, test_loader, device: torch.device | str) -> float:
    """The percentage (0 to 100) of the samples of `test_loader` that `model` classifies right,
    in eval mode without gradients; prints it as the test accuracy (seed 000's AlexNet).
    `model` is already on `device`. Returns a Python float.
    """
    model.eval()
    correct = 0
    with torch.no_grad():
        for xx, yy in test_loader:
            data, target = xx.to(device), yy.to(device)
            _, predicted = torch.max(model(data), 1)
            correct += predicted.eq(target).sum().item()
    accuracy = 100.0 * correct / len(test_loader.dataset)  # the test set's size, the loader it counted
    print("test accuracy:", accuracy)  # what was measured: the test set
    return accuracy


def class_accuracy(model: nn.Module, test_loader, classes: list, device: torch.device | str) -> dict:
    """Per class, the percentage (0 to 100) of its samples in `test_loader` that `model`
    classifies right, in eval mode without gradients (seed 001's per-class accuracy; every class
    must occur in the loader). `classes[k]` names label k; prints one line per class.
    Returns {class name: percentage} (Python floats), in the order of `classes`.
    """
    correct_pred = {classname: 0 for classname in classes}
    total_pred = {classname: 0 for classname in classes}
    model.eval()
    with torch.no_grad():
        for images, labels in test_loader:
            images, labels = images.to(device), labels.to(device)
            _, predictions = torch.max(model(images), 1)
            for label, prediction in zip(labels, predictions):
                if label == prediction:
                    correct_pred[classes[label]] += 1
                total_pred[classes[label]] += 1  # every sample counts, right or wrong: outside the if
    accuracy = {}
    for classname, correct_count in correct_pred.items():
        accuracy[classname] = 100 * float(correct_count) / total_pred[classname]
        print(f"Accuracy for class: {classname:5s} is {accuracy[classname]:.1f} %")
    return accuracy


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


# ============================================================== the seed's bugs, as data
# answer cell (its grade id) → the objects of this module it holds, in order
CELLS: dict[str, tuple[str, ...]] = {
    "Net": ("Net",),
    "MLP": ("MLP",),
    "training": ("train", "evaluate"),
    "EarlyStopping": ("EarlyStopping",),
    "fit": ("epoch_report", "fit"),
    "percent_correct": ("percent_correct",),
    "class_accuracy": ("class_accuracy",),
    "nms_rows": ("iou", "nms_rows"),
}


def N_(message: str) -> str:
    """Marks `message` as a msgid of the lab's catalog (Babel's `N_` keyword: babel.cfg extracts
    it from this module into autograder/locale/<lang>/LC_MESSAGES/debugging.po) and returns it
    unchanged: the template translates a symptom where it shows it, `_(bug.symptom)`."""
    return message


class SeedBug(NamedTuple):
    check: str        # the check (course.yml) that finds it
    cell: str         # the answer cell it lives in (a key of CELLS)
    fixed: str        # text of fixed_source(cell), exactly once (after the bugs listed before it)
    broken: str       # what the seed wrote instead
    symptom: str      # what running the broken script shows (the student's notebook, translated: N_): never the fix
    explanation: str  # why it is a bug, and the fix (the solution and the instructor only)


_VALIDATION = """\
        val_loss, val_acc = evaluate(model, valid_loader, device)
        history["val_loss"].append(val_loss)
        history["val_acc"].append(val_acc)
        stop = stopper.step(val_loss, model)
        if stopper.counter == 0:  # this epoch improved: the best so far
            best_epoch = epoch
        print(epoch_report(epoch, epochs, history, best_epoch))"""

SEED_BUGS: list[SeedBug] = [
    SeedBug("network_assignment", "Net",
            "self.network = nn.Sequential(  # `=` stores the layers (the seed's `==` compared them with nothing)",
            "self.network==nn.Sequential(",
            N_("`Net()` fails at once: AttributeError: 'Net' object has no attribute 'network'."),
            "`==` compares and throws the result away: the layers are built and never stored, so "
            "`Net()` fails on reading `self.network`, which was never assigned. Fix: "
            "`self.network = nn.Sequential(...)`."),
    SeedBug("flatten_size", "Net",
            "nn.Linear(64 * 3 * 3, 256),  # 28 -> 14 -> 7 -> 3 after three poolings",
            "nn.Linear(64 * 29 * 29, 256),",
            N_("the first batch fails in the classifier's first Linear layer: \"mat1 and mat2 shapes cannot be "
               "multiplied (64x576 and 53824x256)\"."),
            "three 2×2 poolings take 28 to 14, 7 and 3 (the convolutions are padded): the flattened "
            "map has 64·3·3 = 576 values, not 64·29·29. Fix: `nn.Linear(64 * 3 * 3, 256)`."),
    SeedBug("dropout_rate", "Net",
            "nn.Dropout(0.2),  # drop 20% of the 256 nodes", "nn.Dropout(0,2),  # drop 20% of the 256 nodes",
            N_("nothing fails; printed, the layer after the first hidden layer reads `Dropout(p=0, inplace=2)`, "
               "where its comment promises 20%."),
            "`nn.Dropout(0,2)` is two arguments, p=0 and inplace=2: it drops nothing. A comma is not a "
            "decimal point. Fix: `nn.Dropout(0.2)`."),
    SeedBug("dropout_rate", "Net",
            "nn.Dropout(0.2),  # drop 20% of the 64 nodes", "nn.Dropout(0,2),  # drop 20% of the 64 nodes",
            N_("the second dropout layer prints the same."),
            "the same comma in the second dropout layer. Fix: `nn.Dropout(0.2)`."),
    SeedBug("softmax_before_loss", "Net",
            "nn.Linear(64, 10),  # logits: nn.CrossEntropyLoss applies log-softmax itself",
            "nn.Linear(64, 10), nn.Softmax(dim=1),  # classification: the outputs sum to 1 (probabilities)",
            N_("training runs, but no loss can fall below 1.46, even on samples the network gets right: after two "
               "epochs the validation loss is 1.719 and the accuracy 0.748 (0.405 and 0.896 once fixed; seed 0)."),
            "nn.CrossEntropyLoss applies log-softmax to what it gets: after a softmax the scores are "
            "squashed into [0, 1], the loss cannot fall below ln(1 + 9/e) ≈ 1.46 and the gradients "
            "shrink. Fix: remove the softmax; the network returns logits."),
    SeedBug("block_wiring", "Net",
            "x2 = self.block2(x1)     # [N, 32, 7, 7]: block 2 reads block 1's output, not the input x",
            "x2 = self.block2(x)      # [N, 32, 7, 7]",
            N_("the first batch fails in block 2: \"expected input[64, 1, 28, 28] to have 16 channels, but got 1 "
               "channels instead\"."),
            "seed 003's Keras CNN feeds its second block `il`, the input, instead of the first block's "
            "output; written in PyTorch, Net's forward feeds block 2 `x`. Keras adapts the convolution to 1 "
            "channel and silently drops block 1; PyTorch's convolution expects 16 channels and fails. "
            "Fix: `x2 = self.block2(x1)`."),
    SeedBug("mlp_forward", "MLP",
            "    def forward(self, x: torch.Tensor) -> torch.Tensor:  # a method: indented inside the class\n"
            "        return self.network(x)",
            "def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
            "    return self.network(x)",
            N_("`MLP()` builds, but calling it fails: NotImplementedError: Module [MLP] is missing the required "
               "\"forward\" function."),
            "`def forward` at module level (seed 000's dropout MLP and its AlexNet) defines a plain function, "
            "not a method of the class: nn.Module finds no forward. Fix: indent it into the class body."),
    SeedBug("accuracy_denominator", "training",
            "return total_loss / count, correct / count  # over the samples this loader holds",
            "return total_loss / count, correct / len(train_loader)",
            N_("the validation accuracy printed after each epoch is above 1: 6.073, then 8.145 (seed 0)."),
            "the accuracy is the number right over the number of samples of *this* loader; the seed "
            "divides by len(train_loader), the number of *training batches*. Fix: `correct / count`."),
    SeedBug("patience_counter", "EarlyStopping",
            "self.counter += 1  # add 1 (the seed's `= 1` set it to 1 again and again)", "self.counter = 1",
            N_("fed 1.0, 0.9, 0.95, 0.96 with patience 2, `step` never says stop and the counter stays at 1."),
            "`counter = 1` sets the counter instead of adding to it: it never reaches a patience of "
            "2, and training never stops early. Fix: `self.counter += 1`."),
    SeedBug("validation_per_epoch", "fit",
            "        # validation: inside the epoch loop, after every epoch (not once, after the loop)\n" + _VALIDATION,
            "    # validation\n" + textwrap.dedent(_VALIDATION).replace("\n", "\n    ").join(["    ", ""]),
            N_("the epochs train one after another without a word; the validation loss and accuracy are printed "
               "once, after the last epoch, and early stopping never stops anything."),
            "the validation block is dedented out of the epoch loop (seed 000's `model.eval()` at the loop's "
            "level): it runs once, after training, and early stopping sees one loss. Fix: indent it into the loop."),
    SeedBug("fit_runs", "fit",
            "evaluate(model, valid_loader, device)", "evaluate(model, val_loader, device)",
            N_("the first epoch trains, then fit stops: NameError: name 'val_loader' is not defined."),
            "the lecture names the loader `valid_loader` and reads `val_loader` (seed 000). Fix: pass "
            "`valid_loader`, fit's own argument, to evaluate."),
    SeedBug("best_epoch_report", "fit",
            '.format(best, best_epoch)  # the loss, not best_epoch.best',
            ".format(best_epoch.best, best_epoch)",
            N_("the first epoch trains and validates, then fit stops: AttributeError: 'int' object has no "
               "attribute 'best'."),
            "`best_epoch` is an epoch number, an int, with no `.best`; the seed's `best_epoch.best` meant "
            "`best`, the best validation loss. Fix: `.format(best, best_epoch)`."),
    SeedBug("percent_correct", "percent_correct",
            "100.0 * correct / len(test_loader.dataset)  # the test set's size, the loader it counted",
            "100.0 * correct / len(train_loader.dataset)",
            N_("after training, the accuracy printed is 25.31 (percent), where the last epoch's validation "
               "accuracy was 0.896 (seed 0)."),
            "seed 000's AlexNet counts the right answers over the test loader and divides by "
            "len(train_loader.dataset), the size of the training set (3,500 here, 1,000 test digits). "
            "Fix: `len(test_loader.dataset)`."),
    SeedBug("percent_correct", "percent_correct",
            'print("test accuracy:", accuracy)  # what was measured: the test set',
            'print("train accuracy:", accuracy)',
            N_("the figure is printed as \"train accuracy\", though no training sample was counted."),
            "the seed prints its test accuracy as \"train accuracy\". Fix: `print(\"test accuracy:\", accuracy)`."),
    SeedBug("class_accuracy", "class_accuracy",
            "total_pred[classes[label]] += 1  # every sample counts, right or wrong: outside the if",
            "    total_pred[classes[label]] += 1",
            N_("every class prints 100.0 %, while the test accuracy overall is 88.6 (seed 0); a class with no "
               "right answer raises ZeroDivisionError."),
            "seed 001 indents `total_pred[...] += 1` under `if label == prediction`: only the right "
            "answers are counted in each class's total, so right / total is 1 (or 0 / 0). Fix: dedent it "
            "to the loop's level."),
    SeedBug("nms_names", "nms_rows",
            "chosen_box = bboxes.pop(0)", "chose_box = bboxes.pop(0)",
            N_("NMS of two boxes fails: NameError: name 'chosen_box' is not defined."),
            "the box is stored as `chose_box` and used as `chosen_box`: a NameError. Fix: one name, "
            "`chosen_box`."),
    SeedBug("nms_names", "nms_rows",
            "iou(chosen_box[2:], box[2:])", "iou(chosen_box[2:], bbox[2:])",
            N_("once that runs, two boxes of one class fail: NameError: name 'bbox' is not defined."),
            "the loop variable is `box`, the comparison reads `bbox`: another NameError, met once "
            "two boxes of one class meet. Fix: `box[2:]`."),
]


def fixed_source(cell: str) -> str:
    """The fixed code of answer cell `cell`: the source of its objects in this module."""
    return "\n\n\n".join(textwrap.dedent(inspect.getsource(globals()[name])).rstrip() for name in CELLS[cell])


def broken_source(cell: str, bugs: list[SeedBug] | None = None) -> str:
    """The seed's code of answer cell `cell`: `fixed_source(cell)` with every bug of `bugs`
    (default: SEED_BUGS) that lives in that cell put back, in SEED_BUGS's order (a bug's fixed
    text may lie inside an earlier bug's: the validation block holds `valid_loader`)."""
    chosen = SEED_BUGS if bugs is None else bugs
    order = {id(b): k for k, b in enumerate(SEED_BUGS)}
    source = fixed_source(cell)
    for bug in sorted(chosen, key=lambda b: order.get(id(b), len(SEED_BUGS))):
        if bug.cell != cell:
            continue
        found = source.count(bug.fixed)
        if found != 1:
            raise ValueError(f"seed bug {bug.check!r}: its fixed text occurs {found} times in cell {cell!r}")
        source = source.replace(bug.fixed, bug.broken)
    return source


def fixes(cell: str) -> str:
    """Comment lines naming each fix of answer cell `cell` (the solution notebook's; never the
    student's): `# <check>: <explanation>`, one bug a paragraph."""
    lines = []
    for bug in SEED_BUGS:
        if bug.cell == cell:
            lines += textwrap.wrap(f"{bug.check}: {bug.explanation}", width=96,
                                   initial_indent="# ", subsequent_indent="#   ")
    return "\n".join(["# The fixes of this cell (the solution only):", *lines]) if lines else ""
