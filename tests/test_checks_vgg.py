"""The checks of lab vgg: the reference passes every one, and every one can fail.

Each check runs on the reference objects (must pass) and on buggy variants (must raise an
AssertionError that reads `<what>: expected ..., got ... — hint`). The planted bugs of
tests/planted/vgg.py are applied to the reference source here too, cell by cell, and the
notebook's pipeline is rerun on them (with a short training and a lower accuracy threshold) to
prove each fails exactly the checks it declares (the notebook-level run is the grader's test).
"""
from __future__ import annotations

import inspect
import textwrap

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

import reference.vgg as R
from autograder.checks import vgg as checks
from tests.planted import planted_source
from tests.planted.vgg import BUGS
from tests.judging import fails, passes

CHECKS = ["vgg_block", "param_counts", "torchvision_match", "accuracy", "gpu"]
CELLS = ["AlexNet", "vgg_block", "VGG", "vgg11", "vgg16", "SmallVGG", "random_shift", "train_classifier"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models; and on a shared machine a second thread mostly waits
    yield
    torch.set_num_threads(threads)


def _namespace(source_of: dict[str, str] | None = None) -> dict:
    """The notebook's answer cells (the reference's source, some replaced) executed in order."""
    ns = {"torch": torch, "nn": nn, "F": F, "TensorDataset": TensorDataset, "get_device": R.get_device,
          "__name__": "notebook"}
    for cell in CELLS:
        src = (source_of or {}).get(cell) or textwrap.dedent(inspect.getsource(getattr(R, cell)))
        exec(compile(src, f"<cell {cell}>", "exec"), ns)  # noqa: S102
    return ns


def test_the_scored_model_is_smallvgg():
    assert set(checks.SCORED) == {"accuracy"} and checks.SCORED["accuracy"].model == "SmallVGG"


def test_reference_passes_and_leaves_the_random_state_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    checks.vgg_block(R.vgg_block)
    checks.vgg_block(R.vgg_block, cases=((4, 2, 3), (1, 64, 128)))  # the hidden cases
    checks.param_counts(R.AlexNet, R.vgg11, R.vgg16)
    checks.torchvision_match(R.AlexNet, R.vgg11, R.vgg16)
    assert torch.equal(torch.get_rng_state(), state)


def test_unfilled_cells_propagate_not_implemented():
    def blank(*args, **kwargs):
        raise NotImplementedError()

    class BlankForward(R.VGG):
        def forward(self, x):
            raise NotImplementedError()

    for call in (lambda: checks.vgg_block(blank), lambda: checks.param_counts(R.AlexNet, blank, R.vgg16),
                 lambda: checks.torchvision_match(blank, R.vgg11, R.vgg16),
                 lambda: checks.torchvision_match(_alexnet(forward=BlankForward.forward), R.vgg11, R.vgg16),
                 lambda: checks.accuracy(BlankForward(((1, 4),), 10, 1, hidden=8, pool=3), "val", 0.5)):
        with pytest.raises(NotImplementedError):
            call()


# --------------------------------------------------------------------------- vgg_block
def _block(kind="ok"):
    def block(num_convs, in_channels, out_channels):
        layers = []
        conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        for i in range(num_convs):
            cin = in_channels if (i == 0 or kind == "in-every-conv") else out_channels
            if kind != "shared":
                conv = nn.Conv2d(cin, out_channels, 3, padding=0 if kind == "no-padding" else 1,
                                 bias=kind != "no-bias")
            layers.append(conv)
            if kind != "no-relu":
                layers.append(nn.ReLU())
        if kind != "no-pool":
            layers.append(nn.MaxPool2d(2, stride=1 if kind == "pool-stride-1" else 2))
        if kind == "sequential":
            return nn.Sequential(*layers)
        return layers
    return block


def test_vgg_block_other_correct_solution_passes():
    passes(checks.vgg_block, _block())
    passes(checks.vgg_block, lambda n, i, o: tuple(R.vgg_block(n, i, o)))


@pytest.mark.parametrize("kind, contains", [
    ("sequential", ("vgg_block(2, 3, 64): expected a list of layers, got Sequential", "splice")),
    ("no-relu", ("layers: expected Conv2d, ReLU, Conv2d, ReLU, MaxPool2d, got Conv2d, Conv2d, MaxPool2d",)),
    ("no-pool", ("got Conv2d, ReLU, Conv2d, ReLU —",)),
    ("no-padding", ("convolution 1", "padding=(1, 1)", "padding=(0, 0)", "keep the height and width")),
    ("in-every-conv", ("vgg_block(2, 3, 64) convolution 2: expected Conv2d(64, 64,", "got Conv2d(3, 64,")),
    ("no-bias", ("bias=False",)),
    ("shared", ("2 distinct nn.Conv2d", "the same layer repeated")),
    ("pool-stride-1", ("pooling: expected MaxPool2d(kernel_size=2, stride=2)", "halves")),
])
def test_vgg_block_fails(kind, contains):
    fails(checks.vgg_block, _block(kind), contains=contains)


def test_vgg_block_that_crashes():
    fails(checks.vgg_block, lambda n, i, o: 1 / 0, contains=("vgg_block(2, 3, 64)", "ZeroDivisionError"))


# --------------------------------------------------------------------------- param_counts
def test_param_counts_fail():
    fails(checks.param_counts, R.AlexNet, R.vgg11, lambda: R.VGG(((2, 64), (2, 128), (2, 256), (2, 512), (2, 512))),
           contains=("vgg16() parameters: expected 138,357,544, got 133,047,848", "features has 9,404,992, expected "
                     "14,714,688", "13 convolutions of 3×3"))

    class SeedAlexNet(R.AlexNet):  # the lecture's 2048-unit classifier
        def __init__(self):
            super().__init__()
            self.classifier[1], self.classifier[4], self.classifier[6] = (nn.Linear(9216, 2048), nn.Linear(2048, 2048),
                                                                            nn.Linear(2048, 1000))
    fails(checks.param_counts, SeedAlexNet, R.vgg11, R.vgg16,
           contains=("AlexNet() parameters: expected 61,100,840", "classifier has 25,121,768, expected 58,631,144"))

    class Extra(R.VGG):
        def __init__(self):
            super().__init__(((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)))
            self.head = nn.Linear(1000, 1000)
    fails(checks.param_counts, R.AlexNet, Extra, R.vgg16, contains=("vgg11()", "remove the extra layer"))
    fails(checks.param_counts, R.AlexNet, R.vgg11, lambda: nn.Linear(2, 2), contains=("vgg16()", "features has none"))

    def lazy_vgg11():  # d2l's VGG ends in nn.LazyLinear: no shape before the first forward
        model = R.vgg11()
        model.classifier[0] = nn.LazyLinear(4096)
        return model
    fails(checks.param_counts, R.AlexNet, lazy_vgg11, R.vgg16, contains=("vgg11() classifier.0.weight", "LazyLinear"))
    fails(checks.torchvision_match, R.AlexNet, lambda: R.vgg11(), R.vgg16,
           contains=("vgg11(num_classes=10, in_channels=1)", "TypeError"))


def test_param_counts_ignore_layers_without_parameters():
    checks.param_counts(_alexnet(features={0: nn.Conv2d(3, 64, 11, 4, 0)}), _vgg11(block=_block("no-padding")), R.vgg16)


# --------------------------------------------------------------------------- torchvision_match
def _vgg11(**changes):
    """vgg11 built from the reference with some of its pieces replaced."""
    cls = type("VGGVariant", (R.VGG,), {"forward": changes["forward"]}) if "forward" in changes else R.VGG

    def make(num_classes=1000, in_channels=3):
        block = changes.get("block", R.vgg_block)
        model = cls(((1, 64),), num_classes, in_channels)  # replaced below
        layers, cin = [], in_channels
        for n, cout in ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)):
            part = block(n, cin, cout)
            layers += [nn.Sequential(*part)] if changes.get("nested") else list(part)
            cin = cout
        model.features = nn.Sequential(*layers)
        model.classifier[0] = nn.Linear(512 * 7 * 7, 4096)
        if "avgpool" in changes:
            model.avgpool = changes["avgpool"]
        if "extra" in changes:
            model.classifier.append(changes["extra"])
        return model
    return make


def test_torchvision_match_contract_message():
    """The brief's example: a missing ReLU shifts every later index."""
    def vgg16(num_classes=1000, in_channels=3):
        model = R.vgg16(num_classes, in_channels)
        layers = list(model.features)
        model.features = nn.Sequential(*(layers[:1] + layers[2:]))
        return model

    message = fails(checks.torchvision_match, R.AlexNet, R.vgg11, vgg16)
    assert message.startswith("VGG16 state_dict: expected features.2.weight of shape (64, 64, 3, 3), got "
                              "features.2.weight missing — your model has it as features.1.weight"), message


def _alexnet(**changes):
    cls = type("AlexNetVariant", (R.AlexNet,), {"forward": changes["forward"]}) if "forward" in changes else R.AlexNet

    def make(num_classes=1000, in_channels=3):
        model = cls(num_classes, in_channels if not changes.get("ignore_in_channels") else 3)
        for index, layer in changes.get("features", {}).items():
            model.features[index] = layer
        return model
    return make


def _no_avgpool(self, x):
    return self.classifier(torch.flatten(self.features(x), 1))


def _max_instead_of_avg(self, x):
    return self.classifier(torch.flatten(F.adaptive_max_pool2d(self.features(x), self.avgpool.output_size), 1))


def _channels_last_flatten(self, x):
    return self.classifier(torch.flatten(self.avgpool(self.features(x)).permute(0, 2, 3, 1), 1))


@pytest.mark.parametrize("alexnet, vgg11, contains", [
    (_alexnet(features={0: nn.Conv2d(3, 64, 11, 4, 0)}), R.vgg11,
     ("AlexNet features.0: expected Conv2d(3, 64, kernel_size=(11, 11), stride=(4, 4), padding=(2, 2)), got "
      "Conv2d(3, 64, kernel_size=(11, 11), stride=(4, 4), padding=(0, 0))",)),
    (_alexnet(features={2: nn.MaxPool2d(2, 2)}), R.vgg11, ("AlexNet features.2: expected MaxPool2d(kernel_size=(3, 3)",)),
    (_alexnet(ignore_in_channels=True), R.vgg11,
     ("AlexNet(num_classes=10, in_channels=1) state_dict: expected features.0.weight of shape (64, 1, 11, 11), got "
      "features.0.weight of shape (64, 3, 11, 11)",)),
    (_alexnet(forward=_no_avgpool), R.vgg11, ("AlexNet logits on a [2, 3, 160, 160] batch", "RuntimeError", "avgpool")),
    (_alexnet(forward=_max_instead_of_avg), R.vgg11, ("AlexNet logits", "at flat index")),
    (R.AlexNet, _vgg11(nested=True), ("VGG11 state_dict: expected features.0.weight of shape (64, 3, 3, 3), got "
                                       "features.0.weight missing — your model has it as features.0.0.weight", "ONE flat")),
    (R.AlexNet, _vgg11(avgpool=nn.AdaptiveAvgPool2d((6, 6))),
     ("VGG11 avgpool: expected AdaptiveAvgPool2d((7, 7)), got AdaptiveAvgPool2d((6, 6))",)),
    (R.AlexNet, _vgg11(extra=nn.Softmax(dim=1)), ("VGG11 classifier.7: expected no such layer, got Softmax", "logits")),
    (R.AlexNet, _vgg11(forward=_channels_last_flatten), ("VGG11 logits on a [2, 3, 64, 64] batch", "at flat index")),
])
def test_torchvision_match_fails(alexnet, vgg11, contains):
    fails(checks.torchvision_match, alexnet, vgg11, R.vgg16, contains=contains)


def test_torchvision_match_shape_hint():
    def vgg16(num_classes=1000, in_channels=3):
        model = R.vgg16(num_classes, in_channels)
        model.classifier[0] = nn.Linear(512, 4096)
        return model
    fails(checks.torchvision_match, R.AlexNet, R.vgg11, vgg16,
           contains=("VGG16 state_dict: expected classifier.0.weight of shape (4096, 25088), got classifier.0.weight of "
                     "shape (4096, 512)", "512·7·7 = 25,088"))


def test_torchvision_match_accepts_other_correct_forwards():
    def view_forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(x.view(x.size(0), -1))
    passes(checks.torchvision_match, _alexnet(forward=view_forward), _vgg11(forward=view_forward), R.vgg16)


# --------------------------------------------------------------------------- accuracy, gpu
@pytest.fixture(scope="module")
def trained():
    """SmallVGG after 2 quick epochs on 1,000 digits (2 s of CPU): 0.77 on the validation split."""
    X, y = R.mnist_splits()["train"].tensors
    R.seed_everything(0)
    model = R.SmallVGG()
    R.train_classifier(model, TensorDataset(X[:1000], y[:1000]), epochs=2, lr=3e-3, batch_size=32, device="cpu")
    return model


def test_accuracy_pass_and_fail(trained):
    trained.train()
    checks.accuracy(trained, "val", 0.6)
    assert trained.training
    fails(checks.accuracy, trained, "val", 0.999, contains=("SmallVGG accuracy on the validation split: expected ≥ 0.999",))
    R.seed_everything(0)
    message = fails(checks.accuracy, R.SmallVGG(), "val", 0.9, contains=("expected ≥ 0.90", "train the SmallVGG"))
    assert float(message.split("got ")[1].split(" ")[0]) < 0.3
    broken = R.VGG(((1, 16), (1, 32), (2, 64)), 10, 1, hidden=256, pool=2)  # 64·2·2 features into Linear(256)
    broken.classifier[0] = nn.Linear(64 * 3 * 3, 256)
    fails(checks.accuracy, broken, "val", 0.9, contains=("RuntimeError", "vgg_block and VGG"))
    fails(checks.accuracy, R.SmallVGG, "val", 0.9, contains=("got type",))


def test_gpu(trained, capsys):
    checks.gpu(trained)  # trained on CPU, no CUDA here: skipped with a note
    assert "skipped" in capsys.readouterr().out
    fails(checks.gpu, R.SmallVGG(), contains=("none recorded",))


# --------------------------------------------------------------------------- planted bugs, in process
def _failed_checks(ns: dict, model: nn.Module) -> set[str]:
    calls = {"vgg_block": lambda: checks.vgg_block(ns["vgg_block"]),
             "param_counts": lambda: checks.param_counts(ns["AlexNet"], ns["vgg11"], ns["vgg16"]),
             "torchvision_match": lambda: checks.torchvision_match(ns["AlexNet"], ns["vgg11"], ns["vgg16"]),
             "accuracy": lambda: checks.accuracy(model, "test", 0.6),
             "gpu": lambda: checks.gpu(model)}
    failed = set()
    for name, call in calls.items():
        try:
            call()
        except AssertionError:
            failed.add(name)
    return failed


@pytest.mark.parametrize("b", BUGS, ids=lambda b: b.name)
def test_planted_bug_fails_exactly_its_checks(b, trained):
    assert b.fails <= set(CHECKS) and b.cell in CELLS
    ns = _namespace({b.cell: planted_source(R, b)})
    model = trained  # AlexNet, vgg11 and vgg16 are not SmallVGG: reuse the trained reference
    if b.cell in ("vgg_block", "VGG"):  # the notebook's training cell, shortened, with the bug
        X, y = R.mnist_splits()["train"].tensors
        R.seed_everything(0)
        model = ns["SmallVGG"]()
        try:
            ns["train_classifier"](model, TensorDataset(X[:1000], y[:1000]), epochs=2, lr=3e-3, batch_size=32,
                                   device="cpu")
        except RuntimeError:
            pass  # the notebook's training cell fails the same way; the checks still run
    assert _failed_checks(ns, model) == set(b.fails)
