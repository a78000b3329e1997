"""Checks of lab transfer (transfer learning). Names and points: course.yml.

Independent of each other: `freeze`, `replace_head` and `trainable_parameters` try the student's
function on models of their own (torchvision's ResNet-18, a small VGG-style network);
`feature_extraction` inspects the notebook's feature-extraction model (which parameters learn,
whether the backbone is still the pre-trained one); `transfer_beats_scratch` compares the
accuracies of the notebook's models on the digits 5-9 of a split.
"""
from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from autograder.checks import count_params
from autograder.checks import call_student, error_line, expect, expect_gpu_execution, fail, fmt, keeps_rng, model_device
from autograder.data import mnist_splits
from autograder.pretrained import load_digit_backbone

__all__ = ["freeze", "replace_head", "trainable_parameters", "feature_extraction", "transfer_beats_scratch", "gpu"]

_TARGET_DIGITS = (5, 6, 7, 8, 9)  # the new task: class c is digit 5 + c
_SPLITS = {"test": "the hidden test split", "val": "the validation split", "train": "the training split"}


# ------------------------------------------------------------------------------ test models
class _SmallVGG(nn.Module):
    """VGG / AlexNet layout in miniature: `features`, `avgpool`, and a `classifier` Sequential
    whose last layer is the head (Linear(24, 10)); with a BatchNorm for buffers."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(nn.Linear(32, 24), nn.ReLU(), nn.Dropout(), nn.Linear(24, 24), nn.ReLU(),
                                        nn.Dropout(), nn.Linear(24, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@lru_cache(maxsize=1)
def _resnet18_prototype() -> nn.Module:
    from torchvision.models import resnet18

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    model = resnet18()  # 11,689,512 parameters; the head is fc: Linear(512, 1000)
    torch.random.set_rng_state(generator_state)  # the student's random stream is left as it was
    return model


def _resnet18() -> nn.Module:
    """A fresh copy of torchvision's ResNet-18 (copying is faster than initialising 11.7 M weights)."""
    return copy.deepcopy(_resnet18_prototype())


def _small_vgg() -> nn.Module:
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    model = _SmallVGG()
    torch.random.set_rng_state(generator_state)
    return model


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _trainable_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def _names(names: list[str], limit: int = 3) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


# ------------------------------------------------------------------------------ freeze
def freeze(freeze_fn) -> None:
    """`freeze(model)` sets requires_grad=False on every parameter, changes no value, and
    returns the model (on torchvision's ResNet-18 and a VGG-style network)."""
    for label, make in (("ResNet-18", _resnet18), ("a VGG-style network", _small_vgg)):
        model = make()
        before = _snapshot(model)
        out = call_student(freeze_fn, f"freeze({label})", model, hint="freeze must not raise on any nn.Module")
        expect(out is model, f"freeze({label}) return value", "the model it was given",
               "None" if out is None else type(out).__name__, "end with `return model` so calls chain")
        left = _trainable_names(model)
        if left:
            total = count_params(model)
            still = count_params(model, trainable_only=True)
            if still == total:
                hint = ("nothing was frozen: `model.requires_grad = False` only adds an attribute and "
                        "`model.eval()` freezes nothing — set p.requires_grad = False for p in model.parameters()")
            elif all(n.endswith("bias") for n in left):
                hint = "the biases still learn: freeze every parameter, not only the weights"
            else:
                hint = "loop over model.parameters() (all of them, nested modules included)"
            fail(f"trainable parameters after freeze({label})", "0", f"{still:,} ({_names(left)})", hint)
        changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
        expect(not changed, f"values after freeze({label})", "unchanged", f"{_names(changed)} changed",
               "freezing only stops learning: do not re-initialise or modify the weights")


# ------------------------------------------------------------------------------ replace_head
@keeps_rng  # the student's new head draws its weights: the notebook's stream is left as it was
def replace_head(replace_head_fn) -> None:
    """`replace_head(model, n)` puts a new trainable nn.Linear(in_features, n) in place of the
    head — `fc` of a (frozen) ResNet-18, the last Linear of a VGG-style `classifier` — keeps
    every other layer, and returns the model."""
    for label, make, num_classes, x in (
        ("ResNet-18", _resnet18, 7, torch.zeros(2, 3, 64, 64)),
        ("a VGG-style network", _small_vgg, 3, torch.zeros(2, 3, 16, 16)),
    ):
        model = make()
        for p in model.parameters():  # as in feature extraction: replace the head of a frozen model
            p.requires_grad_(False)
        is_resnet = hasattr(model, "fc")
        old_head = model.fc if is_resnet else model.classifier[-1]
        where = "model.fc" if is_resnet else "model.classifier[-1]"
        others = {k: v for k, v in _snapshot(model).items() if not k.startswith("fc." if is_resnet else "classifier.6.")}
        old_layers = None if is_resnet else list(model.classifier)
        out = call_student(replace_head_fn, f"replace_head({label}, {num_classes})", model, num_classes,
                           hint="the head is model.fc for a ResNet, the last nn.Linear of model.classifier for VGG/AlexNet")
        expect(out is model, f"replace_head({label}, {num_classes}) return value", "the model it was given",
               "None" if out is None else type(out).__name__, "end with `return model`")
        if not is_resnet:
            classifier = model.classifier
            layers = list(classifier) if isinstance(classifier, nn.Sequential) else None
            expect(layers is not None and len(layers) == len(old_layers)
                   and all(a is b for a, b in zip(layers[:-1], old_layers[:-1])),
                   f"model.classifier after replace_head({label}, {num_classes})",
                   f"the same Sequential of {len(old_layers)} layers, the last one new",
                   type(classifier).__name__ if layers is None else f"{len(layers)} layers"
                   + ("" if len(layers) != len(old_layers) else ", earlier ones changed"),
                   "replace only the last nn.Linear of the classifier (classifier[i] = nn.Linear(...)), keep the rest")
        head = model.fc if is_resnet else model.classifier[-1]
        what = f"{where} after replace_head({label}, {num_classes})"
        expected = f"Linear(in_features={old_head.in_features}, out_features={num_classes}, bias=True)"
        if not isinstance(head, nn.Linear):
            fail(what, expected, type(head).__name__, "replace the last nn.Linear with a new nn.Linear")
        got = f"Linear(in_features={head.in_features}, out_features={head.out_features}, bias={head.bias is not None})"
        if got != expected:
            hint = ("in_features must be the old head's (old.in_features), not a fixed number"
                    if head.in_features != old_head.in_features else
                    "out_features is num_classes" if head.out_features != num_classes else "keep the bias")
            fail(what, expected, got, hint)
        expect(head is not old_head, what, "a new nn.Linear", "the old layer, changed",
               "create a new nn.Linear: its weights start random and it learns")
        frozen = [n for n, p in head.named_parameters() if not p.requires_grad]
        expect(not frozen, f"requires_grad of the new head ({where})", "True", f"False for {', '.join(frozen)}",
               "a new nn.Linear learns by default: do not freeze it")
        now = _snapshot(model)
        changed = [k for k, v in others.items() if k not in now or not torch.equal(now[k], v)]
        unfrozen = [n for n, p in model.named_parameters() if p.requires_grad and not n.startswith(
            "fc." if is_resnet else f"classifier.{len(model.classifier) - 1}.")]
        expect(not changed and not unfrozen, f"the rest of {label} after replace_head", "unchanged and still frozen",
               f"{_names(changed or unfrozen)} {'changed' if changed else 'trainable'}",
               "replace the head only; leave every other layer as it was")
        model.eval()
        with torch.no_grad():
            try:
                y = model(x)
            except Exception as err:  # noqa: BLE001
                fail(f"{label} output after replace_head", f"shape ({len(x)}, {num_classes})", error_line(err),
                     "the new head must take the old head's in_features")
        expect(tuple(y.shape) == (len(x), num_classes), f"{label} output after replace_head",
               f"shape ({len(x)}, {num_classes})", f"shape {tuple(y.shape)}", "the new head has num_classes outputs")


# ------------------------------------------------------------------------------ trainable_parameters
class _Tied(nn.Module):
    """One Linear under two names, used twice (a shared parameter counts once), and a BatchNorm
    (its running statistics are buffers, not parameters)."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(4, 4)
        self.again = self.shared
        self.norm = nn.BatchNorm1d(4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.again(self.norm(self.shared(x))))


@keeps_rng
def trainable_parameters(trainable_parameters_fn) -> None:
    """`trainable_parameters(model)` is the number of parameter values with requires_grad (an int):
    ResNet-18 with layer1 frozen, with only `fc` trainable, with nothing frozen; a model with a
    shared layer and a BatchNorm."""
    resnet = _resnet18()
    for p in resnet.layer1.parameters():
        p.requires_grad_(False)
    layer1 = count_params(resnet.layer1)  # 147,968
    _expect_count(call_student(trainable_parameters_fn, "trainable_parameters(ResNet-18)", resnet),
                  11_689_512 - layer1, "ResNet-18 with layer1 frozen")
    for p in resnet.parameters():
        p.requires_grad_(False)
    for p in resnet.fc.parameters():
        p.requires_grad_(True)
    _expect_count(call_student(trainable_parameters_fn, "trainable_parameters(ResNet-18)", resnet),
                  513_000, "ResNet-18, only fc trainable", "fc alone: 512·1000 + 1000 = 513,000")
    for p in resnet.parameters():
        p.requires_grad_(True)
    _expect_count(call_student(trainable_parameters_fn, "trainable_parameters(ResNet-18)", resnet),
                  11_689_512, "ResNet-18, nothing frozen")
    _expect_count(call_student(trainable_parameters_fn, "trainable_parameters(a model with a shared layer)", _Tied()),
                  20 + 8 + 10, "a model using one Linear(4, 4) twice, with a BatchNorm1d(4)",
                  "a shared parameter counts once (model.parameters() lists it once); buffers do not count")


def _expect_count(got: Any, expected: int, what: str, extra: str = "") -> None:
    label = f"trainable_parameters({what})"
    if isinstance(got, torch.Tensor) and got.numel() == 1 and not got.is_floating_point():
        fail(label, f"the int {expected:,}", f"a tensor ({int(got):,})", "return a Python int: sum(...) of p.numel()")
    if not isinstance(got, int) or isinstance(got, bool):
        fail(label, f"the int {expected:,}", f"{type(got).__name__} {fmt(got)}", "return a Python int")
    if got != expected:
        hint = extra or "sum p.numel() over model.parameters() with p.requires_grad"
        if got < 1000 and expected >= 1000:
            hint = "count the values (p.numel()), not the tensors"
        fail(label, f"{expected:,}", f"{got:,}", hint)


# ------------------------------------------------------------------------------ feature_extraction
def feature_extraction(model: nn.Module, num_classes: int = 5) -> None:
    """The feature-extraction model: DigitCNN's layout with a new head `fc` of `num_classes`
    outputs; only `fc.weight` and `fc.bias` learn; every backbone value is still the pre-trained
    one (`autograder.pretrained.load_digit_backbone()`)."""
    what = "feature-extraction model"
    if not isinstance(model, nn.Module):
        fail(what, "an nn.Module", type(model).__name__, "pass the model you trained with a frozen backbone")
    pretrained = load_digit_backbone()
    state = model.state_dict()
    missing = [k for k in pretrained if k not in state]
    extra = [k for k in state if k not in pretrained]
    expect(not missing and not extra, f"{what} layers", "DigitCNN's (features.*, fc.*)",
           f"missing {_names(missing)}" if missing else f"extra {_names(extra)}",
           "start from DigitCNN with load_digit_backbone()'s weights")
    head = getattr(model, "fc", None)
    in_features = pretrained["fc.weight"].shape[1]
    if not isinstance(head, nn.Linear) or (head.in_features, head.out_features) != (in_features, num_classes):
        fail(f"{what} head (fc)", f"Linear(in_features={in_features}, out_features={num_classes})", repr(head)[:80],
             f"replace_head(model, {num_classes}): the digits 5-9 are {num_classes} classes")
    trainable = _trainable_names(model)
    backbone_trainable = [n for n in trainable if not n.startswith("fc.")]
    if backbone_trainable:
        fail(f"{what}: trainable backbone parameters", "none (only fc.weight and fc.bias learn)",
             _names(backbone_trainable), "freeze(model) before replace_head: the backbone must not learn")
    frozen_head = [n for n, p in model.named_parameters() if n.startswith("fc.") and not p.requires_grad]
    if frozen_head:
        fail(f"{what}: trainable head parameters", "fc.weight, fc.bias", f"{', '.join(frozen_head)} frozen",
             "replace the head after freezing: freeze(model) then replace_head(model, 5), not the other way round")
    changed = [k for k, v in pretrained.items() if not k.startswith("fc.") and not torch.equal(state[k].detach().cpu(), v)]
    expect(not changed, f"{what} backbone values", "the pre-trained ones (load_digit_backbone())",
           f"{_names(changed)} differ",
           "load the pre-trained weights and keep them frozen while the head trains")


# ------------------------------------------------------------------------------ transfer_beats_scratch
def _target_digits(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    X, y = mnist_splits()[split].tensors
    keep = y >= _TARGET_DIGITS[0]
    return X[keep], y[keep] - _TARGET_DIGITS[0]  # digits 5-9 → classes 0-4


def _accuracy(model: Any, name: str, split: str) -> float:
    what = f"{name} accuracy on {_SPLITS.get(split, split)}'s digits 5-9"
    if not isinstance(model, nn.Module):
        fail(what, "an nn.Module", type(model).__name__, "pass the trained model")
    X, y = _target_digits(split)
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(X.to(device))
        if logits.shape != (len(y), len(_TARGET_DIGITS)):
            fail(what, f"logits of shape (N, {len(_TARGET_DIGITS)})", f"shape {tuple(logits.shape)}",
                 "the head needs 5 outputs: class c is digit 5 + c")
        return float((logits.argmax(dim=1).cpu() == y).float().mean())
    except (NotImplementedError, AssertionError):
        raise
    except Exception as err:  # noqa: BLE001 — the student's model may raise anything
        fail(what, "a model that runs on [N, 1, 28, 28] digits", error_line(err), "fix the model first")
        raise  # unreachable
    finally:
        model.train(was_training)


def transfer_beats_scratch(transferred: nn.Module | dict[str, nn.Module], scratch: nn.Module,
                           split: str = "test", threshold: float = 0.0) -> None:
    """Each transferred model (one, or a dict name → model) classifies the digits 5-9 of `split`
    (as classes 0-4) at least as well as the model trained from scratch on the same labelled
    examples, and at least at `threshold`."""
    models = transferred if isinstance(transferred, dict) else {"transferred model": transferred}
    base = _accuracy(scratch, "from-scratch model", split)
    expect(base >= 0.5, f"from-scratch model accuracy on {_SPLITS.get(split, split)}'s digits 5-9", "≥ 0.50 (a trained model)",
           f"{base:.3f}", "train the scratch model on the same labelled examples before comparing")
    for name, model in models.items():
        acc = _accuracy(model, name, split)
        where = f"{name} accuracy on {_SPLITS.get(split, split)}'s digits 5-9"
        expect(acc >= base, where, f"≥ {base:.3f} (from scratch on the same labelled examples)", f"{acc:.3f}",
               "keep the pre-trained weights (load them, a low learning rate when fine-tuning) and train on the same examples")
        expect(acc >= threshold, where, f"≥ {threshold:g}", f"{acc:.3f}",
               "train longer, or check the learning rate and which parameters learn")


# ------------------------------------------------------------------------------ gpu
def gpu() -> None:
    """The graded training ran on the device the grader offered (skipped without CUDA)."""
    expect_gpu_execution("the transfer training")
