"""Checks of lab lenet (LeNet-5, and CNN vs MLP). Names and points: course.yml.

Independent of each other: a model with wrong layer shapes fails `shapes` (and `accuracy` and
`zip_code` when it cannot run), `param_count` only when the count changes; a wrong zip-code
reader fails `zip_code` alone; a wrong `Standardize` fails `standardize` (and `accuracy` and
`zip_code` only where the model it leads can no longer learn or run); `grad_cam` explains a small
CNN of the check's own, so a wrong LeNet5 never costs it.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from autograder.checks import drawn, call_student as _call
from autograder.checks import error_line as _error
from autograder.checks import (Scored, count_params, expect, expect_gpu_execution, expect_module, expect_split_accuracy,
                               fail, model_device, shape_text, worst)
from autograder.data import draw_zip_code, mnist_splits
from autograder.i18n import Domain

_ = Domain("lenet").gettext
ngettext = Domain("lenet").ngettext


def N_(message: str) -> str:
    """A msgid of the lab's catalog kept in English where it is defined (Babel extracts `N_("...")`),
    translated with `_()` where it is shown."""
    return message


__all__ = ["shapes", "param_count", "standardize", "accuracy", "gpu", "zip_code", "grad_cam"]

_N = 2  # dummy batch size

# layer name → (expected output shape without N, hint)
_LAYERS: dict[str, tuple[tuple[int, ...], str]] = {
    "conv1": ((6, 28, 28), N_("conv1 has 6 filters of 5×5 and padding 2, so 28 − 5 + 2·2 + 1 = 28")),
    "pool1": ((6, 14, 14), N_("pool1 is 2×2 max pooling with stride 2: it halves height and width")),
    "conv2": ((16, 10, 10), N_("conv2 has 16 filters of 5×5 and no padding: 14 − 5 + 1 = 10")),
    "pool2": ((16, 5, 5), N_("pool2 is 2×2 max pooling with stride 2: it halves height and width")),
    "fc1": ((120,), N_("fc1 maps the flattened 16·5·5 = 400 features to 120")),
    "fc2": ((84,), N_("fc2 maps 120 features to 84")),
    "fc3": ((10,), N_("fc3 maps 84 features to the 10 classes")),
}

# layer name → (expected parameter count, how it is made up)
_PARAMS = {
    "conv1": (6 * 25 + 6, N_("6 filters of 1·5·5 weights + 6 biases")),
    "conv2": (16 * 6 * 25 + 16, N_("16 filters of 6·5·5 weights + 16 biases")),
    "fc1": (400 * 120 + 120, N_("400·120 weights + 120 biases; its input is the flattened 16·5·5 = 400")),
    "fc2": (120 * 84 + 84, N_("120·84 weights + 84 biases")),
    "fc3": (84 * 10 + 10, N_("84·10 weights + 10 biases")),
}
_TOTAL = sum(n for n, _ in _PARAMS.values())  # 61,706


def shapes(model: nn.Module) -> None:
    """Each of conv1, pool1, conv2, pool2, fc1, fc2, fc3 outputs LeNet-5's shape on a [2, 1, 28, 28] batch."""
    if not isinstance(model, nn.Module):
        fail("LeNet5", _("an nn.Module"), type(model).__name__, _("pass an instance, LeNet5(), not the class"))
    modules = dict(model.named_children())
    for name in _LAYERS:
        if not isinstance(modules.get(name), nn.Module):
            fail(_("LeNet5 submodule {name}").format(name=name), _("a layer named {name}").format(name=name), _("none"),
                 _("assign the layers as self.conv1, self.pool1, self.conv2, self.pool2, self.fc1, self.fc2, self.fc3"))
    outputs: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(_module, _inputs, out) -> None:  # must return None, or it would replace the output
            if name not in outputs:
                outputs[name] = tuple(out.shape) if isinstance(out, torch.Tensor) else ()
        return hook

    hooks = [modules[name].register_forward_hook(record(name)) for name in _LAYERS]
    was_training = model.training
    error: BaseException | None = None
    try:
        model.eval()
        with torch.no_grad():
            logits = model(torch.zeros(_N, 1, 28, 28, device=model_device(model)))
    except NotImplementedError:
        raise  # an answer cell not filled in yet: the grader says so
    except Exception as err:  # noqa: BLE001 — a student's forward may raise anything
        error, logits = err, None
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    for name, (dims, hint) in _LAYERS.items():
        expected = (_N, *dims)
        what = _("LeNet5 {name} output").format(name=name)
        if name in outputs:
            if outputs[name] != expected:
                got = shape_text(("N", *outputs[name][1:])) if outputs[name] else _("no tensor")
                fail(what, shape_text(("N", *dims)), got, _(hint))
        elif error is not None:
            fail(what, shape_text(("N", *dims)), _error(error), _(hint))
        else:
            fail(what, shape_text(("N", *dims)), _("{name} never called").format(name=name),
                 _("forward must pass the input through self.{name}").format(name=name))
    if error is not None:
        fail("LeNet5 forward", _("logits of shape (N, 10)"), _error(error), _("look at what forward does after fc3"))
    got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
    expect(got == (_N, 10), _("LeNet5 logits"), _("shape (N, 10)"), str(got),
           _("forward returns fc3's output (no softmax: the loss applies it)"))


def param_count(model: nn.Module) -> None:
    """The model has LeNet-5's 61,706 parameters (counted like count_params)."""
    if not isinstance(model, nn.Module):
        fail("LeNet5", _("an nn.Module"), type(model).__name__, _("pass an instance, LeNet5(), not the class"))
    total = count_params(model)
    if total == _TOTAL:
        return
    modules = dict(model.named_children())
    for name, (expected, parts) in _PARAMS.items():
        got = count_params(modules[name]) if name in modules else None
        if got != expected:
            has = (_("{name} has no parameters, expected {expected} ({parts})") if got is None else
                   _("{name} has {got}, expected {expected} ({parts})"))
            fail(_("LeNet5 parameters"), f"{_TOTAL:,}", f"{total:,}",
                 has.format(name=name, got=f"{got:,}" if got is not None else "", expected=f"{expected:,}", parts=_(parts)))
    fail(_("LeNet5 parameters"), f"{_TOTAL:,}", f"{total:,}",
         _("conv1 156, conv2 2,416, fc1 48,120, fc2 10,164, fc3 850: remove any extra layer"))


def standardize(Standardize) -> None:
    """Standardize(mean, std) is a module without parameters that returns (x − mean) / std, elementwise,
    for any shape and values; mean and std are buffers (in the state_dict, moved by .to())."""
    gen = drawn(130)               # MNIST's mean and std, then a drawn pair; x's points moved at random
    other = (round(float(torch.rand((), generator=gen)) * 6 - 3, 2), round(0.5 + float(torch.rand((), generator=gen)) * 4.5, 2))
    for mean, std in ((0.1307, 0.3081), other):
        what = f"Standardize({mean:g}, {std:g})"
        module = expect_module(_call(Standardize, what, mean, std), what, _("Standardize must subclass nn.Module"))
        trained = [name for name, _p in module.named_parameters()]
        expect(not trained, _("{what}: trainable parameters").format(what=what), _("none"), ", ".join(trained),
               _("keep mean and std with self.register_buffer(...): buffers are saved, never trained"))
        buffers = {name: b for name, b in module.named_buffers()}
        expect(len(buffers) == 2 and all(b.numel() == 1 for b in buffers.values()), _("{what}: buffers").format(what=what),
               _("two one-number buffers (mean and std)"), ", ".join(buffers) or _("none"),
               _("self.register_buffer('mean', torch.tensor(float(mean))), and the same for std: a plain "
                 "attribute is not saved in the state_dict and does not follow .to(device)"))
        values = sorted(float(b) for b in buffers.values())
        expect(all(abs(v - w) <= 1e-6 * max(1.0, abs(w)) for v, w in zip(values, sorted((mean, std)))),
               _("{what}: buffer values").format(what=what), _("{mean} and {std}").format(mean=f"{mean:g}", std=f"{std:g}"),
               ", ".join(f"{float(b):g}" for b in buffers.values()),
               _("store the mean and the std you were given"))
        x = (torch.linspace(-1, 2, 24) + torch.rand(24, generator=gen) * 0.1).reshape(2, 1, 3, 4)
        call = _("{what}(x) for x of shape [2, 1, 3, 4]").format(what=what)
        y = _call(module, call, x)
        expected = (x - mean) / std
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            fail(call, _("a tensor of the same shape"),
                 shape_text(y) if isinstance(y, torch.Tensor) else type(y).__name__,
                 _("standardize elementwise: (x - mean) / std"))
        if not torch.allclose(y.detach().to(torch.float64), expected.to(torch.float64), atol=1e-5, rtol=1e-5):
            want, got = worst(y.detach(), expected)
            hint = _("(x - mean) / std: subtract first, then divide")
            if torch.allclose(y.detach(), x * std + mean, atol=1e-5):
                hint = _("that undoes a standardization: subtract the mean and divide by the std")
            elif torch.allclose(y.detach(), x / std - mean, atol=1e-5):
                hint = _("subtract the mean before dividing: (x - mean) / std, with the parentheses")
            elif torch.allclose(y.detach(), (x - mean) * std, atol=1e-5):
                hint = _("divide by the std, do not multiply")
            fail(call, want, got, hint)


_CRASH = N_("the model cannot run on [N, 1, 28, 28] digits: fix its shapes first")
_LOW = N_("train longer or check the learning rate")
# the hidden split is scored by the grader, outside the notebook (autograder.scoring)
SCORED = {"accuracy": Scored(model="LeNet5", threshold="accuracy", crash_hint=_CRASH, low_hint=_LOW)}


def accuracy(model: nn.Module, split: str = "test", threshold: float = 0.9) -> None:
    """Accuracy of `model` on `autograder.data.mnist_splits()[split]` (eval mode, the model's device) ≥ threshold."""
    expect_split_accuracy(model, split, threshold, "LeNet5", _(_CRASH), _(_LOW))

def zip_code(read_zip_code, model: nn.Module, n_digits: int = 500) -> None:
    """`read_zip_code` reads canvases drawn from test-split digits at no less than the model's own
    accuracy on those digits minus 2 points (half the canvases H×W, half H×W×3)."""
    X, y = mnist_splits()["test"].tensors
    X, y = X[:n_digits], y[:n_digits]
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            own = (model(X.to(device)).argmax(dim=1).cpu() == y).float().mean().item()
    except Exception as err:  # noqa: BLE001
        model.train(was_training)
        if isinstance(err, NotImplementedError):
            raise
        fail(_("zip-code reader"), _("a model that classifies [N, 1, 28, 28] digits"), _error(err),
             _("the model cannot run: fix LeNet5 first"))
    right = 0
    try:
        for k in range(len(y) // 5):
            layout = "H×W×3" if k % 2 else "H×W"
            canvas = draw_zip_code(X[5 * k:5 * k + 5], rgb=bool(k % 2))
            truth = "".join(str(int(d)) for d in y[5 * k:5 * k + 5])
            try:
                got = read_zip_code(canvas, model)
            except NotImplementedError:
                raise  # read_zip_code not written yet
            except Exception as err:  # noqa: BLE001 — the student's function may raise anything
                fail(_("read_zip_code on a {layout} uint8 canvas").format(layout=layout), _("five digits"), _error(err),
                     _("crop rows 51:149 and columns 11+100*i : 9+100*(i+1) of a [200, 520] or [200, 520, 3] canvas"))
            if not (isinstance(got, str) and len(got) == 5 and got.isdigit()):
                fail(_("read_zip_code on a {layout} canvas").format(layout=layout),
                     _("a string of 5 digits like {truth}").format(truth=repr(truth)), repr(got)[:60],
                     _("return ''.join(str(d) for d in predictions)"))
            right += sum(a == b for a, b in zip(got, truth))
    finally:
        model.train(was_training)
    read = right / len(y)
    expect(read >= own - 0.02, _("zip-code digits read right ({n} test digits)").format(n=len(y)),
           _("≥ {bar:.3f} (the model's own accuracy {own:.3f} minus 0.02)").format(bar=own - 0.02, own=own), f"{read:.3f}",
           _("crop each box inside its border, invert (dark ink on white → white on black), "
             "resize to 28×28 and scale to [0, 1] like the training data"))


def gpu(model: nn.Module) -> None:
    """`model` was trained on the device the grader offered (skipped without CUDA)."""
    expect_gpu_execution(_("LeNet5 training"), model)


# --- grad_cam -----------------------------------------------------------------------------------

def _cam_model() -> nn.Sequential:
    """A small CNN for [N, 1, 12, 12] images with seeded weights, in train mode, with dropout (so
    that a forward pass in train mode shows). Class 9's logit does not depend on any feature map:
    its Grad-CAM is empty everywhere."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(1, 4, 3, padding=1), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),   # [N, 4, 6, 6]
            conv2=nn.Conv2d(4, 6, 3), relu2=nn.ReLU(), drop=nn.Dropout(0.5),              # [N, 6, 4, 4]
            flatten=nn.Flatten(), fc=nn.Linear(96, 10)))
    g = torch.Generator().manual_seed(20)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        model.fc.weight[9] = 0.0
    return model.train()


def _cam(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: torch.Tensor, slip: str = "") -> torch.Tensor:
    """The expected heatmaps [N, h, w] (in eval mode, float64), or those of a usual `slip`."""
    saved = {}
    handle = layer.register_forward_hook(lambda _m, _i, out: saved.__setitem__("maps", out))
    was_training = model.training
    try:
        model.eval()
        logits = model(x)
        scores = logits.softmax(dim=1) if slip == "softmax" else logits
        maps = saved["maps"]
        grads = torch.autograd.grad(scores.gather(1, target.view(-1, 1)).sum(), maps)[0]
    finally:
        handle.remove()
        model.train(was_training)
    maps, grads = maps.detach().to(torch.float64), grads.to(torch.float64)
    raw = (grads * maps).sum(dim=1) if slip == "pixelwise" else (grads.mean(dim=(2, 3), keepdim=True) * maps).sum(dim=1)
    cam = raw.abs() if slip == "abs" else raw if slip == "no_relu" else raw.clamp_min(0)
    if slip == "raw":
        return cam
    if slip == "batch_max":
        return cam / cam.max() if cam.max() > 0 else cam
    if slip == "min_max":
        low, high = cam.amin(dim=(1, 2), keepdim=True), cam.amax(dim=(1, 2), keepdim=True)
        return (cam - low) / torch.where(high > low, high - low, torch.ones_like(high))
    peak = cam.amax(dim=(1, 2), keepdim=True)
    return cam / torch.where(peak > 0, peak, torch.ones_like(peak))


def _hooks_left(model: nn.Module) -> int:
    """Forward and backward hooks on `model`'s modules (while grading, counted in the notebook's
    process, where the student's code registered them)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
               for m in model.modules())


_CAM_HINT = N_("the layer's maps weighted by the mean over the map of the class logit's gradient, summed over the "
               "channels, ReLU, each map divided by its own maximum; the model in eval() mode")


def grad_cam(grad_cam) -> None:
    """`grad_cam(model, layer, x, target)` on a small CNN of the check's (dropout, seeded weights, in
    train mode): heatmaps [N, h, w] at the layer's resolution against Grad-CAM computed here (as
    Captum's LayerGradCam with ReLU, each map divided by its maximum) for target None (the predicted
    classes), an int and a tensor [N], on a layer before and after a ReLU; an image with no evidence
    gets 0, never NaN; the model left as it was (mode, no hook, no .grad), x unchanged."""
    from autograder import witness

    model = _cam_model()
    g = drawn(18)
    x = torch.rand(4, 1, 12, 12, generator=g)
    with torch.no_grad():
        model.eval()
        predicted = model(x).argmax(dim=1)
        model.train()
    cases = [  # (layer name, target as given, as a tensor [N], its text)
        ("conv2", None, predicted, "None"),
        ("relu2", 2, torch.full((4,), 2), "2"),
        ("conv1", torch.tensor([9, 4, 9, 1]), torch.tensor([9, 4, 9, 1]), "tensor([9, 4, 9, 1])"),
    ]
    for name, target, as_tensor, text in cases:
        layer = getattr(model, name)
        size = {"conv1": 12, "conv2": 4, "relu2": 4}[name]
        channels = {"conv1": 4, "conv2": 6, "relu2": 6}[name]
        what = f"grad_cam(model, model.{name}, x [4, 1, 12, 12], target={text})"
        given = x.clone()
        out = _call(grad_cam, what, model, layer, given, target,
                    hint=_("model maps x to logits [N, 10]; the layer's output is a feature map [N, Ck, h, w]"))
        expected = _cam(model, layer, x, as_tensor)
        if not isinstance(out, torch.Tensor):
            fail(what, _("a tensor of shape (4, {size}, {size})").format(size=size), type(out).__name__,
                 _("return the heatmaps as one tensor"))
        shape_hints = {
            (4, 1, size, size): _("one map per image, [N, h, w]: sum over the channels without keepdim"),
            (4, channels, size, size): _("weight each channel's map and add them up: one map per image, [N, h, w]"),
            (size, size): _("one map per image: [N, h, w], not one for the batch"),
            (4, 12, 12): _("at the layer's resolution [N, h, w]: do not upsample (the plot does that)"),
        }
        got_shape = tuple(out.shape)
        if got_shape != tuple(expected.shape):
            fail(what, shape_text(("N", size, size)), shape_text(got_shape),
                 shape_hints.get(got_shape, _("the layer's output is [N, {channels}, {size}, {size}]: one {size}×{size} map "
                                              "per image").format(channels=channels, size=size)))
        got = out.detach().to(torch.float64).cpu()
        if not bool(torch.isfinite(got).all()):
            bad = sorted({int(i) for i in torch.nonzero(~torch.isfinite(got))[:, 0]})
            fail(what, _("finite values (0 where there is no evidence)"),
                 ngettext("NaN or inf in image {images}", "NaN or inf in images {images}", len(bad)).format(
                     images=", ".join(map(str, bad))),
                 _("an image with no evidence for its class gets 0 everywhere: do not divide by a maximum of 0"))
        if not torch.allclose(got, expected, atol=1e-4, rtol=1e-4):
            hint = _(_CAM_HINT)
            slips = [("no_relu", _("keep only the evidence for the class: ReLU the weighted sum before normalizing")),
                     ("abs", _("ReLU, not the absolute value: negative evidence is evidence against the class")),
                     ("raw", _("divide each map by its own maximum, so that its largest value is 1")),
                     ("batch_max", _("divide each image's map by its own maximum, not by the batch's")),
                     ("min_max", _("divide by the maximum only: do not subtract the minimum")),
                     ("pixelwise", _("one weight per channel: the mean of the gradient over the whole map, not pixel by pixel")),
                     ("softmax", _("the gradient of the class's logit (the model's output), not of a softmax probability"))]
            if target is not None:
                slips.append(("predicted", _("explain the class you were asked for, target={target}; None means the predicted "
                                             "class").format(target=text)))
            for slip, slip_hint in slips:
                variant = (_cam(model, layer, x, predicted) if slip == "predicted" else _cam(model, layer, x, as_tensor, slip))
                if torch.allclose(got, variant, atol=1e-4, rtol=1e-4):
                    hint = slip_hint
                    break
            want, have = worst(got, expected)
            fail(what, want, have, hint)
        expect(not out.requires_grad, _("{what}: the heatmap").format(what=what), _("a detached tensor"),
               _("a tensor that requires grad"), _("return cam.detach(): a heatmap is a picture, not part of a graph"))
        expect(model.training, _("{what}: the model's mode afterwards").format(what=what), _("train (as it was given)"), "eval",
               _("remember model.training and put it back with model.train(was_training) when done"))
        with_grad = [n for n, p in model.named_parameters() if p.grad is not None]
        expect(not with_grad, _("{what}: the parameters' .grad afterwards").format(what=what), _("None (untouched)"),
               _("set on {names}").format(names=", ".join(with_grad)),
               _(".backward() leaves gradients in the model (the next optimizer.step() would use them): "
                 "take the gradient with torch.autograd.grad(score, maps)"))
        left = witness.boundary("hooks", _hooks_left, model)
        expect(left == 0, _("{what}: hooks on the model afterwards").format(what=what), _("none"), str(left),
               _("remove the hook once the maps are kept: handle = layer.register_forward_hook(...); handle.remove()"))
        expect(bool(torch.equal(given, x)), _("{what}: x after the call").format(what=what), _("unchanged"), _("modified"),
               _("do not write into x"))
