"""Verdicts outside the student's process (autograder.witness): every attack of issue 11, each a
real notebook graded through `grade_class`, earns no point that the honest answer lacks.

The notebook's process only probes: it records what the student's code returned, and the grading
process judges. Patching torch, the checks, the guard or the report pipe, tracing, lying numbers
and forged records change at most what the probe recorded, never how it is judged.
"""
from __future__ import annotations

import json

import nbformat
import pytest

from autograder.build import dumps
from autograder.grade import grade_class
from autograder import witness
from tests.conftest import lost_checks
from tests.planted import append_to_cell as _append, bug, plant

WRONG = bug("wrong", "sigmoid_grad", "return s * (1 - s)", "return x * (1 - x)", "sigmoid_grad")

# a function that answers with what its callers hold: a local named like an expected value
# in any frame above it, or a gc-tracked dict that holds one (bound, after every cell, to every
# exercise's name, so that the blank cells below do not rebind them)
STEAL = (
    "import sys, gc\n"
    "def _steal(*args, **kwargs):\n"
    "    f = sys._getframe(1)\n"
    "    while f is not None:\n"
    "        for name, v in list(f.f_locals.items()):\n"
    "            if 'expect' in name and v is not None:\n"
    "                return v\n"
    "        f = f.f_back\n"
    "    for o in gc.get_objects():\n"
    "        if isinstance(o, dict) and o.get('expected') is not None:\n"
    "            return o['expected']\n"
    "    raise RuntimeError('nothing to steal')\n"
    "_NAMES = ('worked_example', 'sgd_step', 'mlp_forward', 'mlp_backward', 'rel_error', 'numerical_gradient',\n"
    "          'sigmoid_grad')\n"
    "get_ipython().events.register('post_run_cell', lambda *a: globals().update({n: _steal for n in _NAMES}))\n"
    "globals().update({n: _steal for n in _NAMES})")

# sigmoid_grad answers with the processes whose memory it can read, besides its own and its
# parent's (the launcher of its namespace): the check process and the worker must not be there
PROC_SCAN = (
    "import os\n"
    "def sigmoid_grad(x):\n"
    "    me, parent = os.readlink('/proc/self'), str(os.getppid())\n"
    "    seen, readable = 0, []\n"
    "    for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
    "        seen += 1\n"
    "        try:\n"
    "            start = int(open(f'/proc/{pid}/maps').readline().split('-')[0], 16)\n"
    "            with open(f'/proc/{pid}/mem', 'rb') as mem:\n"
    "                mem.seek(start)\n"
    "                mem.read(16)\n"
    "            if pid not in (me, parent):\n"
    "                readable.append(pid)\n"
    "        except (OSError, ValueError):\n"
    "            pass\n"
    "    raise RuntimeError(f'seen {seen}, readable {readable}')")

# appended to the first answer cell (worked_example) of the blank backprop exercise
ON_BLANK = {
    # nbclient/IPython would run every later cell, check cells included, as `pass`
    "input-transformer": "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])",
    # "cell ok" for every cell and "done", written to the worker's report pipe, then exit
    "report-pipe": (
        "import json, os, stat\n"
        "for fd in range(3, 256):\n"
        "    try:\n"
        "        if not stat.S_ISFIFO(os.fstat(fd).st_mode):\n"
        "            continue\n"
        "        for i in range(200):\n"
        "            os.write(fd, (json.dumps({'index': i, 'seconds': 0.0}) + '\\n').encode())\n"
        "        os.write(fd, b'{\"done\": true}\\n')\n"
        "    except OSError:\n"
        "        pass\n"
        "os._exit(0)"),
    # every answer reads what the check holds: its callers' frames and the objects gc finds
    # (with the check in the notebook's process this took mlp_backward and rel_error)
    "check-frames": STEAL,
}

# appended to the wrong sigmoid_grad's cell: none may earn its point back
ON_WRONG = {
    # the guard found with gc and disabled, then torch's comparisons patched
    "gc-guard": (
        "import gc, torch\nfrom autograder.integrity import Guard\n"
        "for _g in [o for o in gc.get_objects() if isinstance(o, Guard)]:\n"
        "    _g.restore = lambda: []\n    _g.saved = []\n    _g.code = {}\n"
        "torch.allclose = lambda *a, **k: True"),
    # a trace function that turns every failure of the checks into a return
    "settrace": (
        "import sys\n"
        "def _tracer(frame, event, arg):\n"
        "    if event == 'call' and frame.f_code.co_name in ('fail', 'expect', 'expect_close'):\n"
        "        frame.f_globals.get('__name__', '').startswith('autograder') and sys.settrace(None)\n"
        "    return None\n"
        "import autograder.checks as _c\n"
        "_c.fail = lambda *a, **k: None\n"
        "sys.settrace(_tracer)"),
    # a thread that keeps patching the checks' helpers while the check runs
    "patching-thread": (
        "import threading, time, torch\nimport autograder.checks as _c\nimport autograder.checks.backprop as _b\n"
        "def _patch():\n"
        "    while True:\n"
        "        _c.fail = _b.fail = lambda *a, **k: None\n"
        "        _c.expect = _b.expect = lambda *a, **k: None\n"
        "        torch.allclose = lambda *a, **k: True\n"
        "        time.sleep(0.0005)\n"
        "threading.Thread(target=_patch, daemon=True).start()"),
    # a tensor whose comparisons all say "equal"
    "lying-tensor": (
        "import torch\n"
        "class _Liar(torch.Tensor):\n"
        "    @classmethod\n"
        "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
        "        if func in (torch.allclose, torch.equal):\n"
        "            return True\n"
        "        return super().__torch_function__(func, types, args, kwargs or {})\n"
        "_wrong = sigmoid_grad\n"
        "def sigmoid_grad(x):\n"
        "    return _wrong(x).as_subclass(_Liar)"),
    # forged probe records for every check cell, written over the real ones while they run
    "forged-records": (
        "import os, json, struct, threading, time\n"
        "_dir = os.path.join(os.path.dirname(os.environ['TMPDIR']), 'probe')   # beside the notebook's folder\n"
        "_head = json.dumps({'calls': [{'name': 'sigmoid_grad', 'args': [{'H': 0}], 'ev': [], 'end': None,\n"
        "                               'new': [{'new': 0, 'c': 'builtins:object', 'n': 'function'}]}],\n"
        "                    'arrays': []}).encode()\n"
        "_record = struct.pack('>II', len(_head), 0) + _head\n"
        "def _forge():\n"
        "    while True:\n"
        "        for i in range(200):\n"
        "            try:\n"
        "                with open(os.path.join(_dir, str(i)), 'wb') as f:\n"
        "                    f.write(_record)\n"
        "            except OSError:\n"
        "                pass\n"
        "        time.sleep(0.001)\n"
        "threading.Thread(target=_forge, daemon=True).start()"),
}

# the red team's: one 8 MB tensor, returned a thousand times (an honest record of 8 MB that would
# decode to 8 GB in the grader), to the check's first input only: the notebook's own plot of the
# derivative would spend 40 s of the run turning the list into an 8 GB array
ON_SOLUTION = {
    "decode-bomb": "_big = torch.zeros(1 << 20, dtype=torch.float64)\n"
                   "def sigmoid_grad(x):\n"
                   "    return [_big] * 1000 if x.shape == (5, 5) else torch.sigmoid(x) * (1 - torch.sigmoid(x))",
}

# rel_error returning a float that says it equals anything
LYING_FLOAT = (
    "class _Liar(float):\n"
    "    __eq__ = lambda self, other: True\n"
    "    __ne__ = lambda self, other: False\n"
    "    __le__ = __ge__ = __eq__\n"
    "    __sub__ = __rsub__ = lambda self, other: 0.0\n"
    "    __abs__ = lambda self: 0.0\n"
    "    __float__ = lambda self: 0.0\n"
    "def rel_error(a, b):\n"
    "    return _Liar(123.0)")

# detection: a constant mAP, and the cached golden values changed to that constant
GOLDEN = (
    "import autograder.checks as _c\n"
    "for _key in ('map', 'map_50', 'map_75'):\n"
    "    _c.golden('detection')[_key] = 0.25\n"
    "def mean_average_precision(preds, targets, iou_thresholds=None):\n"
    "    return 2 / 3 if len(preds) == 1 else 0.25")


# detection: answers that are torchvision's or the checks' own correct helpers (red team: 13/13)
LIBRARY = {
    "iou": "def iou(box1, box2):\n    from autograder.checks.detection import _iou_given\n    return _iou_given(box1, box2)",
    "box_iou": "from torchvision import ops\ndef box_iou(a, b):\n    return ops.box_iou(a, b).nan_to_num(0.0)",
    "nms": "from torchvision.ops import nms as _tv_nms\n"
           "def nms(boxes, scores, iou_threshold, score_threshold=0.0):\n    return _tv_nms(boxes, scores, iou_threshold)",
    "batched_nms": "import torchvision\ndef batched_nms(boxes, scores, labels, iou_threshold):\n"
                   "    return torchvision.ops.batched_nms(boxes, scores, labels, iou_threshold)",
}
# backprop: the check's own forward, and autograd with the check's no_grad() undone
AUTOGRAD = {
    "mlp_forward": "from autograder.checks.backprop import _mlp\ndef mlp_forward(x, params):\n    return _mlp(x, params)",
    "mlp_backward": "def mlp_backward(x, y, params):\n    with torch.enable_grad():\n"
                    "        leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}\n"
                    "        loss = ((mlp_forward(x, leaves) - y) ** 2).mean()\n"
                    "        return dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))",
}


@pytest.fixture(scope="module")
def graded(course, tmp_path_factory):
    solution = nbformat.read(course.solution_path("backprop"), as_version=4)
    blank = nbformat.read(course.exercise_path("backprop"), as_version=4)
    wrong = plant(solution, WRONG)
    notebooks = {("blank", "backprop"): blank, ("wrong", "backprop"): wrong,
                 ("lying-float", "backprop"): _append(solution, "rel_error", LYING_FLOAT),
                 ("proc-scan", "backprop"): _append(solution, "sigmoid_grad", PROC_SCAN)}
    notebooks.update({(name, "backprop"): _append(blank, "worked_example", code) for name, code in ON_BLANK.items()})
    notebooks.update({(name, "backprop"): _append(wrong, "sigmoid_grad", code) for name, code in ON_WRONG.items()})
    notebooks.update({(name, "backprop"): _append(solution, "sigmoid_grad", code) for name, code in ON_SOLUTION.items()})
    detection = nbformat.read(course.solution_path("detection"), as_version=4)
    notebooks[("golden", "detection")] = _append(detection, "mean_average_precision", GOLDEN)
    library = detection
    for answer, code in LIBRARY.items():
        library = _append(library, answer, code)
    notebooks[("library", "detection")] = library
    notebooks[("autograd", "backprop")] = _append(_append(solution, "mlp_forward", AUTOGRAD["mlp_forward"]),
                                                  "mlp_backward", AUTOGRAD["mlp_backward"])
    root = tmp_path_factory.mktemp("judged")
    for (student, lab), nb in notebooks.items():
        (root / student).mkdir(exist_ok=True)
        (root / student / f"{lab}.ipynb").write_text(dumps(nb))
    results, _ = grade_class(root, course, ["backprop", "detection"], jobs=2)
    return {r.student: r for r in results}


@pytest.mark.parametrize("attack", sorted(ON_BLANK))
def test_a_blank_notebook_that_attacks_the_grader_scores_zero(graded, attack):
    result = graded[attack]
    assert not result.grader_error
    assert result.score == 0 and len(lost_checks(result)) == len([c for c in result.checks if not c.pending])


@pytest.mark.parametrize("attack", sorted(ON_WRONG))
def test_a_wrong_answer_that_attacks_the_grader_earns_nothing(graded, attack):
    honest = lost_checks(graded["wrong"])
    assert set(honest) == {"sigmoid_grad"} and "expected" in honest["sigmoid_grad"]
    result = graded[attack]
    assert not result.grader_error
    assert result.score <= graded["wrong"].score
    assert "sigmoid_grad" in lost_checks(result)


@pytest.mark.parametrize("attack", ["gc-guard", "settrace", "patching-thread", "lying-tensor"])
def test_patching_the_notebooks_process_changes_nothing_the_judge_says(graded, attack):
    """The same check lost with the same message as the honest wrong answer: the judge, in the
    grading process, saw the true values."""
    assert lost_checks(graded[attack]) == lost_checks(graded["wrong"])


def test_the_kernel_engine_probes_with_a_check_process_too(course, tmp_path):
    """--engine kernel: the kernel connects to a check process of its own; reading the check's
    frames and objects from the student's code earns nothing there either."""
    blank = nbformat.read(course.exercise_path("backprop"), as_version=4)
    (tmp_path / "thief").mkdir()
    (tmp_path / "thief" / "backprop.ipynb").write_text(dumps(_append(blank, "worked_example", STEAL)))
    results, _ = grade_class(tmp_path, course, ["backprop"], jobs=1, engine="kernel")
    assert not results[0].grader_error and results[0].score == 0
    assert all("expected" in c.message for c in results[0].checks if not c.pending), [c.message for c in results[0].checks]


def test_the_check_process_is_out_of_the_notebooks_reach(graded):
    """The check runs in a process of its own (autograder.live): the notebook sees processes in
    /proc, but can read the memory of none but its own and its launcher's."""
    message = lost_checks(graded["proc-scan"])["sigmoid_grad"]
    assert "readable []" in message and "seen " in message, message


def test_a_record_that_decodes_to_gigabytes_fails_its_check_not_the_class(graded):
    result = graded["decode-bomb"]
    assert not result.grader_error
    lost = lost_checks(result)
    assert set(lost) == {"sigmoid_grad"} and "decodes to more than 256 MB" in lost["sigmoid_grad"], lost
    assert graded["blank"].score == 0 and not graded["blank"].grader_error


def test_replayed_calls_back_and_judging_time_are_bounded():
    """A forged record that repeats a call back into the check (each on a large tensor), or
    that keeps the judge busy: the check fails with why, within the bounds."""
    import torch
    from autograder.checks import backprop as reference_like  # noqa: F401  (imported for its checks)

    def numerical_gradient(f, x, h=1e-5):
        grad = torch.zeros_like(x)
        flat, g = x.view(-1), grad.view(-1)
        for i in range(flat.numel()):
            old = float(flat[i])
            flat[i] = old + h
            up = float(f(x))
            flat[i] = old - h
            down = float(f(x))
            flat[i] = old
            g[i] = (up - down) / (2 * h)
        return grad
    source = "checks.numerical_gradient(numerical_gradient)"
    header, blob = witness.probe_cell("backprop", source, {"numerical_gradient": numerical_gradient})
    witness.judge_cell("backprop", source, json.loads(json.dumps(header)), blob)      # honest: passes
    call = next(e for e in header["calls"][0]["ev"] if e.get("op") == "call")
    callback = next(e for e in call["ev"] if "cb" in e)
    call["ev"] = [callback] * (witness.MAX_CALLBACKS + 1) + call["ev"]
    with pytest.raises(witness.ReplayMismatch, match="calls back into the check"):
        witness.judge_cell("backprop", source, header, blob)
    with pytest.raises(witness.ReplayMismatch, match="judging the submission took more than"):
        witness.judge_cell("backprop", source, header, blob, facts={"judge_left": [0.0]})


def test_forged_records_fail_every_check_they_replace(graded):
    lost = lost_checks(graded["forged-records"])
    assert "sigmoid_grad" in lost
    assert any("record" in message for message in lost.values()), lost


def test_a_float_that_lies_is_judged_by_its_value(graded):
    lost = lost_checks(graded["lying-float"])
    assert set(lost) == {"rel_error"}
    assert "got 123" in lost["rel_error"], lost


def test_golden_values_changed_in_the_notebook_change_nothing(graded):
    lost = lost_checks(graded["golden"])
    assert set(lost) == {"mean_average_precision"}
    assert "expected" in lost["mean_average_precision"] and "got 0.25" in lost["mean_average_precision"], lost


def test_answers_that_are_a_library_or_the_checks_helpers_lose_their_checks(graded):
    """Written by hand: each answer whose code reaches torchvision's box operations or the checks'
    own correct helpers loses its check, and only those (red team: 13/13 detection points, and
    mlp_forward/mlp_backward by the check's _mlp and autograd)."""
    lost = lost_checks(graded["library"])
    assert set(lost) == set(LIBRARY), lost
    assert all("code of your own" in message for message in lost.values()), lost
    lost = lost_checks(graded["autograd"])
    assert set(lost) == set(AUTOGRAD), lost
    assert "no autograd" in lost["mlp_backward"] and ".enable_grad" in lost["mlp_backward"], lost


# ------------------------------------------------------------------ the record, as data
def test_records_are_plain_data_and_never_a_verdict():
    """A probe's record is JSON plus raw array bytes: no pickle, no "passed"."""
    import torch

    def student(x):
        return torch.sigmoid(x) * (1 - torch.sigmoid(x))
    header, blob = witness.probe_cell("backprop", "checks.sigmoid_grad(sigmoid_grad)", {"sigmoid_grad": student})
    text = json.dumps(header)
    assert "pass" not in text.lower() and b"\x80\x04" not in blob[:2]   # no verdict, no pickle
    witness.judge_cell("backprop", "checks.sigmoid_grad(sigmoid_grad)", json.loads(text), blob)


def test_a_record_from_another_answer_fails():
    """A record made with one answer does not pass the check for another's inputs: the judge
    chooses the inputs (here a literal the source fixes), the record only answers."""
    import torch
    header, blob = witness.probe_cell("backprop", "checks.rel_error(rel_error)", {"rel_error": lambda a, b: 0.0})
    with pytest.raises(AssertionError, match="rel_error"):
        witness.judge_cell("backprop", "checks.rel_error(rel_error)", header, blob)
    header, blob = witness.probe_cell("backprop", "checks.sigmoid_grad(sigmoid_grad)",
                                      {"sigmoid_grad": lambda x: torch.zeros_like(x)})
    header["calls"][0]["ev"] = header["calls"][0]["ev"][:1]           # cut short: the judge needs more
    with pytest.raises((AssertionError, witness.ReplayMismatch)):
        witness.judge_cell("backprop", "checks.sigmoid_grad(sigmoid_grad)", header, blob)


def test_a_check_cell_is_only_calls_of_checks():
    assert witness.check_calls("checks.iou(iou)\nchecks.iou(iou, seed=1)") == [
        ("iou", [("student", "iou")], []), ("iou", [("student", "iou")], [("seed", "literal", "1")])]
    for source in ("import os", "x = checks.iou(iou)", "checks.iou(iou); print(1)", "other.iou(iou)"):
        with pytest.raises(ValueError):
            witness.check_calls(source)


def test_the_time_budget_is_the_graders_measure_not_the_notebooks_clock():
    """train_seconds says 1 s; the grader measured the notebook at 500 s: over the 90 s budget."""
    source = 'checks.time_budget(train_seconds, {"mnist": 90, "fashion_mnist": 100, "cifar10": 100})'
    header, blob = witness.probe_cell("capstone", source, {"train_seconds": 1.0})
    with pytest.raises(AssertionError, match=r"measured by the grader \(mnist\): expected ≤ 90 s, got 500.0 s"):
        witness.judge_cell("capstone", source, header, blob, facts={"notebook_seconds": 500.0, "datasets": {"capstone": "mnist"}})
    witness.judge_cell("capstone", source, header, blob, facts={"notebook_seconds": 12.0, "datasets": {"capstone": "mnist"}})
    with pytest.raises(AssertionError, match="no measure"):
        witness.judge_cell("capstone", source, header, blob)


# ------------------------------------------------------------------ partial credit
def test_independent_cases_score_in_proportion(course):
    """nms with the tie at the threshold suppressed: one case of six fails, not the whole check."""
    from autograder.checks import PartialCredit
    from tests.test_checks_detection import variant
    assert course.lab("detection").partial == {"nms", "batched_nms"}
    namespace = variant(("nms", "ious[i] > iou_threshold", "ious[i] >= iou_threshold"))
    header, blob = witness.probe_cell("detection", "checks.nms(nms)", namespace)
    with pytest.raises(PartialCredit, match=r"IoU exactly 0\.5.*\(5 of 6 cases passed\)") as info:
        witness.judge_cell("detection", "checks.nms(nms)", header, blob, partial=True)
    assert (info.value.passed, info.value.total) == (5, 6)
    with pytest.raises(AssertionError, match="IoU exactly 0.5") as whole:      # not listed: all or nothing
        witness.judge_cell("detection", "checks.nms(nms)", header, blob)
    assert not isinstance(whole.value, PartialCredit)


def test_partial_names_only_checks_of_its_lab(course, tmp_path):
    import yaml
    from autograder.config import CourseError, load_course
    raw = yaml.safe_load(course.path.read_text())
    raw["labs"][0]["partial"] = ["no_such_check"]
    path = tmp_path / "course.yml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(CourseError, match=r"labs\[0\]\.partial: 'no_such_check' is not a check of lab"):
        load_course(path)


# ------------------------------------------------------------------ the judge sees what the check saw
def _verdicts(lab: str, source: str, namespace: dict) -> tuple[str, str]:
    """(in-process verdict, judged verdict) of a check cell: "pass" or the failure's message."""
    import importlib
    checks = importlib.import_module(f"autograder.checks.{lab}")
    try:
        eval(compile(source, "<cell>", "exec"), {**namespace, "checks": checks})
        here = "pass"
    except AssertionError as e:
        here = str(e)
    header, blob = witness.probe_cell(lab, source, namespace)
    try:
        witness.judge_cell(lab, source, json.loads(json.dumps(header)), blob)
        judged = "pass"
    except AssertionError as e:
        judged = str(e)
    return here, judged


def test_a_dict_changed_in_place_is_seen_by_the_judge():
    """sgd_step that writes the new tensors into the dict (and list) it was given."""
    def sgd_step(params, grads, lr):
        if isinstance(params, (list, dict)):
            for k in (range(len(params)) if isinstance(params, list) else list(params)):
                params[k] = params[k] - lr * grads[k]
            return params
        return params - lr * grads
    here, judged = _verdicts("backprop", "checks.sgd_step(sgd_step)", {"sgd_step": sgd_step})
    assert "modified in place" in here and judged == here


def _array_writes(record) -> list:
    """The changes a probe's record holds to arrays the check handed over ({"a": ...})."""
    if isinstance(record, dict):
        found = [change for change in record.get("ch", []) if "a" in change[1]]
        return found + [w for v in record.values() for w in _array_writes(v)]
    if isinstance(record, list):
        return [w for v in record for w in _array_writes(v)]
    return []


@pytest.mark.parametrize("copy_bytes", [witness.ARRAY_COPY_BYTES, 0], ids=["copied", "digested"])
def test_a_write_into_an_array_handed_over_calls_ago_is_recorded(monkeypatch, copy_bytes):
    """Every array the check handed over is compared after each call of the student's code, not
    only the call's own: lenet's zip_code hands over a canvas per call, and a reader that
    scribbles into the canvas of the call before is seen each time (arrays up to
    ARRAY_COPY_BYTES by a copy of their bytes, larger ones by a digest)."""
    from reference.lenet import LeNet5, read_zip_code
    from autograder.runtime import seed_everything
    monkeypatch.setattr(witness, "ARRAY_COPY_BYTES", copy_bytes)
    held = []

    def scribbling_reader(canvas, model):
        if held:
            held[-1][0, 0] = 7 + len(held)        # into the previous call's canvas
        held.append(canvas)
        return read_zip_code(canvas, model)
    seed_everything(0)
    source = "checks.zip_code(read_zip_code, model, n_digits=25)"
    namespace = {"read_zip_code": scribbling_reader, "model": LeNet5().eval()}
    header, _ = witness.probe_cell("lenet", source, namespace)
    assert len(held) == 5 and len(_array_writes(header)) == 4
    here, judged = _verdicts("lenet", source, {**namespace, "model": LeNet5().eval()})
    assert judged == here


def test_global_settings_the_students_code_changes_do_not_reach_the_check():
    import torch

    def sigmoid_grad(x):
        torch.set_default_dtype(torch.float64)     # left behind by the student's code
        torch.set_grad_enabled(False)
        s = 1 / (1 + torch.exp(-x))
        return s * (1 - s)
    try:
        header, blob = witness.probe_cell("backprop", "checks.sigmoid_grad(sigmoid_grad)", {"sigmoid_grad": sigmoid_grad})
        witness.judge_cell("backprop", "checks.sigmoid_grad(sigmoid_grad)", header, blob)
    finally:
        torch.set_default_dtype(torch.float32)
        torch.set_grad_enabled(True)


def test_a_students_exception_keeps_its_builtin_kind():
    """A ValueError subclass raised by the student's code is a ValueError to the judge too (a
    check that catches ValueError sees it as it would in the notebook)."""
    def sigmoid_grad(x):
        class ShapeTrouble(ValueError):
            pass
        raise ShapeTrouble("no such shape")
    header, blob = witness.probe_cell("backprop", "checks.sigmoid_grad(sigmoid_grad)", {"sigmoid_grad": sigmoid_grad})
    with pytest.raises(AssertionError, match="ShapeTrouble: no such shape") as info:
        witness.judge_cell("backprop", "checks.sigmoid_grad(sigmoid_grad)", header, blob)
    assert isinstance(info.value.__cause__, ValueError) and type(info.value.__cause__).__name__ == "ShapeTrouble"


FAKE_TENSOR = '''
import json, torch
from autograder import witness
def sigmoid_grad(x):
    s = torch.sigmoid(x)
    return s * (1 - s)
source = "checks.sigmoid_grad(sigmoid_grad)"
header, blob = witness.probe_cell("backprop", source, {"sigmoid_grad": sigmoid_grad})
call = header["calls"][0]
first = next(e for e in call["ev"] if e.get("op") == "call")
n = len(call["new"])
first["r"] = {"H": n}                                  # the result: a handle that says it is a tensor
first.setdefault("ev", []).insert(0, {"new": n, "c": "torch:Tensor", "n": "Tensor"})
messages = set()
for _ in range(200):
    try:
        witness.judge_cell("backprop", source, json.loads(json.dumps(header)), blob)
        messages.add("pass")
    except AssertionError as err:
        messages.add(str(err)[:60])
print(sorted(messages))
'''


def test_a_handle_that_claims_to_be_a_tensor_cannot_crash_the_judge():
    """Red team: a record whose handle claims `torch:Tensor` made torch's C code read the
    handle's memory as a tensor's (the grader segfaulted, classmates went ungraded). A handle
    now never claims one of torch's or numpy's C classes: the check just fails."""
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", FAKE_TENSOR], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pass" not in done.stdout and "expected" in done.stdout, done.stdout


# ------------------------------------------------------------------ the judge, apart from the grader
FAILING_JUDGES = '''
import os, sys, time
import autograder.judges as judges
real = judges.judge
def judge(lab_id, source, *args, **kwargs):
    if "abort" in source:
        os.abort()                      # as a crash in a decoder or a library would
    if "busy" in source:
        time.sleep(600)
    return real(lab_id, source, *args, **kwargs)
judges.judge = judge
judges.serve(sys.argv[1])
'''


def test_a_judge_that_crashes_or_hangs_costs_only_its_notebook(tmp_path, monkeypatch):
    """Each notebook is judged in a fork of the judges' server: a judge that dies or outlives
    its budget fails that notebook's checks with why (JudgeStopped); the grader and the next
    notebook are judged as before."""
    import sys
    from autograder import judges

    def sigmoid_grad(x):
        s = 1 / (1 + __import__("torch").exp(-x))
        return s * (1 - s)
    source = "checks.sigmoid_grad(sigmoid_grad)"
    record = witness.probe_cell("backprop", source, {"sigmoid_grad": sigmoid_grad})
    script = tmp_path / "failing_judges.py"
    script.write_text(FAILING_JUDGES)
    server = judges.Judges([sys.executable, str(script)])
    monkeypatch.setattr(judges, "_SHARED", server)
    monkeypatch.setattr(judges, "JUDGE_SECONDS", 1.0)
    monkeypatch.setattr(judges, "JUDGE_MARGIN", 1.0)
    try:
        def verdict(cell_source):
            return judges.judge_apart("backprop", [(3, cell_source, False)], {3: record}, "cpu", {})[3][0]
        assert verdict(source).status == "ok"
        crashed = verdict(source + "  # abort")
        assert (crashed.status, crashed.ename) == ("error", "JudgeStopped")
        assert "the judge stopped on this notebook's records" in crashed.evalue
        busy = verdict(source + "  # busy")
        assert (busy.ename, busy.evalue) == ("JudgeStopped", "judging took more than 2 s")
        assert verdict(source).status == "ok"          # the server outlived both
        assert server._proc.poll() is None
        assert _judges_running(script) == [server._proc.pid], "the busy judge outlived its deadline"
    finally:
        server.close()
    broken = judges.Judges([sys.executable, "-c", "raise SystemExit(1)"])    # a server that never starts
    try:                          # the grader's problem: a grader error, graded again next run
        with pytest.raises(judges.JudgeServerDown, match="the judge server did not start"):
            broken.judge("backprop", [(3, source, False)], {3: record}, "cpu", {}, 5.0)
    finally:
        broken.close()


def test_a_deep_temporary_folder_still_gives_the_judge_server_a_socket(tmp_path, monkeypatch):
    """A Unix socket's path holds at most 107 bytes: under a deep TMPDIR the server could not
    bind, and every notebook of the run was a grader error (found with a test's private TMPDIR).
    The socket's folder then goes to /tmp."""
    import os
    import tempfile

    from autograder import judges
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    server = judges.Judges()
    try:
        assert len(server.path) <= judges.SOCKET_PATH_MAX and not server.path.startswith(str(deep))
        assert server.judge("backprop", [], {}, "cpu", {}, 30.0) == {}      # it started, and answers
    finally:
        server.close()
    short = tempfile.mkdtemp(prefix="cj-", dir="/tmp")                      # a short one is used as it is
    monkeypatch.setattr(tempfile, "tempdir", short)
    server = judges.Judges()
    try:
        assert server.path.startswith(short + "/")
    finally:
        server.close()
        os.rmdir(short)


def _maps_torchvision(pid: int) -> bool:
    """Whether process `pid` has torchvision imported (its compiled library mapped)."""
    with open(f"/proc/{pid}/maps") as f:
        return "/torchvision/" in f.read()


def test_the_judge_server_warms_up_only_the_labs_it_judges():
    """Each lab's checks, catalogs, golden data and data sets are loaded into the judges' server
    before its first judge of that lab forks, not all at start: a run that grades backprop never
    imports detection's torchvision (2.5 s of every `course grade`); the first detection notebook
    brings it, and it is judged as before."""
    from autograder import judges
    from reference.backprop import sigmoid_grad
    from reference.detection import iou
    backprop = "checks.sigmoid_grad(sigmoid_grad)"
    detection = "checks.iou(iou)"
    records = {3: witness.probe_cell("backprop", backprop, {"sigmoid_grad": sigmoid_grad}),
               4: witness.probe_cell("detection", detection, {"iou": iou})}
    server = judges.Judges()
    try:
        verdict = server.judge("backprop", [(3, backprop, False)], records, "cpu", {}, 60.0)
        assert verdict[3][0].status == "ok", verdict
        assert not _maps_torchvision(server._proc.pid)
        verdict = server.judge("detection", [(4, detection, False)], records, "cpu", {}, 60.0)
        assert verdict[4][0].status == "ok", verdict
        assert _maps_torchvision(server._proc.pid)
        verdict = server.judge("nosuch", [(3, backprop, False)], records, "cpu", {}, 60.0)    # not a lab: its judge
        assert verdict[3][0].status == "error", verdict                                      # says so, the server goes on
        assert server.judge("backprop", [(3, backprop, False)], records, "cpu", {}, 60.0)[3][0].status == "ok"
    finally:
        server.close()


def test_where_a_tensor_differs_most_is_found_without_sympy():
    """`checks.worst` names the index of the largest error in most checks' messages, and runs in
    every probe and judge: torch.unravel_index imported sympy and torch.fx's symbolic shapes
    there (0.8 s a judge, each a fresh fork); numpy's gives the same index."""
    import subprocess
    import sys
    code = ("import sys, torch\nfrom autograder.checks import worst\n"
            "e = torch.zeros(3, 4, 5); g = e.clone(); g[1, 2, 3] = 1\n"
            "print(worst(g, e), 'sympy' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "('0 at [1, 2, 3]', '1') False", done.stdout + done.stderr[-2000:]


def _judges_running(script) -> list[int]:
    """The processes that run `script` (the server and its judges), after a moment to end."""
    import os
    import time
    time.sleep(0.5)
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if str(script).encode() in f.read():
                    pids.append(int(entry))
        except (OSError, ValueError):
            pass
    return sorted(pids)


def test_a_grader_killed_outright_leaves_no_judge_socket_behind():
    """SIGKILL gives the grader no chance to clean up: its judge server, told by the kernel that
    its parent is gone, removes its socket and the folder the grader made for it."""
    import os
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT
    code = ("from autograder.judges import Judges\nimport time\n"
            "j = Judges()\nprint(j._server(), flush=True)\ntime.sleep(120)")
    grader = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        folder = os.path.dirname(grader.stdout.readline().strip())
        assert os.path.basename(folder).startswith("course-judges-") and os.listdir(folder) == ["judges.sock"]
    finally:
        grader.kill()
        grader.wait()
    deadline = time.monotonic() + 20
    while os.path.exists(folder) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(folder)


def test_the_socket_folders_of_gone_judge_servers_are_swept_and_no_other(monkeypatch):
    """A grader killed with its judge server (SIGKILL to both) left its socket's folder in /tmp:
    one per killed run, for ever. A new judge server removes those whose socket nobody has
    bound for 10 minutes; a live server's, a young one and one holding anything else stay."""
    import os
    import shutil
    import socket
    import tempfile
    import time
    from pathlib import Path

    from autograder import judges
    tmp_path = Path(tempfile.mkdtemp(prefix="sweep-", dir="/tmp"))    # short: a socket's path has a limit

    def folder(name: str, live: bool = False, old: bool = True, extra: bool = False, sock: bool = True):
        path = tmp_path / f"{judges.SOCKET_FOLDER_PREFIX}{name}"
        path.mkdir()
        server = None
        if sock:
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(str(path / "judges.sock"))
            server.listen()
            if not live:
                server.close()            # the file stays; no process has it bound
        if extra:
            (path / "notes.txt").write_text("not a judge server's")
        if old:
            os.utime(path, (time.time() - 3600, time.time() - 3600))
        return path, server

    gone, _ = folder("gone")
    empty, _ = folder("empty", sock=False)
    live, server = folder("live", live=True)
    young, _ = folder("young", old=False)
    other, _ = folder("other", extra=True)
    try:
        assert judges.sweep_sockets(str(tmp_path)) == 2
        assert not gone.exists() and not empty.exists() and live.exists() and young.exists() and other.exists()
        os.utime(young, (time.time() - 3600, time.time() - 3600))
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))   # a new server's folder goes here
        new = judges.Judges()                                        # sweeps first
        try:
            assert not young.exists() and live.exists() and other.exists()
            assert os.path.dirname(new.path).startswith(str(tmp_path))
        finally:
            new.close()
    finally:
        server.close()
        shutil.rmtree(tmp_path)
