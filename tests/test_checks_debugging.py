"""The checks of lab debugging: the fixed script passes every one; each seed bug, put back alone,
fails exactly its own check (and `self.network==` also `gpu`: nothing can train); the whole seed
script fails every check, each with what it observes; no text a student reads (the exercise's
prose, any check's message) names a fix; other buggy variants fail with expected / got, the same
words here and from the judge.

The notebook is replayed in process: the answer cells (the reference's fixed source, with bugs
put back) are executed into one namespace that holds the notebook's globals (`train_loader`), a
short training run stands in for the notebook's (for `gpu`), then every check runs. The
verdicts of the fixed script, the seed's and each bug alone are computed once for the module.
"""
from __future__ import annotations

import math

import nbformat
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import reference.debugging as R
from autograder.checks import debugging as checks
from autograder.runtime import reset_training_devices
from tests.conftest import ROOT
from tests.judging import check_process, fails, in_process, judged, masked, passes
from tests.planted.debugging import BUGS

CHECKS = ["network_assignment", "flatten_size", "dropout_rate", "softmax_before_loss", "block_wiring",
          "mlp_forward", "accuracy_denominator", "patience_counter", "best_epoch_report", "fit_runs",
          "validation_per_epoch", "gpu", "percent_correct", "class_accuracy", "nms_names"]
ARGUMENT = {"network_assignment": "Net", "flatten_size": "Net", "dropout_rate": "Net", "softmax_before_loss": "Net",
            "block_wiring": "Net", "mlp_forward": "MLP", "accuracy_denominator": "evaluate",
            "patience_counter": "EarlyStopping", "best_epoch_report": "epoch_report", "fit_runs": "fit",
            "validation_per_epoch": "fit", "percent_correct": "percent_correct", "class_accuracy": "class_accuracy",
            "nms_names": "nms_rows"}


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.delenv("COURSE_GRADING", raising=False)   # gpu: a note on CPU, not Skipped
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- replaying the notebook ---------------------------------------------------------------------

_TRAIN = TensorDataset(torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,)))


def _script(bugs) -> dict:
    """The namespace of the notebook after its answer cells ran with `bugs` put back."""
    namespace = {"torch": torch, "nn": nn, "F": F, "math": math, "__name__": "notebook",
                 "train_loader": DataLoader(_TRAIN, batch_size=16)}
    for cell in R.CELLS:
        exec(compile(R.broken_source(cell, bugs), f"<cell {cell}>", "exec"), namespace)  # noqa: S102
    return namespace


def _train_like_the_notebook(ns: dict) -> None:
    """What the notebook's training cell records for `gpu`: a fresh record, then two batches."""
    reset_training_devices()
    try:
        model = ns["Net"]()
        ns["train"](model, DataLoader(_TRAIN, batch_size=16), torch.optim.Adam(model.parameters()), "cpu")
    except Exception:  # noqa: BLE001 — the notebook's cell fails the same way; the checks still run
        pass


def _results(ns: dict) -> dict[str, str | None]:
    """check name → its failure message, or None when it passes."""
    _train_like_the_notebook(ns)
    out = {}
    for name in CHECKS:
        try:
            getattr(checks, name)(*([ns[ARGUMENT[name]]] if name in ARGUMENT else []))
            out[name] = None
        except AssertionError as err:
            out[name] = str(err)
    return out


@pytest.fixture(scope="module")
def verdicts() -> dict[str, dict[str, str | None]]:
    """The checks' verdicts on the fixed script ("fixed"), the seed's ("seed") and each planted
    bug alone (by its name), once for the module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("COURSE_GRADING", raising=False)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            out = {"fixed": _results(_script([])), "seed": _results(_script(R.SEED_BUGS))}
            for b in BUGS:
                out[b.name] = _results(_script([_seed_bug(b)]))
        finally:
            torch.set_num_threads(threads)
    return out


def _seed_bug(b) -> R.SeedBug:
    return next(s for s in R.SEED_BUGS if (s.cell, s.fixed, s.broken) == (b.cell, b.old, b.new))


def test_checks_are_the_public_functions_in_notebook_order():
    assert checks.__all__ == CHECKS
    nb = nbformat.read(ROOT / "solutions" / "debugging" / "debugging.ipynb", as_version=4)
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if c.metadata["nbgrader"]["grade"]]
    assert [i for i in ids if i.startswith("check_")] == [f"check_{name}" for name in CHECKS]
    assert [i for i in ids if not i.startswith("check_")] == ["written_predict_then_run"]  # graded by hand


def test_the_fixed_script_passes_every_check(verdicts):
    assert verdicts["fixed"] == dict.fromkeys(CHECKS)


def test_the_reference_objects_pass(capsys):
    for name, arg in ARGUMENT.items():
        getattr(checks, name)(getattr(R, arg))


# what each check's message observes while its bug is there (the tests' train_loader: 32 samples
# in 2 batches), by check, and where one substitution of a check shows otherwise, by bug name
OBSERVES = {
    "network_assignment": "no attribute 'network'",
    "flatten_size": "shapes cannot be multiplied (2x576 and 53824x256) (in network.1, given [2, 576])",
    "dropout_rate": "got p = 0, inplace=2",
    "softmax_before_loss": "cannot fall below ln(1 + 9/e) ≈ 1.46",
    "block_wiring": "the input of block2: expected [2, 16, 14, 14], got [2, 1, 28, 28] (the input batch's shape)",
    "mlp_forward": 'Module [MLP] is missing the required "forward" function',
    "accuracy_denominator": "that is 71 / 2: look at where 2 comes from",
    "patience_counter": "the counter reads 0, 0, 1, 1",
    "best_epoch_report": "AttributeError: 'int' object has no attribute 'best'",
    "fit_runs": "NameError: name 'val_loader' is not defined",
    "validation_per_epoch": "got train ×6",
    "gpu": "none recorded",
    "percent_correct": "got 93.75 — that is 100 · 30 / 32",
    "class_accuracy": "every class scores 100%",
    "nms_names": "NameError",
    "test-accuracy-called-train": "'train accuracy: 75.0'",
    "validation-after-the-loop": "got train ×6, then valid",
    "val-loader-name": "NameError: name 'val_loader' is not defined (after: train) — read the error",
}


def test_the_seed_script_fails_every_check_each_with_what_it_observes(verdicts):
    results = verdicts["seed"]
    for name in CHECKS:
        assert results[name] is not None, f"{name} passes on the seed's script"
        assert OBSERVES[name] in results[name], results[name]
        assert results[name].count("\n") == 0 and "expected" in results[name] and "got" in results[name]


@pytest.mark.parametrize("b", BUGS, ids=lambda b: b.name)
def test_each_planted_seed_bug_fails_exactly_its_checks(verdicts, b):
    results = verdicts[b.name]
    failed = {name for name, message in results.items() if message is not None}
    assert failed == set(b.fails), results
    check = _seed_bug(b).check
    assert OBSERVES.get(b.name, OBSERVES[check]) in results[check], results[check]


def test_planted_bugs_are_the_seed_bugs():
    assert [(b.cell, b.old, b.new) for b in BUGS] == [(s.cell, s.fixed, s.broken) for s in R.SEED_BUGS]
    assert len({b.name for b in BUGS}) == len(BUGS)
    assert len({s.check for s in R.SEED_BUGS}) >= 12 and set(CHECKS) == {s.check for s in R.SEED_BUGS} | {"gpu"}


# --- what a student reads never names the fix ---------------------------------------------------

# each bug's fix, in the words of its explanation (SEED_BUGS) and of the checks as they were
FIX_WORDING = {
    "network_assignment": ["self.network = ", "compares instead", "instead of assigning"],
    "flatten_size": ["64 * 3 * 3", "64*3*3", "64·3·3", "14, 7 and 3"],
    "dropout_rate": ["nn.Dropout(0.2)", "decimal point"],
    "softmax_before_loss": ["remove the softmax", "no softmax", "delete the softmax", "without the softmax"],
    "block_wiring": ["block2(x1)", "block 1's output", "block1's output"],
    "mlp_forward": ["indent", "into the class", "inside the class"],
    "accuracy_denominator": ["correct / count", "len(loader.dataset)", "number of samples, not", "not by the number"],
    "patience_counter": ["+= 1", "instead of adding", "counter += "],
    "validation_per_epoch": ["indent", "into the loop", "inside the loop"],
    "fit_runs": ["evaluate(model, valid_loader", "rename", "fit's own argument"],
    "best_epoch_report": [".format(best,", "meant `best`", "not best_epoch.best"],
    "percent_correct": ["len(test_loader.dataset)", "test_loader.dataset", 'print("test accuracy'],
    "class_accuracy": ["dedent", "outside the if", "out of the if", "loop's level"],
    "nms_names": ["chosen_box = bboxes", "box[2:])", "`box[2:]`", "one name", "rename"],
}


def test_no_text_a_student_reads_names_a_fix(verdicts):
    """The exercise's prose (the symptoms table included) and every check's message — on the
    seed's script and on each bug alone — name no bug's fix; the exercise holds none of the
    solution's notes on the fixes."""
    exercise = nbformat.read(ROOT / "exercises" / "debugging" / "debugging.ipynb", as_version=4)
    prose = [c.source for c in exercise.cells if c.cell_type == "markdown"]
    messages = [m for results in verdicts.values() for m in results.values() if m]
    assert len(messages) > len(BUGS) and any("What we saw" in p for p in prose)
    assert set(FIX_WORDING) == {s.check for s in R.SEED_BUGS}
    for bug in R.SEED_BUGS:   # the words catch each fix as the solution words it
        assert any(words in bug.explanation for words in FIX_WORDING[bug.check]), bug.explanation
    for text in prose + messages:
        assert "Fix:" not in text, text
        for check, words in FIX_WORDING.items():
            for words_of_fix in words:
                assert words_of_fix not in text, f"{check}'s fix ({words_of_fix!r}) in: {text}"
    code = "\n".join(c.source for c in exercise.cells if c.cell_type == "code")
    assert "The fixes of this cell" not in code and "Fix:" not in code
    assert all(s.symptom in "\n".join(prose) for s in R.SEED_BUGS)   # the table shows every symptom


def test_the_checks_students_receive_name_no_fix():
    """autograder/checks/debugging.py ships to students (the public checks): none of its strings,
    messages and docstrings alike, holds a fix's wording."""
    import ast
    import inspect

    strings = [node.value for node in ast.walk(ast.parse(inspect.getsource(checks)))
               if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    for text in strings:
        for check, words in FIX_WORDING.items():
            assert not any(w in text for w in words), f"{check}'s fix in: {text}"


def test_the_solution_names_every_fix():
    solution = nbformat.read(ROOT / "solutions" / "debugging" / "debugging.ipynb", as_version=4)
    text = "\n".join(c.source for c in solution.cells)
    assert text.count("# The fixes of this cell (the solution only):") == len(R.CELLS)
    for bug in R.SEED_BUGS:
        assert bug.fixed in text and f"# {bug.check}: " in text


def test_the_judge_reads_the_seed_script_as_the_notebook_does():
    """Every check on the seed's script, probed in a check process of its own and judged from
    the record, fails with the notebook's words (gpu: tests/test_grading.py)."""
    ns = _script(R.SEED_BUGS)
    for name, arg in ARGUMENT.items():
        source = f"checks.{name}({arg})"
        here = in_process("debugging", source, ns)
        assert here not in ("pass", "not answered"), name
        assert masked(judged("debugging", source, ns, check_process())) == masked(here), name


def test_checks_leave_the_global_rng_and_the_training_record_alone(capsys):
    from autograder.runtime import training_devices

    reset_training_devices()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    for name, arg in ARGUMENT.items():
        getattr(checks, name)(getattr(R, arg))
    assert torch.equal(torch.get_rng_state(), state)
    assert training_devices() == {"parameters": set(), "batches": set()}   # only the notebook's training counts


# --- network_assignment / the probe -------------------------------------------------------------


class Compared(R.Net):
    """The seed's `self.network==` on a working network: Net() fails on reading self.network."""

    def __init__(self):
        nn.Module.__init__(self)
        self.features = nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.MaxPool2d(8))
        self.network == nn.Sequential(nn.Flatten(), nn.Linear(64 * 3 * 3, 10))  # noqa: B015

    def forward(self, x):
        return self.network(self.features(x))


def test_network_assignment_fails_on_a_comparison():
    fails(checks.network_assignment, Compared, contains=("AttributeError", "no attribute 'network'", "look closely"))


def test_the_other_checks_see_the_layers_a_comparison_threw_away():
    checks.flatten_size(Compared)      # the probe assigned what `==` compared: the network runs
    model = checks._build(Compared)
    assert type(model) is Compared and isinstance(model.network, nn.Sequential)
    assert not hasattr(model, "anything_else")   # the probe is gone once the model is built


def test_network_assignment_fails_without_linear_layers():
    class NoClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Conv2d(1, 10, 28)

        def forward(self, x):
            return self.features(x).flatten(1)

    fails(checks.network_assignment, NoClassifier, contains=("nn.Linear", "none"))


def test_network_assignment_other_constructor_errors():
    class NeedsArgs(nn.Module):
        def __init__(self, width):
            super().__init__()

    fails(checks.network_assignment, NeedsArgs, contains=("TypeError", "without arguments"))


# --- flatten_size / dropout_rate / softmax_before_loss / block_wiring variants -------------------


def _net(**changes):
    """R.Net with layers of its classifier replaced: changes = {index: module}."""
    class Variant(R.Net):
        def __init__(self):
            super().__init__()
            for i, m in changes.items():
                self.network[int(i)] = m
    return Variant


def test_flatten_size_fails_on_other_wrong_sizes():
    fails(checks.flatten_size, _net(**{"1": nn.Linear(64 * 7 * 7, 256)}),
          contains=("2x576", "in network.1, given [2, 576]", "what does network.1 receive"))
    fails(checks.flatten_size, _net(**{"7": nn.Linear(64, 11)}), contains=("(2, 10)", "(2, 11)"))


def test_flatten_size_goes_layer_by_layer_whatever_forward_does():
    class Rewired(R.Net):
        def forward(self, x):
            return self.network(self.block3(self.block2(x)))

    passes(checks.flatten_size, Rewired)
    fails(checks.block_wiring, Rewired, contains=("the input of block2", "(the input batch's shape)"))


def test_dropout_rate_variants():
    fails(checks.dropout_rate, _net(**{"3": nn.Dropout(0.5)}), contains=("network.3", "p = 0.5", "20%"))
    fails(checks.dropout_rate, _net(**{"3": nn.Identity(), "6": nn.Identity()}), contains=("none",))
    checks.dropout_rate(_net(**{"3": nn.Dropout(p=0.2)}))


def test_softmax_before_loss_variants():
    class SoftmaxInForward(R.Net):
        def forward(self, x):
            return F.softmax(super().forward(x), dim=1)

    class LogSoftmaxInForward(R.Net):   # harmless: log-softmax of log-probabilities changes nothing
        def forward(self, x):
            return F.log_softmax(super().forward(x), dim=1)

    fails(checks.softmax_before_loss, SoftmaxInForward, contains=("rows in [0, 1] that sum to 1", "1.46"))
    fails(checks.softmax_before_loss, _net(**{"7": nn.Sequential(nn.Linear(64, 10), nn.Softmax(dim=-1))}),
          contains=("network.7.1", "Softmax"))
    checks.softmax_before_loss(LogSoftmaxInForward)


def test_block_wiring_variants():
    class SkipsBlock3(R.Net):
        def forward(self, x):
            return self.network(self.block2(self.block1(x)))

    class Flattened(R.Net):   # no parts named as the lecture's
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(self.block1, self.block2, self.block3)
            del self.block1, self.block2, self.block3

        def forward(self, x):
            return self.network(self.features(x))

    fails(checks.block_wiring, SkipsBlock3, contains=("the input of network", "got [2, 32, 7, 7]"))
    fails(checks.block_wiring, Flattened, contains=("block1, block2, block3, network", "got network, features"))
    passes(checks.block_wiring, _net(**{"1": nn.Linear(64 * 7 * 7, 256)}))   # a flatten size is not the wiring


def test_net_checks_want_the_class():
    fails(checks.flatten_size, R.Net(), contains=("class",))


# --- mlp_forward --------------------------------------------------------------------------------


def test_mlp_forward_variants():
    class Wide(R.MLP):
        def forward(self, x):
            return self.network(x)[:, :5]

    class Unwritten(nn.Module):
        def forward(self, x):
            raise NotImplementedError()

    fails(checks.mlp_forward, Wide, contains=("(2, 10)", "(2, 5)"))
    with pytest.raises(NotImplementedError):   # an unanswered cell, not the missing forward
        checks.mlp_forward(Unwritten)


# --- accuracy_denominator -----------------------------------------------------------------------


def _evaluate(mean_per_batch=False, divide_by_batches=False, no_eval=False):
    def evaluate(model, loader, device):
        if not no_eval:
            model.eval()
        losses, accs, total, correct, count = [], [], 0.0, 0, 0
        for x, y in loader:
            pred = model(x)
            losses.append(F.cross_entropy(pred, y).item())
            accs.append((pred.argmax(1) == y).float().mean().item())
            total += F.cross_entropy(pred, y, reduction="sum").item()
            correct += (pred.argmax(1) == y).sum().item()
            count += len(y)
        if mean_per_batch:
            return sum(losses) / len(losses), sum(accs) / len(accs)
        return total / count, correct / (len(loader) if divide_by_batches else count)
    return evaluate


def test_accuracy_denominator_variants():
    checks.accuracy_denominator(_evaluate())
    checks.accuracy_denominator(_evaluate(no_eval=True))   # no dropout here: the same numbers
    fails(checks.accuracy_denominator, _evaluate(mean_per_batch=True), contains=("batches of 32", "accuracy"))
    fails(checks.accuracy_denominator, _evaluate(divide_by_batches=True), contains=("71 / 1: look at where 1 comes from",))
    fails(checks.accuracy_denominator, lambda m, l, d: 0.5, contains=("a tuple (loss, accuracy)",))
    fails(checks.accuracy_denominator, lambda m, l, d: (1 / 0, 1), contains=("ZeroDivisionError",))


# --- patience_counter ---------------------------------------------------------------------------


def _stopper(step):
    return type("Stopper", (R.EarlyStopping,), {"step": step})


def test_patience_counter_variants():
    def stops_one_late(self, val_loss, model=None):
        if val_loss < self.best:
            self.best, self.counter = val_loss, 0
        else:
            self.counter += 1
        return self.counter > self.patience

    def never_resets(self, val_loss, model=None):
        if val_loss < self.best:
            self.best = val_loss
        else:
            self.counter += 1
        return self.counter >= self.patience

    def sets_to_one(self, val_loss, model=None):   # the seed's counter
        if val_loss < self.best:
            self.best, self.counter = val_loss, 0
        else:
            self.counter = 1
        return self.counter >= self.patience

    fails(checks.patience_counter, _stopper(stops_one_late), contains=("one epoch later", "counter 0, 0, 1, 2"))
    fails(checks.patience_counter, _stopper(sets_to_one), contains=("counter reads 0, 0, 1, 1", "patience of 2"))
    fails(checks.patience_counter, _stopper(never_resets), contains=("[1.0, 1.1, 0.9, 1.0, 1.1]", "0, 1, 1, 2, 3"))


# --- best_epoch_report, fit_runs, validation_per_epoch -------------------------------------------


def test_best_epoch_report_variants():
    def best_is_the_epoch(epoch, epochs, history, best_epoch):
        return R.epoch_report(epoch, epochs, history, best_epoch).replace("loss 0.800 (", f"loss {best_epoch:.3f} (")

    fails(checks.best_epoch_report, best_is_the_epoch, contains=("best valid loss 2.000 (epoch 2)", "which number"))
    fails(checks.best_epoch_report, lambda *a: None, contains=("got None",))


def _fit(evaluates=None, early_stops=True, appends_twice=False):
    """fit as the reference writes it, with one change: evaluate given `evaluates(train_loader,
    valid_loader)`, the early stopper's answer ignored, or val_loss appended twice."""
    def fit(model, train_loader, valid_loader, optimizer, device, epochs, patience):
        stopper = EarlyStopping(patience)
        history = {"train_loss": [], "val_loss": [], "val_acc": []}
        best_epoch, stop = 0, False
        for epoch in range(1, epochs + 1):
            if stop and early_stops:
                break
            history["train_loss"].append(train(model, train_loader, optimizer, device))
            loader = evaluates(train_loader, valid_loader) if evaluates else valid_loader
            val_loss, val_acc = evaluate(model, loader, device)
            history["val_loss"] += [val_loss] * (2 if appends_twice else 1)
            history["val_acc"].append(val_acc)
            stop = stopper.step(val_loss, model)
            best_epoch = epoch if stopper.counter == 0 else best_epoch
            print(epoch_report(epoch, epochs, history, best_epoch))
        stopper.restore(model)
        return history
    return fit


# the names the given stand-ins replace while a check of fit runs (see autograder.checks.given)
train, evaluate, EarlyStopping, epoch_report = R.train, R.evaluate, R.EarlyStopping, R.epoch_report


def test_fit_checks_variants(capsys):
    passes(checks.fit_runs, _fit())
    passes(checks.validation_per_epoch, _fit())
    fails(checks.fit_runs, _fit(evaluates=lambda t, v: t), contains=("what evaluate got", "train_loader"))
    fails(checks.validation_per_epoch, _fit(early_stops=False),
          contains=("no improvement in epochs 3 and 4", "early stopper"))
    fails(checks.validation_per_epoch, _fit(appends_twice=True), contains=("history['val_loss']",))
    passes(checks.fit_runs, _fit(appends_twice=True))            # its history is validation_per_epoch's to check
    fails(checks.fit_runs, lambda *a: None, contains=("evaluate was never called",))


def test_fit_checks_stand_in_for_the_notebooks_helpers(capsys):
    """The given train, evaluate, EarlyStopping and epoch_report replace the notebook's own while
    fit runs (a broken one costs its own check only), and are put back after."""
    ns = _script([b for b in R.SEED_BUGS if b.check in ("patience_counter", "accuracy_denominator", "best_epoch_report")])
    checks.fit_runs(ns["fit"])
    checks.validation_per_epoch(ns["fit"])
    assert ns["EarlyStopping"].__module__ == "notebook" and ns["train"].__module__ == "notebook"


# --- percent_correct / class_accuracy -----------------------------------------------------------


def test_percent_correct_variants(capsys):
    def fraction(model, test_loader, device):
        print("test accuracy:", 0.75)
        return 0.75

    def silent(model, test_loader, device):
        return 75.0

    def per_batch(model, test_loader, device):
        accs = [(model(x).argmax(1) == y).float().mean().item() for x, y in test_loader]
        print("test accuracy")
        return 100 * sum(accs) / len(accs)

    fails(checks.percent_correct, fraction, contains=("expected 75.0 (30 right of 40), got 0.75",))
    fails(checks.percent_correct, silent, contains=("the line it prints", "''"))
    fails(checks.percent_correct, per_batch, contains=("30 right of 40",))


def test_class_accuracy_variants(capsys):
    def fractions(model, test_loader, classes, device):
        return {k: v / 100 for k, v in R.class_accuracy(model, test_loader, classes, device).items()}

    fails(checks.class_accuracy, fractions, contains=("'cat': 70.0", "'cat': 0.7"))
    fails(checks.class_accuracy, lambda *a: [], contains=("got []",))


# --- nms_names ----------------------------------------------------------------------------------


def test_nms_names_variants():
    def keeps_ties_out(rows, t):
        rows, kept = sorted(rows, key=lambda r: r[1], reverse=True), []
        while rows:
            best = rows.pop(0)
            rows = [r for r in rows if r[0] != best[0] or R.iou(best[2:], r[2:]) < t]
            kept.append(best)
        return kept

    def sorts_in_place(rows, t):
        rows.sort(key=lambda r: r[1], reverse=True)
        return R.nms_rows(rows, t)

    fails(checks.nms_names, keeps_ties_out, contains=("IoU exactly 0.5",))
    fails(checks.nms_names, sorts_in_place, contains=("the rows passed in",))
    fails(checks.nms_names, lambda rows, t: rows, contains=("(class 0, score 0.8)",))
    fails(checks.nms_names, lambda rows, t: rows[0][7], contains=("IndexError",))


# --- gpu and unanswered cells -------------------------------------------------------------------


def test_gpu_fails_when_nothing_trained():
    reset_training_devices()
    fails(checks.gpu, contains=("none recorded",))


def test_gpu_is_skipped_while_grading_without_cuda(monkeypatch):
    from autograder.checks import Skipped

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _train_like_the_notebook(_script([]))
    monkeypatch.setenv("COURSE_GRADING", "1")
    with pytest.raises(Skipped):
        checks.gpu()


def test_not_implemented_propagates():
    def blank(*args, **kwargs):
        raise NotImplementedError()

    class BlankNet(nn.Module):
        def __init__(self):
            raise NotImplementedError()

    for name in ("accuracy_denominator", "patience_counter", "best_epoch_report", "fit_runs", "validation_per_epoch",
                 "percent_correct", "class_accuracy", "nms_names"):
        with pytest.raises(NotImplementedError):
            getattr(checks, name)(blank)
    for name in ("network_assignment", "flatten_size", "dropout_rate", "softmax_before_loss", "block_wiring",
                 "mlp_forward"):
        with pytest.raises(NotImplementedError):
            getattr(checks, name)(BlankNet)


def test_network_assignment_other_attribute_errors_get_no_comparison_hint():
    class Typo(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2D(1, 8, 3)

    message = fails(checks.network_assignment, Typo, contains=("Conv2D",))
    assert "look closely" not in message
