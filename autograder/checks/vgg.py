"""Checks of lab vgg (AlexNet and VGG). Names and points: course.yml.

Independent of each other: `vgg_block` looks at the block alone; `param_counts` counts
parameters (a layer without parameters, a padding or a stride, never changes it);
`torchvision_match` compares with torchvision's models — the state_dict keys and shapes, then
every layer's settings, then the outputs with torchvision's state_dict loaded strictly;
`accuracy` scores the trained SmallVGG and `gpu` where its training ran. The big models are
built on the `meta` device (shapes, no memory) except where outputs are compared, and then one
at a time (VGG-16: 553 MB) with cheap pseudo-random weights (torch's initialisers take seconds).
"""
from __future__ import annotations

import gc
import weakref
from typing import Any, Callable

import torch
import torchvision
from torch import nn

from autograder.checks import drawn, CheckFailed, count_params, lazy_parameters, state_shapes
from autograder.checks import (Scored, call_student, error_line, expect, expect_close, expect_gpu_execution,
                               expect_split_accuracy, fail)
from autograder.i18n import Domain

_ = Domain("vgg").gettext


def N_(message: str) -> str:
    """A msgid of the lab's catalog kept in English where it is defined (Babel extracts `N_("...")`),
    translated with `_()` where it is shown."""
    return message


__all__ = ["vgg_block", "param_counts", "torchvision_match", "accuracy", "gpu"]

_CRASH = N_("the model cannot run on [N, 1, 28, 28] digits: make vgg_block and VGG pass their checks first")
_LOW = N_("train the SmallVGG of the training cell as given (epochs, learning rate) and check VGG's forward")
SCORED = {"accuracy": Scored(model="SmallVGG", threshold="accuracy", crash_hint=_CRASH, low_hint=_LOW)}

# name → (parameters of features, of classifier); the totals are LABS.md's numbers
_COUNTS = {
    "AlexNet": (2_469_696, 58_631_144),     # 61,100,840
    "vgg11": (9_220_480, 123_642_856),      # 132,863,336
    "vgg16": (14_714_688, 123_642_856),     # 138,357,544
}
_TORCHVISION = {"AlexNet": torchvision.models.alexnet, "vgg11": torchvision.models.vgg11,
                "vgg16": torchvision.models.vgg16}
_INPUT_SIZE = {"AlexNet": 160, "vgg11": 64, "vgg16": 32}  # small inputs (at 160 and 64 avgpool still averages)
_LABELS = {"AlexNet": "AlexNet", "vgg11": "VGG11", "vgg16": "VGG16"}
_CONVS = {"AlexNet": N_("5 convolutions"), "vgg11": N_("8 convolutions"), "vgg16": N_("13 convolutions")}


def _fmt_count(n: int) -> str:
    return f"{n:,}"


def _on_meta(factory: Callable[..., Any], what: str, *args: Any, **kwargs: Any) -> nn.Module:
    """factory(*args, **kwargs) built on the meta device (shapes only: no memory, no init time)."""
    with torch.device("meta"):
        model = call_student(factory, what, *args, hint=_("it must build the model"), **kwargs)
    if not isinstance(model, nn.Module):
        fail(what, _("an nn.Module"), type(model).__name__, _("return the model (an nn.Module)"))
    lazy = lazy_parameters(model)
    if lazy:
        fail(f"{what} {lazy[0]}", _("a parameter of known shape"), _("a lazy parameter (shape unknown)"),
             _("use nn.Linear(in_features, out_features), not nn.LazyLinear: the shapes must be known "
               "to count them and to load torchvision's weights"))
    return model


# --------------------------------------------------------------------------- vgg_block
_BLOCK_CASES = ((2, 3, 64), (1, 1, 16), (3, 5, 7))


def vgg_block(vgg_block: Callable, cases: tuple = _BLOCK_CASES) -> None:
    """`vgg_block(num_convs, in_channels, out_channels)` returns a list: num_convs × [Conv2d 3×3,
    padding 1, ReLU] then MaxPool2d(2, 2); it maps [N, in, H, W] to [N, out, H/2, W/2]."""
    with torch.random.fork_rng(devices=[]):  # the layers' initialisation leaves the student's random state alone
        for num_convs, cin, cout in cases:
            _check_block(vgg_block, num_convs, cin, cout)


def _check_block(vgg_block: Callable, num_convs: int, cin: int, cout: int) -> None:
    """One case of vgg_block."""
    call = f"vgg_block({num_convs}, {cin}, {cout})"
    layers = call_student(vgg_block, call, num_convs, cin, cout,
                          hint=_("vgg_block must return the list of the block's layers"))
    if isinstance(layers, nn.Sequential) or not isinstance(layers, (list, tuple)):
        fail(call, _("a list of layers"), type(layers).__name__,
             _("return a plain list, [nn.Conv2d(...), nn.ReLU(), ..., nn.MaxPool2d(2, 2)], so VGG can splice the "
               "blocks into one flat Sequential"))
    kinds = [nn.Conv2d, nn.ReLU] * num_convs + [nn.MaxPool2d]
    names = [k.__name__ for k in kinds]
    got = [type(layer).__name__ for layer in layers]
    if got != names:
        fail(_("{call} layers").format(call=call), ", ".join(names), ", ".join(got) or "[]",
             _("each 3×3 convolution is followed by a ReLU, and the block ends with one 2×2 max pooling"))
    convs = [layer for layer in layers if isinstance(layer, nn.Conv2d)]
    if len({id(c) for c in convs}) != len(convs):
        fail(_("{call} convolutions").format(call=call), _("{n} distinct nn.Conv2d").format(n=num_convs),
             _("the same layer repeated"),
             _("create a new nn.Conv2d for each convolution (a repeated one shares its weights)"))
    for i, conv in enumerate(convs):
        in_expected = cin if i == 0 else cout
        spec = (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.bias is not None)
        want = (in_expected, cout, (3, 3), (1, 1), (1, 1), True)
        if spec != want:
            fail(_("{call} convolution {i}").format(call=call, i=i + 1), _conv(*want), _conv(*spec),
                 _("the first convolution maps {cin} → {cout} channels, the others {cout} → {cout}; "
                   "3×3, stride 1, padding 1 keeps the size").format(cin=cin, cout=cout) if spec[:2] != want[:2] else
                 _("3×3 kernels, stride 1 and padding 1 keep the height and width (n + 2 − 3 + 1 = n)"))
    pool = layers[-1]
    spec = (_pair(pool.kernel_size), _pair(pool.stride), _pair(pool.padding))
    if spec != ((2, 2), (2, 2), (0, 0)):
        fail(_("{call} pooling").format(call=call), "MaxPool2d(kernel_size=2, stride=2)",
             f"MaxPool2d(kernel_size={pool.kernel_size}, stride={pool.stride}, padding={pool.padding})",
             _("a 2×2 max pooling with stride 2 halves the height and width"))
    x = torch.zeros(2, cin, 8, 6)
    try:
        with torch.no_grad():
            out = nn.Sequential(*layers)(x)
    except Exception as err:  # noqa: BLE001 — the student's layers may raise anything
        fail(_("{call} on a [2, {cin}, 8, 6] batch").format(call=call, cin=cin),
             _("shape {shape}").format(shape=(2, cout, 4, 3)), error_line(err),
             _("the layers must run one after the other"))
    expect(tuple(out.shape) == (2, cout, 4, 3), _("{call} on a [2, {cin}, 8, 6] batch").format(call=call, cin=cin),
           _("shape {shape}").format(shape=(2, cout, 4, 3)), _("shape {shape}").format(shape=tuple(out.shape)),
           _("padding 1 keeps the size through each 3×3 convolution; the pooling halves it"))


def _pair(v: Any) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _conv(cin: int, cout: int, k: tuple, s: tuple, p: tuple, bias: bool) -> str:
    return (f"Conv2d({cin}, {cout}, kernel_size={k}, stride={s}, padding={p}"
            + ("" if bias else ", bias=False") + ")")


# --------------------------------------------------------------------------- param_counts
def param_counts(AlexNet: Callable, vgg11: Callable, vgg16: Callable) -> None:
    """AlexNet() has 61,100,840 parameters, vgg11() 132,863,336 and vgg16() 138,357,544
    (built on the meta device: counted without memory)."""
    for name, factory in (("AlexNet", AlexNet), ("vgg11", vgg11), ("vgg16", vgg16)):
        model = _on_meta(factory, f"{name}()")
        total = count_params(model)
        features, classifier = _COUNTS[name]
        if total == features + classifier:
            continue
        parts = []
        for part, expected in (("features", features), ("classifier", classifier)):
            module = getattr(model, part, None)
            got = count_params(module) if isinstance(module, nn.Module) else None
            if got != expected:
                parts.append((part, _("{part} has {got}, expected {expected}").format(
                    part=part, got=_("none") if got is None else _fmt_count(got), expected=_fmt_count(expected))))
        hint = "; ".join(text for _part, text in parts) if parts else _("features and classifier are right: remove the extra layer")
        if name != "AlexNet" and any(part == "features" for part, _text in parts):
            hint += " " + _("({convs} of 3×3: check the cfg)").format(convs=_(_CONVS[name]))
        fail(_("{name}() parameters").format(name=name), _fmt_count(features + classifier), _fmt_count(total), hint)


# --------------------------------------------------------------------------- torchvision_match
def _layout_hint(name: str, key: str) -> str:
    part = key.split(".")[0]
    if part == "features":
        if name == "AlexNet":
            return _("features is one nn.Sequential: Conv2d, ReLU, MaxPool2d, Conv2d, ReLU, MaxPool2d, then three "
                     "Conv2d each followed by a ReLU, and a MaxPool2d (indices 0-12)")
        return _("features is ONE flat nn.Sequential of the spliced blocks (nn.Sequential(*layers), not a Sequential of "
                 "Sequentials): each conv followed by a ReLU, each block ending in a MaxPool2d")
    if part == "classifier":
        if name == "AlexNet":
            return _("classifier is Dropout, Linear, ReLU, Dropout, Linear, ReLU, Linear (indices 0-6)")
        return _("classifier is Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear (indices 0-6)")
    return _("use torchvision's names: features, avgpool, classifier")


def _shape_hint(name: str, key: str, expected: tuple, got: tuple) -> str:
    if key == "classifier.1.weight" and name == "AlexNet":
        return _("the first Linear takes the 256·6·6 = 9,216 features after avgpool AdaptiveAvgPool2d((6, 6))")
    if key == "classifier.0.weight":
        return _("the first Linear takes the 512·7·7 = 25,088 features after avgpool AdaptiveAvgPool2d((7, 7))")
    if len(expected) == 4:
        return _("a Conv2d(in, out, k) has a weight of shape (out, in, k, k): expected {layer}").format(
            layer=f"Conv2d({expected[1]}, {expected[0]}, kernel_size={expected[2]})")
    if len(expected) == 2:
        return _("a Linear(in, out) has a weight of shape (out, in): expected {layer}").format(
            layer=f"Linear({expected[1]}, {expected[0]})")
    return _("the layer has the wrong number of channels or features")


def _compare_state(label: str, name: str, expected: dict[str, tuple], got: dict[str, tuple]) -> None:
    """The first key of `expected` (torchvision's order) that `got` lacks or has in another shape."""
    what = f"{label} state_dict"
    convs = [sum(1 for k, s in d.items() if k.startswith("features.") and len(s) == 4) for d in (expected, got)]
    for key, shape in expected.items():
        if key not in got:
            spare = [k for k, s in got.items() if k not in expected and s == shape and k.endswith(key.split(".")[-1])]
            hint = _layout_hint(name, key)
            if spare:
                hint = _("your model has it as {key}; {hint}").format(key=spare[0], hint=hint)
            elif convs[0] != convs[1]:
                hint = _("{label} has {expected} convolutions, your model {got}: check the cfg").format(
                    label=label, expected=convs[0], got=convs[1])
            fail(what, _("{key} of shape {shape}").format(key=key, shape=shape), _("{key} missing").format(key=key), hint)
        if got[key] != shape:
            fail(what, _("{key} of shape {shape}").format(key=key, shape=shape),
                 _("{key} of shape {shape}").format(key=key, shape=got[key]), _shape_hint(name, key, shape, got[key]))
    extra = [k for k in got if k not in expected]
    if extra:
        fail(what, _("no other keys"), _("{key} as well").format(key=extra[0]), _layout_hint(name, extra[0]))


def _layer_spec(m: nn.Module) -> str:
    """What matters of a layer for the outputs, as a short string."""
    if isinstance(m, nn.Conv2d):
        return _conv(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.bias is not None)
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        return f"{type(m).__name__}(kernel_size={_pair(m.kernel_size)}, stride={_pair(m.stride)}, padding={_pair(m.padding)})"
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return f"{type(m).__name__}({_pair(m.output_size)})"
    if isinstance(m, nn.Linear):
        return f"Linear({m.in_features}, {m.out_features}" + ("" if m.bias is not None else ", bias=False") + ")"
    if isinstance(m, nn.Dropout):
        return f"Dropout(p={m.p})"
    return type(m).__name__


def _leaves(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if n and not list(m.children())}


def _compare_layers(label: str, expected: nn.Module, got: nn.Module) -> None:
    ours = _leaves(got)
    theirs = _leaves(expected)
    for key, layer in theirs.items():
        want = _layer_spec(layer)
        have = _layer_spec(ours[key]) if key in ours else "none"
        if have != want:
            fail(f"{label} {key}", want, _("none") if have == "none" else have,
                 _("torchvision's layer at that position ({code} shows them all); layers without parameters count "
                   "in the indices too").format(code=f"print(torchvision.models.{label.lower()}())"))
    extra = [k for k in ours if k not in theirs]
    if extra:
        fail(f"{label} {extra[0]}", _("no such layer"), _layer_spec(ours[extra[0]]),
             _("no softmax or other layer after the last Linear: the model returns logits"))


@torch.no_grad()
def _fill(model: nn.Module, seed: int) -> None:
    """Give `model` (just moved off the meta device) reproducible pseudo-random weights, fast:
    a random pattern of prime length, at He initialisation's scale, tiled over each tensor
    (torch's own initialisers take seconds for 100M+ parameters on a CPU)."""
    g = torch.Generator().manual_seed(seed)
    period = 65_537
    for p in model.parameters():
        scale = (2.0 / p[0].numel()) ** 0.5 if p.dim() > 1 else 0.1
        base = torch.randn(period, generator=g) * scale
        flat = p.view(-1)
        whole = flat.numel() // period
        if whole:
            flat[:whole * period].view(whole, period).copy_(base.expand(whole, period))
        flat[whole * period:].copy_(base[:flat.numel() - whole * period])


@torch.no_grad()
def _compare_outputs(label: str, model: nn.Module, reference: nn.Module, size: int) -> None:
    """Load `reference`'s state_dict (filled with weights) into `model` (built on the meta device)
    strictly, without a copy; the same logits in eval mode."""
    model.load_state_dict(reference.state_dict(), strict=True, assign=True)  # as in _match_structure
    model.eval()
    g = drawn(1)
    x = torch.randn(2, 3, size, size, generator=g)
    expected = reference(x)
    what = _("{label} logits on a [2, 3, {size}, {size}] batch with torchvision's weights (eval mode)").format(
        label=label, size=size)
    hint = _("forward is features → avgpool → torch.flatten(x, 1) → classifier, and every layer as torchvision's "
             "(kernel sizes, strides, paddings)")
    try:
        got = model(x)
    except NotImplementedError:
        raise
    except Exception as err:  # noqa: BLE001
        fail(what, _("a tensor of shape {shape}").format(shape=tuple(expected.shape)), error_line(err), hint)
    scale = float(expected.abs().max())
    expect_close(got, expected, what, atol=1e-5 * scale, rtol=1e-4, hint=hint)


def _match_structure(name: str, factory: Callable) -> nn.Module:
    """On the meta device (no memory, quick): torchvision's state_dict keys and shapes, also with
    num_classes=10 and in_channels=1, its layers at the same positions, and a strict load.
    Returns torchvision's model, still on the meta device."""
    label = _LABELS[name]
    with torch.device("meta"):
        reference = _TORCHVISION[name](weights=None)
        gray = _TORCHVISION[name](weights=None, num_classes=10)
    model = _on_meta(factory, f"{name}()")
    _compare_state(label, name, state_shapes(reference), state_shapes(model))
    _compare_layers(label, reference, model)
    expected = state_shapes(gray)  # in_channels reaches the first convolution, num_classes the last Linear
    expected["features.0.weight"] = (64, 1) + expected["features.0.weight"][2:]
    call = f"{name}(num_classes=10, in_channels=1)"
    _compare_state(call, name, expected, state_shapes(_on_meta(factory, call, num_classes=10, in_channels=1)))
    try:
        model.load_state_dict(reference.state_dict(), strict=True, assign=True)
    except Exception as err:  # noqa: BLE001
        fail(_("{label} load_state_dict(torchvision's, strict=True)").format(label=label), _("no error"), error_line(err),
             _("use torchvision's module names and layer positions"))
    return reference


def torchvision_match(AlexNet: Callable, vgg11: Callable, vgg16: Callable) -> None:
    """torchvision's alexnet / vgg11 / vgg16 (weights=None): the same state_dict keys and shapes
    (also with num_classes=10, in_channels=1), the same layers at the same positions and a
    strict load of torchvision's state_dict, all on the meta device; then, one model at a time
    with weights (torchvision's model filled, its state_dict loaded into the student's with
    assign=True: one copy), the same logits in eval mode on a small batch."""
    models = {"AlexNet": AlexNet, "vgg11": vgg11, "vgg16": vgg16}
    references = {name: _match_structure(name, factory) for name, factory in models.items()}
    for seed, name in enumerate(_INPUT_SIZE):
        failure = _outputs_failure(name, models[name], references.pop(name), seed)
        # raised here, so that the traceback (kept by the notebook) holds no model of hundreds of MB
        if isinstance(failure, NotImplementedError):
            raise NotImplementedError(str(failure))
        if failure:
            raise CheckFailed(failure)


def _outputs_failure(name: str, factory: Callable, reference: nn.Module, seed: int) -> str | Exception | None:
    """The failure message of comparing the logits with torchvision's (a NotImplementedError
    when an answer is not written yet), or None. The models are freed on return, one in memory
    at a time, whatever happened."""
    model = _on_meta(factory, f"{name}()")
    alive = weakref.ref(model)
    with torch.random.fork_rng(devices=[]):  # the student's random state is left alone
        reference = reference.to_empty(device="cpu").eval()
        _fill(reference, seed)
        try:
            _compare_outputs(_LABELS[name], model, reference, _INPUT_SIZE[name])
        except AssertionError as failure:
            return str(failure)
        except NotImplementedError as blank:
            return NotImplementedError(str(blank))
        finally:
            del reference, model
            if alive() is not None:  # the student's model is in a reference cycle: free its weights now
                gc.collect()
    return None


# --------------------------------------------------------------------------- accuracy, gpu
def accuracy(model: nn.Module, split: str = "test", threshold: float = 0.9) -> None:
    """Accuracy of the trained SmallVGG on `autograder.data.mnist_splits()[split]` ≥ threshold
    (the hidden test split is scored by the grader in a separate process)."""
    expect_split_accuracy(model, split, threshold, "SmallVGG", _(_CRASH), _(_LOW))


def gpu(model: nn.Module) -> None:
    """`model` (the SmallVGG) was trained on the device the grader offered (skipped without CUDA)."""
    expect_gpu_execution(_("SmallVGG training"), model)
