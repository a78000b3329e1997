"""Checks of lab resnet (ResNet). Names and points: course.yml.

torchvision is the oracle: its blocks and networks (built with `weights=None`, never
downloaded) are loaded into the student's with strict=True and must give the same outputs.
Independent where the architecture allows: `make_layer` runs the student's function on
torchvision's blocks, so a bug in a block does not fail it; `basic_block` and `bottleneck` feed
each block the downsample module themselves. `param_counts` and `torchvision_match` check the
whole networks, so a bug anywhere in them fails those too (each planted bug declares which).
Every check leaves the global random generator as it found it.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import torch
from torch import nn
from torchvision import models as _tv_models
from torchvision.models import resnet as _tv

from autograder.checks import drawn, close, count_params, expect_module, shape_text, state_shapes
from autograder.checks import (Scored, call_student, error_line, expect, expect_gpu_execution, expect_split_accuracy,
                               fail)
from autograder.i18n import Domain

_ = Domain("resnet").gettext


def N_(message: str) -> str:
    """A msgid of the lab's catalog kept in English where it is defined (Babel extracts `N_("...")`),
    translated with `_()` where it is shown."""
    return message


__all__ = ["basic_block", "bottleneck", "make_layer", "param_counts", "torchvision_match", "accuracy", "gpu"]

_CRASH = N_("the model cannot run on [N, 1, 28, 28] digits: check SmallResNet's layer sizes (and BasicBlock, make_layer)")
_LOW = N_("train it as the notebook does (3 epochs, one-cycle lr 1e-2), and check SmallResNet's layers")
SCORED = {"accuracy": Scored(model="SmallResNet", threshold="accuracy", crash_hint=_CRASH, low_hint=_LOW)}

# Parameters of torchvision's networks (num_classes=1000) per top-level module.
_PARAMS: dict[str, dict[str, int]] = {
    "resnet18": {"conv1": 9_408, "bn1": 128, "layer1": 147_968, "layer2": 525_568, "layer3": 2_099_712,
                 "layer4": 8_393_728, "fc": 513_000},
    "resnet34": {"conv1": 9_408, "bn1": 128, "layer1": 221_952, "layer2": 1_116_416, "layer3": 6_822_400,
                 "layer4": 13_114_368, "fc": 513_000},
    "resnet50": {"conv1": 9_408, "bn1": 128, "layer1": 215_808, "layer2": 1_219_584, "layer3": 7_098_368,
                 "layer4": 14_964_736, "fc": 2_049_000},
}
_TOTALS = {name: sum(parts.values()) for name, parts in _PARAMS.items()}  # 11,689,512 / 21,797,672 / 25,557,032
_BLOCK_HINT = N_("a block returns relu(bn(last conv) + identity): the skip is added before the last ReLU, and only there")
_LAYERS = {"resnet18": "BasicBlock, [2, 2, 2, 2]", "resnet34": "BasicBlock, [3, 4, 6, 3]",
           "resnet50": "Bottleneck, [3, 4, 6, 3]"}


# ------------------------------------------------------------------------------------ helpers
def _seeded(fn: Callable) -> Callable:
    """Run `fn` from a fixed seed, leaving the global generator as it was."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return fn(*args, **kwargs)
    return wrapper


def _randomize_batchnorm(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm parameters and running statistics, so that a BatchNorm used in the
    wrong place changes the output (a fresh one is the identity in eval mode)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n))
                m.bias.copy_(0.1 * torch.randn(n))
                m.running_mean.copy_(0.1 * torch.randn(n))
                m.running_var.copy_(0.5 + torch.rand(n))
    return model


def _down(inplanes: int, outplanes: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, stride=stride, bias=False), nn.BatchNorm2d(outplanes))


def _state_dict_difference(what: str, expected: nn.Module, got: nn.Module, hint: str) -> None:
    """Fail on the first entry (in torchvision's order) whose name or shape differs, then on the
    first entry torchvision does not have."""
    exp, mine = state_shapes(expected), state_shapes(got)
    for key, shape in exp.items():
        if key not in mine:
            fail(f"{what} state_dict", _("an entry {key} {shape}").format(key=key, shape=shape), _("no such key"), hint)
        if mine[key] != shape:
            fail(f"{what} state_dict {key}", _("shape {shape}").format(shape=shape),
                 _("shape {shape}").format(shape=mine[key]), hint)
    for key, shape in mine.items():
        if key not in exp:
            fail(f"{what} state_dict", _("only torchvision's entries"),
                 _("an extra entry {key} {shape}").format(key=key, shape=shape),
                 _("name the layers as torchvision does and add no others"))


def _load(what: str, model: nn.Module, state: dict) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except Exception as err:  # noqa: BLE001 — a student's module may refuse in any way
        fail(_("{what}.load_state_dict(torchvision's, strict=True)").format(what=what), _("success"), error_line(err),
             _("name the layers as torchvision does"))


def _record(model: nn.Module, names: list[str] | None = None) -> tuple[dict[str, torch.Tensor], list[str], list]:
    """Forward hooks that keep a copy of the first output of every named module with parameters
    of its own or that is a block (has a conv1); returns (outputs, order of calls, handles)."""
    outputs: dict[str, torch.Tensor] = {}
    order: list[str] = []
    handles = []
    for name, m in model.named_modules():
        if not name or (names is not None and name not in names):
            continue
        if names is None and not (m._parameters or hasattr(m, "conv1")):
            continue

        def hook(_m, _inputs, out, name=name) -> None:  # returns None: the output is left alone
            if name not in outputs and isinstance(out, torch.Tensor):
                outputs[name] = out.detach().clone()  # a copy: an in-place ReLU may follow
                order.append(name)
        handles.append(m.register_forward_hook(hook))
    return outputs, order, handles


def _run(what: str, model: nn.Module, x: torch.Tensor, hint: str) -> torch.Tensor:
    try:
        with torch.no_grad():
            return model(x)
    except NotImplementedError:
        raise
    except Exception as err:  # noqa: BLE001
        fail(what, _("an output"), error_line(err), hint)
        raise  # unreachable


def _close(got: torch.Tensor, expected: torch.Tensor) -> bool:
    """Close to torchvision's output, with an atol that grows with its scale."""
    scale = float(expected.abs().nan_to_num().max()) if expected.numel() else 0.0
    return close(got, expected, rtol=1e-4, atol=1e-5 * (1.0 + scale))


def _compare_forward(what: str, expected: nn.Module, got: nn.Module, x: torch.Tensor, hint: str,
                     block_hint: str | None = None) -> None:
    """Run both on `x`; fail at the first layer (in torchvision's order) whose output differs.
    `hint` is for a layer whose output differs (its input came out wrong), `block_hint` for a
    block, or the whole of `got`, whose layers all agree but whose output does not (default:
    _BLOCK_HINT, in the language of the moment)."""
    block_hint = _(_BLOCK_HINT) if block_hint is None else block_hint
    exp_out, exp_order, handles = _record(expected)
    try:
        with torch.no_grad():
            reference = expected(x)
    finally:
        for h in handles:
            h.remove()
    got_out, _order, handles = _record(got, exp_order)
    try:
        result = _run(f"{what} forward", got, x, _("it must run wherever torchvision's does: {hint}").format(hint=block_hint))
    finally:
        for h in handles:
            h.remove()
    blocks = {name for name, m in expected.named_modules() if hasattr(m, "conv1")}
    for name in exp_order:
        e = exp_out[name]
        if name not in got_out:
            fail(_("{what} output of {name}").format(what=what, name=name), _("shape {shape}").format(shape=tuple(e.shape)),
                 _("{name} never called").format(name=name), _("forward must pass the input through {name}").format(name=name))
        g = got_out[name]
        first = _("{what} output of {name} (the first that differs)").format(what=what, name=name)
        if g.shape != e.shape:
            fail(first, _("shape {shape}").format(shape=tuple(e.shape)), _("shape {shape}").format(shape=tuple(g.shape)),
                 _("a stride, padding or pooling before it differs from torchvision's"))
        if not _close(g, e):
            i = int((g - e).abs().flatten().argmax())
            fail(first, _("{value} at flat index {index}").format(value=f"{float(e.flatten()[i]):.5g}", index=i),
                 f"{float(g.flatten()[i]):.5g}",
                 _("its layers agree with torchvision's, its output does not — {hint}").format(hint=block_hint)
                 if name in blocks else hint)
    if not isinstance(result, torch.Tensor) or not _close(result.detach(), reference):
        fail(_("{what} output").format(what=what), _("torchvision's, shape {shape}").format(shape=tuple(reference.shape)),
             shape_text(result) if not isinstance(result, torch.Tensor) or result.shape != reference.shape
             else _("different values"),
             _("its layers agree with torchvision's, its output does not — {hint}").format(hint=block_hint))


def _zero_residual(block: nn.Module, bn: str) -> None:
    """Make the residual branch output 0: the last BatchNorm's weight and bias to 0."""
    with torch.no_grad():
        getattr(block, bn).weight.zero_()
        getattr(block, bn).bias.zero_()


def _expect_layers(what: str, block: nn.Module, layers: dict[str, type]) -> None:
    for name, kind in layers.items():
        if not isinstance(getattr(block, name, None), kind):
            fail(f"{what}.{name}", _("an {layer}").format(layer=f"nn.{kind.__name__}"), type(getattr(block, name, None)).__name__,
                 _("keep torchvision's names: {names}").format(names=", ".join(layers)))


def _check_block(cls: Any, kind: str, expansion: int, bn_last: str, layers: dict[str, type],
                 tv_cls: type, plain: tuple[int, int], down: tuple[int, int], inner: dict[str, str],
                 hint: str) -> None:
    """The checks basic_block and bottleneck share: expansion, layers, shapes, the skip path,
    and torchvision's outputs in train and eval mode."""
    if not isinstance(cls, type):
        fail(kind, _("the class"), type(cls).__name__, _("pass the class {kind}, not an instance").format(kind=kind))
    expect(getattr(cls, "expansion", None) == expansion, f"{kind}.expansion", expansion,
           repr(getattr(cls, "expansion", None)),
           _("a {kind} outputs planes·{expansion} channels: a class attribute expansion = {expansion}").format(
               kind=kind, expansion=expansion))
    # 1. a block that keeps the shape: identity skip
    inplanes, planes = plain
    what = f"{kind}({inplanes}, {planes})"
    block = expect_module(call_student(cls, what, inplanes, planes, hint=hint), what, hint)
    _expect_layers(what, block, layers)
    block.eval()
    x = torch.randn(2, inplanes, 8, 8)
    out = _run(what, block, x, hint)
    expect(isinstance(out, torch.Tensor) and out.shape == x.shape, _("{what} output").format(what=what),
           _("shape {shape}").format(shape=tuple(x.shape)), shape_text(out),
           _("with stride 1 and {inplanes} = {planes}·{expansion} channels the block keeps the shape").format(
               inplanes=inplanes, planes=planes, expansion=expansion))
    _zero_residual(block, bn_last)
    out = _run(what, block, x, hint)
    if not _close(out, torch.relu(x)):
        fail(_("{what} with its residual branch zeroed ({bn} = 0)").format(what=what, bn=bn_last),
             _("relu(x): the input through the skip"), _("something else"),
             _("add the input x to {bn}'s output, then apply the last ReLU").format(bn=bn_last))
    # 2. a downsampling block: stride 2 and a downsample module for the skip
    inplanes, planes = down
    out_planes = planes * expansion
    what = f"{kind}({inplanes}, {planes}, stride=2, downsample)"
    block = expect_module(call_student(cls, what, inplanes, planes, 2, _down(inplanes, out_planes, 2), hint=hint), what, hint)
    _expect_layers(what, block, {**layers, "downsample": nn.Module})
    block.eval()
    x = torch.randn(2, inplanes, 8, 8)
    outputs, _order, handles = _record(block, list(inner))
    try:
        out = _run(what, block, x, hint)
    finally:
        for h in handles:
            h.remove()
    for name, why in inner.items():
        expected = {"conv1": (2, planes, 8, 8) if kind == "Bottleneck" else (2, planes, 4, 4),
                    "conv2": (2, planes, 4, 4), "conv3": (2, out_planes, 4, 4)}[name]
        got = tuple(outputs[name].shape) if name in outputs else _("never called")
        expect(got == expected, _("{what} {name} output").format(what=what, name=name),
               _("shape {shape}").format(shape=expected), str(got), why)
    expect(isinstance(out, torch.Tensor) and tuple(out.shape) == (2, out_planes, 4, 4), _("{what} output").format(what=what),
           _("shape {shape}").format(shape=(2, out_planes, 4, 4)), shape_text(out),
           _("the first convolution that strides halves height and width"))
    _zero_residual(block, bn_last)
    out = _run(what, block, x, hint)
    with torch.no_grad():
        skip = torch.relu(block.downsample(x))
    if not _close(out, skip):
        fail(_("{what} with its residual branch zeroed").format(what=what), "relu(downsample(x))", _("something else"),
             _("when a downsample module is given, the skip adds downsample(x) instead of x"))
    # 3. torchvision's block with the same weights: the same outputs, in train and eval mode
    for inplanes, planes, stride in ((plain[0], plain[1], 1), (down[0], down[1], 2)):
        what = f"{kind}({inplanes}, {planes}{', stride=2, downsample' if stride == 2 else ''})"
        downsample = _down(inplanes, planes * expansion, 2) if stride == 2 else None
        theirs = _randomize_batchnorm(tv_cls(inplanes, planes, stride, downsample))
        mine = call_student(cls, what, inplanes, planes, stride, _down(inplanes, planes * expansion, 2) if stride == 2 else None,
                            hint=hint)
        _state_dict_difference(what, theirs, mine, hint)
        _load(what, mine, theirs.state_dict())
        x = torch.randn(4, inplanes, 8, 8)
        for mode in ("eval", "train"):
            theirs.train(mode == "train")
            mine.train(mode == "train")
            _compare_forward(_("{what} in {mode} mode").format(what=what, mode=mode), theirs, mine, x,
                             _("the input reaching this layer differs — {hint}").format(hint=hint), block_hint=hint)


# ------------------------------------------------------------------------------------ checks
@_seeded
def basic_block(BasicBlock: Any) -> None:
    """BasicBlock: expansion 1, torchvision's layer names, the shape kept and halved (stride 2
    with a downsample), the skip path, and torchvision's outputs in train and eval mode."""
    _check_block(BasicBlock, "BasicBlock", 1, "bn2",
                 {"conv1": nn.Conv2d, "bn1": nn.BatchNorm2d, "conv2": nn.Conv2d, "bn2": nn.BatchNorm2d},
                 _tv.BasicBlock, plain=(16, 16), down=(16, 32),
                 inner={"conv1": _("conv1 is 3×3 with the block's stride (padding 1)"),
                        "conv2": _("conv2 is 3×3, stride 1, padding 1")},
                 hint="out = relu(bn1(conv1(x))); out = bn2(conv2(out)); return relu(out + identity)")


@_seeded
def bottleneck(Bottleneck: Any) -> None:
    """Bottleneck ("v1.5"): expansion 4, torchvision's layer names, the stride on the 3×3 conv2,
    the skip path, and torchvision's outputs in train and eval mode."""
    _check_block(Bottleneck, "Bottleneck", 4, "bn3",
                 {"conv1": nn.Conv2d, "bn1": nn.BatchNorm2d, "conv2": nn.Conv2d, "bn2": nn.BatchNorm2d,
                  "conv3": nn.Conv2d, "bn3": nn.BatchNorm2d},
                 _tv.Bottleneck, plain=(64, 16), down=(64, 32),
                 inner={"conv1": _("v1.5: conv1 is the 1×1 reduction and never strides"),
                        "conv2": _("v1.5: the stride sits on the 3×3 conv2"),
                        "conv3": _("conv3 is 1×1 and expands to planes·4 channels")},
                 hint="1×1 → bn → relu, 3×3 (stride) → bn → relu, 1×1 (×4) → bn, + identity, relu")


@_seeded
def make_layer(make_layer: Callable) -> None:
    """make_layer on torchvision's blocks: `blocks` blocks, only the first strides, a downsample
    (1×1 conv with the stride + BatchNorm) exactly when the shape changes, torchvision's names
    and outputs."""
    hint = _("first block: block(inplanes, planes, stride, downsample), downsample = Sequential(conv1x1(inplanes, "
             "planes·expansion, stride), BatchNorm2d) when stride != 1 or inplanes != planes·expansion; "
             "then block(planes·expansion, planes)")
    for block, inplanes, planes, blocks, stride in ((_tv.BasicBlock, 8, 8, 2, 1), (_tv.BasicBlock, 8, 16, 2, 2),
                                                     (_tv.Bottleneck, 8, 8, 2, 1), (_tv.Bottleneck, 32, 16, 3, 2)):
        what = f"make_layer({block.__name__}, {inplanes}, {planes}, {blocks}, stride={stride})"
        stage = expect_module(call_student(make_layer, what, block, inplanes, planes, blocks, stride, hint=hint), what,
                        "return nn.Sequential(*blocks)")
        children = list(stage.children())
        expect(len(children) == blocks and all(isinstance(c, block) for c in children), _("{what} blocks").format(what=what),
               f"{blocks} × {block.__name__}", f"{len(children)}: " + ", ".join(type(c).__name__ for c in children)[:80],
               _("one block per count, all of the class given"))
        out_planes = planes * block.expansion
        needs = stride != 1 or inplanes != out_planes
        expected = nn.Sequential(block(inplanes, planes, stride, _down(inplanes, out_planes, stride) if needs else None),
                                 *[block(out_planes, planes) for _i in range(1, blocks)])
        for i, (mine, theirs) in enumerate(zip(children, expected)):
            expect(mine.stride == theirs.stride, f"{what}[{i}] stride", theirs.stride, mine.stride,
                   _("only the first block strides"))
        _state_dict_difference(what, expected, stage,
                               hint if needs else _("no downsample when neither the stride nor the width changes"))
        _load(what, stage, _randomize_batchnorm(expected).state_dict())
        stage.eval(), expected.eval()
        _compare_forward(what, expected, stage, torch.randn(2, inplanes, 8, 8), hint, block_hint=hint)


def _build(builder: Callable, name: str) -> nn.Module:
    return expect_module(call_student(builder, f"{name}()", hint=_("{name}() returns ResNet({layers})").format(
        name=name, layers=_LAYERS[name])), f"{name}()",
        _("{name}() returns ResNet({layers}) — a model, not the class").format(name=name, layers=_LAYERS[name]))


@_seeded
def param_counts(resnet18: Callable, resnet34: Callable, resnet50: Callable) -> None:
    """resnet18(), resnet34(), resnet50() have torchvision's 11,689,512 / 21,797,672 /
    25,557,032 parameters; a wrong count names the first top-level module that is off."""
    for name, builder in (("resnet18", resnet18), ("resnet34", resnet34), ("resnet50", resnet50)):
        model = _build(builder, name)
        total = count_params(model)
        if total == _TOTALS[name]:
            continue
        children = dict(model.named_children())
        for part, expected in _PARAMS[name].items():
            got = count_params(children[part]) if part in children else None
            if got != expected:
                why = {"conv1": _("7×7, 3 → 64, no bias"), "bn1": "BatchNorm2d(64)",
                       "fc": "Linear(512·expansion, 1000)"}.get(
                    part, _("ResNet({layers}): check that stage's blocks and its downsample").format(layers=_LAYERS[name]))
                fail(_("{name} parameters").format(name=name), f"{_TOTALS[name]:,}", f"{total:,}",
                     _("{part} has {got}, expected {expected} ({why})").format(
                         part=part, got=_("none") if got is None else f"{got:,}", expected=f"{expected:,}", why=why))
        fail(_("{name} parameters").format(name=name), f"{_TOTALS[name]:,}", f"{total:,}",
             _("conv1, bn1, layer1-4 and fc are right: remove the extra module"))


@functools.lru_cache(maxsize=None)
def _torchvision(name: str) -> nn.Module:
    """torchvision's network `name` (weights=None: random, never downloaded) with randomised
    BatchNorm statistics, in eval mode; built once per process from a fixed seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _randomize_batchnorm(getattr(_tv_models, name)(weights=None)).eval()


@_seeded
def torchvision_match(resnet18: Callable, resnet34: Callable, resnet50: Callable) -> None:
    """torchvision's state_dict (weights=None, BatchNorm statistics randomised) loads into
    resnet18(), resnet34() and resnet50() with strict=True, and the outputs on a [2, 3, 64, 64]
    batch are the same in eval mode; a failure names the first key, or the first layer, that differs."""
    for name, builder in (("resnet18", resnet18), ("resnet34", resnet34), ("resnet50", resnet50)):
        model = _build(builder, name)
        theirs = _torchvision(name)
        _state_dict_difference(name, theirs, model,
                               _("ResNet({layers}) with torchvision's layer names").format(layers=_LAYERS[name]))
        _load(name, model, theirs.state_dict())
        model.eval()
        x = torch.randn(2, 3, 64, 64, generator=drawn(1))
        _compare_forward(f"{name} (eval)", theirs, model, x,
                         _("the input reaching this layer differs: check the order conv → bn → ReLU and the max pool "
                           "after the stem"), block_hint=_(_BLOCK_HINT))


def accuracy(model: nn.Module, split: str = "test", threshold: float = 0.9) -> None:
    """Accuracy of the trained SmallResNet on `autograder.data.mnist_splits()[split]` ≥ threshold
    (while grading, the hidden split is scored in a separate process)."""
    expect_split_accuracy(model, split, threshold, "SmallResNet", _(_CRASH), _(_LOW))


def gpu(model: nn.Module) -> None:
    """`model` was trained on the device the grader offered (skipped without CUDA)."""
    expect_gpu_execution(_("SmallResNet training"), model)
