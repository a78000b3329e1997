"""autograder.checks.transfer: each check passes on the reference objects and fails, with
expected / got, on buggy variants; the checks stay independent of each other. The planted bugs of
tests/planted/transfer.py are applied to the reference source here too and run through the
notebook's pipeline (the draw and seed of TRANSFER, the threshold of course.yml) to prove each
fails exactly the checks it declares (the notebook-level run of the first two is the grader's test).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import reference.transfer as R
from autograder.checks import transfer as checks
from tests.planted import planted_source
from tests.planted.transfer import BUGS
from tests.judging import fails

CHECKS = ["freeze", "replace_head", "trainable_parameters", "feature_extraction", "transfer_beats_scratch"]
THRESHOLD = 0.8  # course.yml: labs.transfer.thresholds.transfer_accuracy


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the notebook
    yield
    torch.set_num_threads(before)


def _notebook(functions: dict) -> dict[str, nn.Module]:
    """The notebook's training cell with the functions in `functions` (transfer_models and the
    learning rates): the three models, trained in order until one of them raises, as the cell does."""
    T = R.TRANSFER
    labelled = R.few_shot(R.select_digits(R.mnist_splits()["train"], range(5, 10)), T["per_class"], seed=T["seed"])
    R.seed_everything(T["seed"])
    models = functions["transfer_models"](R.load_digit_backbone(), num_classes=5)
    for name, model in models.items():
        R.seed_everything(T["seed"])
        try:
            R.fit(model, labelled, T["epochs"], functions["lrs"][name], T["batch_size"], device="cpu")
        except (ValueError, RuntimeError):
            break  # the notebook's cell stops here; the checks still run
    return models


@pytest.fixture(scope="module")
def trained() -> dict[str, nn.Module]:
    """The reference run of the notebook: test accuracy on digits 5-9 of 0.812 (scratch),
    0.898 (feature extraction), 0.886 (fine-tuning)."""
    return _notebook({"transfer_models": R.transfer_models, "lrs": R.TRANSFER["lr"]})


def test_threshold_matches_course_yml(course):
    if "transfer" not in [lab.id for lab in course.labs]:
        pytest.skip("lab transfer is not in course.yml yet")
    assert course.lab("transfer").thresholds["transfer_accuracy"] == THRESHOLD


# ------------------------------------------------------------------------------ freeze
def test_freeze_pass():
    checks.freeze(R.freeze)


def _freeze_attribute(model):
    model.requires_grad = False
    return model


def _freeze_eval(model):
    return model.eval()


def _freeze_weights_only(model):
    for name, p in model.named_parameters():
        if name.endswith("weight"):
            p.requires_grad_(False)
    return model


def _freeze_no_return(model):
    R.freeze(model)


def _freeze_reinit(model):
    for p in model.parameters():
        p.requires_grad_(False)
        p.data.zero_()
    return model


def _freeze_compares(model):
    for p in model.parameters():
        p.requires_grad == False  # noqa: E712, B015 — the bug: a comparison, not an assignment
    return model


@pytest.mark.parametrize("fn, contains", [
    (_freeze_attribute, ("trainable parameters after freeze(ResNet-18)", "expected 0, got 11,689,512", "only adds an attribute")),
    (_freeze_eval, ("expected 0, got 11,689,512", "`model.eval()` freezes nothing")),
    (_freeze_compares, ("expected 0, got 11,689,512",)),
    (_freeze_weights_only, ("the biases still learn",)),
    (_freeze_no_return, ("return value", "got None", "return model")),
    (_freeze_reinit, ("values after freeze", "changed")),
    (lambda model: 1 / 0, ("freeze(ResNet-18)", "ZeroDivisionError")),
])
def test_freeze_fail(fn, contains):
    fails(checks.freeze, fn, contains=contains)


# ------------------------------------------------------------------------------ replace_head
def test_replace_head_pass():
    checks.replace_head(R.replace_head)


def _head_fixed_in_features(model, num_classes):
    if hasattr(model, "fc"):
        model.fc = nn.Linear(512, num_classes)
    else:
        model.classifier[-1] = nn.Linear(4096, num_classes)
    return model


def _head_whole_classifier(model, num_classes):
    if hasattr(model, "fc"):
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    else:
        model.classifier = nn.Linear(model.classifier[-1].in_features, num_classes)
    return model


def _head_first_linear(model, num_classes):
    if hasattr(model, "fc"):
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    else:
        model.classifier[0] = nn.Linear(model.classifier[0].in_features, num_classes)
    return model


def _head_frozen(model, num_classes):
    R.replace_head(model, num_classes)
    return R.freeze(model)


def _head_no_bias(model, num_classes):
    R.replace_head(model, num_classes)
    head = model.fc if hasattr(model, "fc") else model.classifier[-1]
    new = nn.Linear(head.in_features, num_classes, bias=False)
    if hasattr(model, "fc"):
        model.fc = new
    else:
        model.classifier[-1] = new
    return model


def _head_ignores_num_classes(model, num_classes):
    head = model.fc if hasattr(model, "fc") else model.classifier[-1]
    return R.replace_head(model, head.out_features)


def _head_reused(model, num_classes):
    head = model.fc if hasattr(model, "fc") else model.classifier[-1]
    head.out_features = num_classes
    head.weight = nn.Parameter(head.weight[:num_classes].clone())
    head.bias = nn.Parameter(head.bias[:num_classes].clone())
    return model


def _head_unfreezes_everything(model, num_classes):
    for p in model.parameters():
        p.requires_grad_(True)
    return R.replace_head(model, num_classes)


@pytest.mark.parametrize("fn, contains", [
    (_head_fixed_in_features, ("model.classifier[-1] after replace_head(a VGG-style network, 3)",
                               "Linear(in_features=24, out_features=3, bias=True)", "in_features=4096", "old.in_features")),
    (_head_whole_classifier, ("model.classifier after replace_head", "the same Sequential of 7 layers", "got Linear")),
    (_head_first_linear, ("model.classifier after replace_head", "earlier ones changed")),
    (_head_frozen, ("requires_grad of the new head (model.fc)", "expected True", "do not freeze it")),
    (_head_no_bias, ("bias=True", "bias=False", "keep the bias")),
    (_head_ignores_num_classes, ("model.fc after replace_head(ResNet-18, 7)", "out_features=7", "out_features=1000")),
    (_head_reused, ("a new nn.Linear", "the old layer, changed")),
    (_head_unfreezes_everything, ("the rest of ResNet-18 after replace_head", "unchanged and still frozen", "trainable")),
    (lambda model, n: None, ("return value", "got None")),
])
def test_replace_head_fail(fn, contains):
    fails(checks.replace_head, fn, contains=contains)


# ------------------------------------------------------------------------------ trainable_parameters
def test_trainable_parameters_pass():
    checks.trainable_parameters(R.trainable_parameters)


@pytest.mark.parametrize("fn, contains", [
    (lambda m: sum(p.numel() for p in m.parameters()), ("ResNet-18 with layer1 frozen", "11,541,544", "11,689,512")),
    (lambda m: len([p for p in m.parameters() if p.requires_grad]), ("count the values (p.numel())",)),
    (lambda m: torch.tensor(sum(p.numel() for p in m.parameters() if p.requires_grad)), ("a tensor", "Python int")),
    (lambda m: float(sum(p.numel() for p in m.parameters() if p.requires_grad)), ("the int", "float")),
    (lambda m: sum(p.numel() for p in m.state_dict().values()), ("11,541,544",)),
    (lambda m: sum(p.numel() for _, p in m.named_parameters(remove_duplicate=False) if p.requires_grad),
     ("a model using one Linear(4, 4) twice", "expected 38, got 58", "counts once")),
])
def test_trainable_parameters_fail(fn, contains):
    fails(checks.trainable_parameters, fn, contains=contains)


# ------------------------------------------------------------------------------ feature_extraction
def test_feature_extraction_pass(trained):
    checks.feature_extraction(trained["feature_extraction"])


def _pretrained(trainable_backbone=False) -> R.DigitCNN:
    model = R.DigitCNN()
    model.load_state_dict(R.load_digit_backbone())
    return model if trainable_backbone else R.freeze(model)


def test_feature_extraction_fail(trained):
    fails(checks.feature_extraction, trained["fine_tuning"],
           contains=("trainable backbone parameters", "features.0.weight", "freeze(model) before replace_head"))
    fails(checks.feature_extraction, R.freeze(R.replace_head(_pretrained(True), 5)),
           contains=("trainable head parameters", "fc.weight, fc.bias frozen", "not the other way round"))
    fails(checks.feature_extraction, R.replace_head(R.freeze(R.DigitCNN()), 5),  # not the pre-trained weights
           contains=("backbone values", "load_digit_backbone()", "differ"))
    fails(checks.feature_extraction, _pretrained(),  # the old head: 5 outputs, but frozen
           contains=("trainable head parameters",))
    fails(checks.feature_extraction, R.replace_head(_pretrained(), 10), contains=("out_features=5",))
    fails(checks.feature_extraction, nn.Sequential(nn.Flatten(), nn.Linear(784, 5)),
           contains=("layers", "missing features.0.weight"))
    fails(checks.feature_extraction, "model", contains=("nn.Module", "str"))
    # weights trained while trainable and frozen afterwards: the values tell
    model = R.replace_head(_pretrained(True), 5)
    labelled = R.few_shot(R.select_digits(R.mnist_splits()["train"], range(5, 10)), 1, seed=0)
    R.fit(model, labelled, 1, 1e-2, device="cpu")
    for p in model.features.parameters():
        p.requires_grad_(False)
    fails(checks.feature_extraction, model, contains=("backbone values", "differ"))


# ------------------------------------------------------------------------------ transfer_beats_scratch
def test_transfer_beats_scratch_pass(trained):
    transferred = {"feature extraction": trained["feature_extraction"], "fine-tuning": trained["fine_tuning"]}
    for split in ("val", "test"):
        checks.transfer_beats_scratch(transferred, trained["scratch"], split, THRESHOLD)
    checks.transfer_beats_scratch(trained["fine_tuning"], trained["scratch"])
    model = trained["scratch"].train()
    checks.transfer_beats_scratch(transferred, model, "val", THRESHOLD)
    assert model.training  # the mode is restored


def test_transfer_beats_scratch_fail(trained):
    scratch, fe = trained["scratch"], trained["feature_extraction"]
    # swapped: scratch does worse than the transferred model it is compared with
    fails(checks.transfer_beats_scratch, {"fine-tuning": scratch}, fe, "test",
           contains=("fine-tuning accuracy on the hidden test split's digits 5-9", "(from scratch on the same labelled examples)"))
    fails(checks.transfer_beats_scratch, fe, scratch, "val", 0.99, contains=("≥ 0.99", "train longer"))
    R.seed_everything(0)
    untrained = R.DigitCNN()
    fails(checks.transfer_beats_scratch, fe, untrained, "test", contains=("from-scratch model", "≥ 0.50", "train the scratch model"))
    fails(checks.transfer_beats_scratch, {"fine-tuning": R.DigitCNN(10)}, scratch, "test",
           contains=("logits of shape (N, 5)", "(500, 10)"))
    fails(checks.transfer_beats_scratch, {"fine-tuning": nn.Linear(3, 5)}, scratch, "test",
           contains=("a model that runs", "RuntimeError"))
    fails(checks.transfer_beats_scratch, fe, None, "test", contains=("an nn.Module", "NoneType"))


def test_unanswered_cells_propagate_not_implemented(trained):
    def blank(*args, **kwargs):
        raise NotImplementedError()

    class Blank(nn.Module):
        def forward(self, x):
            raise NotImplementedError()

    for call in (lambda: checks.freeze(blank), lambda: checks.replace_head(blank),
                 lambda: checks.trainable_parameters(blank),
                 lambda: checks.transfer_beats_scratch(Blank(), trained["scratch"], "val")):
        with pytest.raises(NotImplementedError):
            call()


# ------------------------------------------------------------------------------ planted bugs, in process
def _planted_function(b, functions: dict):
    namespace = {"torch": torch, "nn": nn, "DigitCNN": R.DigitCNN, "__name__": "planted",
                 **{k: v for k, v in functions.items() if callable(v)}}
    exec(compile("from __future__ import annotations\n" + planted_source(R, b), f"<planted {b.name}>", "exec"),  # noqa: S102
         namespace)
    return namespace[b.cell]


def _failed(functions: dict, models: dict) -> set[str]:
    calls = {
        "freeze": lambda: checks.freeze(functions["freeze"]),
        "replace_head": lambda: checks.replace_head(functions["replace_head"]),
        "trainable_parameters": lambda: checks.trainable_parameters(functions["trainable_parameters"]),
        "feature_extraction": lambda: checks.feature_extraction(models["feature_extraction"]),
        "transfer_beats_scratch": lambda: checks.transfer_beats_scratch(
            {"feature extraction": models["feature_extraction"], "fine-tuning": models["fine_tuning"]},
            models["scratch"], "test", THRESHOLD),
    }
    failed = set()
    for name, call in calls.items():
        try:
            call()
        except AssertionError:
            failed.add(name)
    return failed


def test_bugs_are_distinct_and_declare_known_checks():
    assert len(BUGS) >= 4 and len({b.name for b in BUGS}) == len(BUGS)
    assert all(b.fails <= set(CHECKS) | {"gpu"} and b.fails for b in BUGS)
    assert {b.cell for b in BUGS} >= {"freeze", "replace_head", "trainable_parameters", "transfer_models", "learning_rates"}


@pytest.mark.parametrize("b", BUGS, ids=lambda b: b.name)
def test_planted_bug_fails_exactly_its_checks(b, trained):
    functions = {"freeze": R.freeze, "replace_head": R.replace_head, "trainable_parameters": R.trainable_parameters,
                 "lrs": dict(R.TRANSFER["lr"])}
    if b.cell == "learning_rates":  # the answer cell: `LEARNING_RATES = {...}` as the template writes it
        namespace = {}
        exec(b.apply(f"LEARNING_RATES = {R.TRANSFER['lr']}"), namespace)  # noqa: S102
        functions["lrs"] = namespace["LEARNING_RATES"]
    else:
        functions[b.cell] = _planted_function(b, functions)
    functions["transfer_models"] = (functions["transfer_models"] if b.cell == "transfer_models"
                                    else _planted_function_or_reference("transfer_models", functions))
    retrain = b.cell in ("freeze", "transfer_models", "learning_rates")  # what the notebook's models depend on
    models = _notebook(functions) if retrain else trained
    assert _failed(functions, models) == set(b.fails)


def _planted_function_or_reference(name: str, functions: dict):
    """The reference `name`, bound to the (possibly planted) functions it calls."""
    import inspect
    import textwrap

    namespace = {"torch": torch, "nn": nn, "DigitCNN": R.DigitCNN, "__name__": "planted",
                 **{k: v for k, v in functions.items() if callable(v)}}
    exec(compile("from __future__ import annotations\n" + textwrap.dedent(inspect.getsource(getattr(R, name))),  # noqa: S102
                 f"<reference {name}>", "exec"), namespace)
    return namespace[name]
