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
from autograder.i18n import Domain
from autograder.pretrained import load_digit_backbone

_ = Domain("transfer").gettext


def N_(message: str) -> str:
    """A msgid of the lab's catalog kept in English where it is defined (Babel extracts `N_("...")`),
    translated with `_()` where it is shown."""
    return message


__all__ = ["freeze", "replace_head", "trainable_parameters", "feature_extraction", "transfer_beats_scratch", "gpu"]

_TARGET_DIGITS = (5, 6, 7, 8, 9)  # the new task: class c is digit 5 + c
_SPLITS = {"test": N_("the hidden test split"), "val": N_("the validation split"), "train": N_("the training split")}
# the models' names in messages: the check cells' own and the checks' (others are shown as they are)
_MODEL_NAMES = {"transferred model": N_("transferred model"), "from-scratch model": N_("from-scratch model"),
                "feature extraction": N_("feature extraction"), "fine-tuning": N_("fine-tuning")}


def _split(split: str) -> str:
    return _(_SPLITS[split]) if split in _SPLITS else split


def _model_name(name: str) -> str:
    return _(_MODEL_NAMES[name]) if name in _MODEL_NAMES else name


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
    shown = ", ".join(names[:limit])
    return _("{names} and {n} more").format(names=shown, n=len(names) - limit) if len(names) > limit else shown


# ------------------------------------------------------------------------------ freeze
def freeze(freeze_fn) -> None:
    """`freeze(model)` sets requires_grad=False on every parameter, changes no value, and
    returns the model (on torchvision's ResNet-18 and a VGG-style network)."""
    for label, make in (("ResNet-18", _resnet18), (_("a VGG-style network"), _small_vgg)):
        model = make()
        before = _snapshot(model)
        out = call_student(freeze_fn, f"freeze({label})", model, hint=_("freeze must not raise on any nn.Module"))
        expect(out is model, _("freeze({label}) return value").format(label=label), _("the model it was given"),
               "None" if out is None else type(out).__name__, _("end with `return model` so calls chain"))
        left = _trainable_names(model)
        if left:
            total = count_params(model)
            still = count_params(model, trainable_only=True)
            if still == total:
                hint = _("nothing was frozen: `model.requires_grad = False` only adds an attribute and "
                         "`model.eval()` freezes nothing — set p.requires_grad = False for p in model.parameters()")
            elif all(n.endswith("bias") for n in left):
                hint = _("the biases still learn: freeze every parameter, not only the weights")
            else:
                hint = _("loop over model.parameters() (all of them, nested modules included)")
            fail(_("trainable parameters after freeze({label})").format(label=label), "0", f"{still:,} ({_names(left)})", hint)
        changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
        expect(not changed, _("values after freeze({label})").format(label=label), _("unchanged"),
               _("{names} changed").format(names=_names(changed)),
               _("freezing only stops learning: do not re-initialise or modify the weights"))


# ------------------------------------------------------------------------------ replace_head
@keeps_rng  # the student's new head draws its weights: the notebook's stream is left as it was
def replace_head(replace_head_fn) -> None:
    """`replace_head(model, n)` puts a new trainable nn.Linear(in_features, n) in place of the
    head — `fc` of a (frozen) ResNet-18, the last Linear of a VGG-style `classifier` — keeps
    every other layer, and returns the model."""
    for label, make, num_classes, x in (
        ("ResNet-18", _resnet18, 7, torch.zeros(2, 3, 64, 64)),
        (_("a VGG-style network"), _small_vgg, 3, torch.zeros(2, 3, 16, 16)),
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
                           hint=_("the head is model.fc for a ResNet, the last nn.Linear of model.classifier for VGG/AlexNet"))
        expect(out is model, _("replace_head({label}, {n}) return value").format(label=label, n=num_classes),
               _("the model it was given"), "None" if out is None else type(out).__name__, _("end with `return model`"))
        if not is_resnet:
            classifier = model.classifier
            layers = list(classifier) if isinstance(classifier, nn.Sequential) else None
            expect(layers is not None and len(layers) == len(old_layers)
                   and all(a is b for a, b in zip(layers[:-1], old_layers[:-1])),
                   _("model.classifier after replace_head({label}, {n})").format(label=label, n=num_classes),
                   _("the same Sequential of {n} layers, the last one new").format(n=len(old_layers)),
                   type(classifier).__name__ if layers is None else
                   (_("{n} layers") if len(layers) != len(old_layers) else _("{n} layers, earlier ones changed")).format(
                       n=len(layers)),
                   _("replace only the last nn.Linear of the classifier (classifier[i] = nn.Linear(...)), keep the rest"))
        head = model.fc if is_resnet else model.classifier[-1]
        what = _("{where} after replace_head({label}, {n})").format(where=where, label=label, n=num_classes)
        expected = f"Linear(in_features={old_head.in_features}, out_features={num_classes}, bias=True)"
        if not isinstance(head, nn.Linear):
            fail(what, expected, type(head).__name__, _("replace the last nn.Linear with a new nn.Linear"))
        got = f"Linear(in_features={head.in_features}, out_features={head.out_features}, bias={head.bias is not None})"
        if got != expected:
            hint = (_("in_features must be the old head's (old.in_features), not a fixed number")
                    if head.in_features != old_head.in_features else
                    _("out_features is num_classes") if head.out_features != num_classes else _("keep the bias"))
            fail(what, expected, got, hint)
        expect(head is not old_head, what, _("a new nn.Linear"), _("the old layer, changed"),
               _("create a new nn.Linear: its weights start random and it learns"))
        frozen = [n for n, p in head.named_parameters() if not p.requires_grad]
        expect(not frozen, _("requires_grad of the new head ({where})").format(where=where), "True",
               _("False for {names}").format(names=", ".join(frozen)),
               _("a new nn.Linear learns by default: do not freeze it"))
        now = _snapshot(model)
        changed = [k for k, v in others.items() if k not in now or not torch.equal(now[k], v)]
        unfrozen = [n for n, p in model.named_parameters() if p.requires_grad and not n.startswith(
            "fc." if is_resnet else f"classifier.{len(model.classifier) - 1}.")]
        expect(not changed and not unfrozen, _("the rest of {label} after replace_head").format(label=label),
               _("unchanged and still frozen"),
               (_("{names} changed") if changed else _("{names} trainable")).format(names=_names(changed or unfrozen)),
               _("replace the head only; leave every other layer as it was"))
        model.eval()
        with torch.no_grad():
            try:
                y = model(x)
            except Exception as err:  # noqa: BLE001
                fail(_("{label} output after replace_head").format(label=label),
                     _("shape {shape}").format(shape=(len(x), num_classes)), error_line(err),
                     _("the new head must take the old head's in_features"))
        expect(tuple(y.shape) == (len(x), num_classes), _("{label} output after replace_head").format(label=label),
               _("shape {shape}").format(shape=(len(x), num_classes)), _("shape {shape}").format(shape=tuple(y.shape)),
               _("the new head has num_classes outputs"))


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
                  11_689_512 - layer1, _("ResNet-18 with layer1 frozen"))
    for p in resnet.parameters():
        p.requires_grad_(False)
    for p in resnet.fc.parameters():
        p.requires_grad_(True)
    _expect_count(call_student(trainable_parameters_fn, "trainable_parameters(ResNet-18)", resnet),
                  513_000, _("ResNet-18, only fc trainable"), _("fc alone: 512·1000 + 1000 = 513,000"))
    for p in resnet.parameters():
        p.requires_grad_(True)
    _expect_count(call_student(trainable_parameters_fn, "trainable_parameters(ResNet-18)", resnet),
                  11_689_512, _("ResNet-18, nothing frozen"))
    _expect_count(call_student(trainable_parameters_fn, _("trainable_parameters(a model with a shared layer)"), _Tied()),
                  20 + 8 + 10, _("a model using one Linear(4, 4) twice, with a BatchNorm1d(4)"),
                  _("a shared parameter counts once (model.parameters() lists it once); buffers do not count"))


def _expect_count(got: Any, expected: int, what: str, extra: str = "") -> None:
    label = f"trainable_parameters({what})"
    if isinstance(got, torch.Tensor) and got.numel() == 1 and not got.is_floating_point():
        fail(label, _("the int {n}").format(n=f"{expected:,}"), _("a tensor ({n})").format(n=f"{int(got):,}"),
             _("return a Python int: sum(...) of p.numel()"))
    if not isinstance(got, int) or isinstance(got, bool):
        fail(label, _("the int {n}").format(n=f"{expected:,}"), f"{type(got).__name__} {fmt(got)}", _("return a Python int"))
    if got != expected:
        hint = extra or _("sum p.numel() over model.parameters() with p.requires_grad")
        if got < 1000 and expected >= 1000:
            hint = _("count the values (p.numel()), not the tensors")
        fail(label, f"{expected:,}", f"{got:,}", hint)


# ------------------------------------------------------------------------------ feature_extraction
def feature_extraction(model: nn.Module, num_classes: int = 5) -> None:
    """The feature-extraction model: DigitCNN's layout with a new head `fc` of `num_classes`
    outputs; only `fc.weight` and `fc.bias` learn; every backbone value is still the pre-trained
    one (`autograder.pretrained.load_digit_backbone()`)."""
    what = _("feature-extraction model")
    if not isinstance(model, nn.Module):
        fail(what, _("an nn.Module"), type(model).__name__, _("pass the model you trained with a frozen backbone"))
    pretrained = load_digit_backbone()
    state = model.state_dict()
    missing = [k for k in pretrained if k not in state]
    extra = [k for k in state if k not in pretrained]
    expect(not missing and not extra, _("{what} layers").format(what=what), _("DigitCNN's (features.*, fc.*)"),
           (_("missing {names}") if missing else _("extra {names}")).format(names=_names(missing or extra)),
           _("start from DigitCNN with load_digit_backbone()'s weights"))
    head = getattr(model, "fc", None)
    in_features = pretrained["fc.weight"].shape[1]
    if not isinstance(head, nn.Linear) or (head.in_features, head.out_features) != (in_features, num_classes):
        fail(_("{what} head (fc)").format(what=what), f"Linear(in_features={in_features}, out_features={num_classes})",
             repr(head)[:80], _("replace_head(model, {n}): the digits 5-9 are {n} classes").format(n=num_classes))
    trainable = _trainable_names(model)
    backbone_trainable = [n for n in trainable if not n.startswith("fc.")]
    if backbone_trainable:
        fail(_("{what}: trainable backbone parameters").format(what=what), _("none (only fc.weight and fc.bias learn)"),
             _names(backbone_trainable), _("freeze(model) before replace_head: the backbone must not learn"))
    frozen_head = [n for n, p in model.named_parameters() if n.startswith("fc.") and not p.requires_grad]
    if frozen_head:
        fail(_("{what}: trainable head parameters").format(what=what), "fc.weight, fc.bias",
             _("{names} frozen").format(names=", ".join(frozen_head)),
             _("replace the head after freezing: freeze(model) then replace_head(model, 5), not the other way round"))
    changed = [k for k, v in pretrained.items() if not k.startswith("fc.") and not torch.equal(state[k].detach().cpu(), v)]
    expect(not changed, _("{what} backbone values").format(what=what), _("the pre-trained ones (load_digit_backbone())"),
           _("{names} differ").format(names=_names(changed)),
           _("load the pre-trained weights and keep them frozen while the head trains"))


# ------------------------------------------------------------------------------ transfer_beats_scratch
def _target_digits(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    X, y = mnist_splits()[split].tensors
    keep = y >= _TARGET_DIGITS[0]
    return X[keep], y[keep] - _TARGET_DIGITS[0]  # digits 5-9 → classes 0-4


def _accuracy(model: Any, name: str, split: str) -> float:
    what = _("{name} accuracy on {split}'s digits 5-9").format(name=_model_name(name), split=_split(split))
    if not isinstance(model, nn.Module):
        fail(what, _("an nn.Module"), type(model).__name__, _("pass the trained model"))
    X, y = _target_digits(split)
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(X.to(device))
        if logits.shape != (len(y), len(_TARGET_DIGITS)):
            fail(what, _("logits of shape (N, {n})").format(n=len(_TARGET_DIGITS)),
                 _("shape {shape}").format(shape=tuple(logits.shape)), _("the head needs 5 outputs: class c is digit 5 + c"))
        return float((logits.argmax(dim=1).cpu() == y).float().mean())
    except (NotImplementedError, AssertionError):
        raise
    except Exception as err:  # noqa: BLE001 — the student's model may raise anything
        fail(what, _("a model that runs on [N, 1, 28, 28] digits"), error_line(err), _("fix the model first"))
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
    expect(base >= 0.5, _("{name} accuracy on {split}'s digits 5-9").format(name=_model_name("from-scratch model"),
                                                                             split=_split(split)),
           _("≥ 0.50 (a trained model)"), f"{base:.3f}",
           _("train the scratch model on the same labelled examples before comparing"))
    for name, model in models.items():
        acc = _accuracy(model, name, split)
        where = _("{name} accuracy on {split}'s digits 5-9").format(name=_model_name(name), split=_split(split))
        expect(acc >= base, where, _("≥ {value} (from scratch on the same labelled examples)").format(value=f"{base:.3f}"),
               f"{acc:.3f}", _("keep the pre-trained weights (load them, a low learning rate when fine-tuning) and train "
                               "on the same examples"))
        expect(acc >= threshold, where, f"≥ {threshold:g}", f"{acc:.3f}",
               _("train longer, or check the learning rate and which parameters learn"))


# ------------------------------------------------------------------------------ gpu
def gpu() -> None:
    """The graded training ran on the device the grader offered (skipped without CUDA)."""
    expect_gpu_execution(_("the transfer training"))
