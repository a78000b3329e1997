"""The checks of lab 14 (detection): the reference passes every one, and every one can fail.

Buggy variants are the reference with one edit (or a stand-in function); the planted bugs of
tests/planted/detection.py are run here in-process too: each fails exactly its declared checks.
"""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
import yaml
from torchvision import ops

import reference.detection as ref
from autograder.checks import detection as checks
from tests.planted.detection import BUGS
from tests.judging import fails

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["iou", "xywh_to_xyxy", "box_iou", "nms", "batched_nms", "nms_rows",
         "average_precision", "mean_average_precision"]
SEEDED = {"iou", "xywh_to_xyxy", "box_iou", "nms", "batched_nms", "nms_rows"}  # checks with random draws


def variant(*edits: tuple[str, str, str]) -> dict:
    """The reference module executed with edits (function, old, new): its namespace, as a notebook's."""
    source = inspect.getsource(ref)
    for name, old, new in edits:
        fn_source = inspect.getsource(getattr(ref, name))
        assert fn_source.count(old) == 1, f"{old!r} occurs {fn_source.count(old)} times in {name}"
        source = source.replace(fn_source, fn_source.replace(old, new))
    namespace = {"__name__": "notebook"}
    exec(compile(source, "<variant>", "exec"), namespace)
    return namespace


def failing(namespace: dict, seed: int = 0) -> set[str]:
    """Names of the checks that fail on the functions of `namespace`."""
    failed = set()
    for name in NAMES:
        kwargs = {"seed": seed} if name in SEEDED else {}
        try:
            getattr(checks, name)(namespace[name], **kwargs)
        except AssertionError:
            failed.add(name)
    return failed


def test_check_names_match_course_yml():
    course = yaml.safe_load((ROOT / "course.yml").read_text())
    lab = next(lab for lab in course["labs"] if lab["id"] == "detection")
    assert sorted(lab["checks"]) == sorted(NAMES) == sorted(checks.__all__)


@pytest.mark.parametrize("seed", [0, 1])
def test_reference_passes_every_check(seed):
    assert failing(vars(ref), seed) == set()


# --- every check can fail -----------------------------------------------------------------------


def _tv_box_iou(a, b):
    return ops.box_iou(a, b)                                  # NaN on zero-area boxes


def _inplace_xywh(boxes):
    boxes[..., 2:] += boxes[..., :2]
    return boxes


def _mutating_nms_rows(rows, iou_threshold):
    rows.sort(key=lambda row: row[1], reverse=True)           # the seed's habit: works on the input
    kept = []
    while rows:
        chosen = rows.pop(0)
        rows[:] = [r for r in rows if r[0] != chosen[0] or ref.iou(chosen[2:], r[2:]) <= iou_threshold]
        kept.append(chosen)
    return kept


def _tensor_iou(box1, box2):
    return torch.as_tensor(ref.iou(box1, box2))                 # a 0-d tensor, not a float


VARIANTS = {
    "iou": [
        ("no clamp", ("iou", "max(min(ay2, by2) - max(ay1, by1), 0.0)", "(min(ay2, by2) - max(ay1, by1))")),
        ("union keeps the intersection", ("iou", "(by2 - by1) - inter", "(by2 - by1)")),
        ("plus one pixel", ("iou", "max(min(ax2, bx2) - max(ax1, bx1), 0.0)", "max(min(ax2, bx2) - max(ax1, bx1) + 1, 0.0)")),
        ("divides by a zero union", ("iou", "inter / union if union > 0 else 0.0", "inter / union")),
        ("returns a tensor", _tensor_iou),
    ],
    "xywh_to_xyxy": [
        ("centre", ("xywh_to_xyxy", "[x, y, x + w, y + h]", "[x - w / 2, y - h / 2, x + w / 2, y + h / 2]")),
        ("in place", _inplace_xywh),
        ("unchanged", ("xywh_to_xyxy", "[x, y, x + w, y + h]", "[x, y, w, h]")),
    ],
    "box_iou": [
        ("no clamp", ("box_iou", "wh = (rb - lt).clamp(min=0)", "wh = rb - lt")),
        ("NaN where the union is 0", ("box_iou", "torch.where(union > 0, inter / union, torch.zeros_like(union))", "inter / union")),
        ("torchvision's, NaN and all", _tv_box_iou),
        ("union without the intersection", ("box_iou", "area_b[None, :] - inter", "area_b[None, :]")),
    ],
    "nms": [
        ("suppresses at >=", ("nms", "ious[i] > iou_threshold", "ious[i] >= iou_threshold")),
        ("indices into the filtered boxes", ("nms", "keep.append(int(order[i]))", "keep.append(int(by_score[i]))")),
        ("ascending then flipped: ties reversed", ("nms", "torch.sort(scores[candidates], descending=True, stable=True).indices",
                                                   "torch.sort(scores[candidates], stable=True).indices.flip(0)")),
        ("ascending scores", ("nms", "descending=True, stable=True", "descending=False, stable=True")),
        ("score filter >", ("nms", "scores >= score_threshold", "scores > score_threshold")),
        ("returns a list", ("nms", "return torch.tensor(keep, dtype=torch.int64)", "return keep")),
    ],
    "batched_nms": [
        ("ignores classes", ("batched_nms", "for c in torch.unique(labels):", "for c in torch.unique(labels)[:1]:\n        idx = torch.arange(len(labels))")),
        ("not re-sorted", ("batched_nms", "return keep[by_score]", "return keep")),
        ("tie at the threshold dropped", ("batched_nms", "return keep[by_score]",
                                          "keep = keep[by_score]\n    return keep[:1] if len(keep) == 2 else keep")),
        ("indices within the class", ("batched_nms", "keep.append(idx[nms(boxes[idx], scores[idx], iou_threshold)])",
                                      "keep.append(nms(boxes[idx], scores[idx], iou_threshold))")),
    ],
    "nms_rows": [
        ("the seed's strict keep", ("nms_rows", "<= iou_threshold", "< iou_threshold")),
        ("mutates its input", _mutating_nms_rows),
        ("ignores classes", ("nms_rows", "row[0] != chosen[0]", "False")),
        ("ascending", ("nms_rows", "reverse=True", "reverse=False")),
    ],
    "average_precision": [
        ("precision not monotone", ("average_precision", "precision = np.maximum.accumulate(precision[::-1])[::-1]", "precision = precision")),
        ("no 100 cap", ("average_precision", ".indices[:100]", ".indices")),
        ("ground truth reused", ("average_precision", "taken[best] = True", "pass")),
        ("first gt above threshold, not the best", ("average_precision", "best, best_iou = g, ious[k][g]", "best, best_iou = (g, ious[k][g]) if best < 0 else (best, best_iou)")),
        ("11-point VOC interpolation", ("average_precision", "np.linspace(0, 1, 101)", "np.linspace(0, 1, 11)")),
    ],
    "mean_average_precision": [
        ("over predicted classes too", ("mean_average_precision", 'labels = [t["labels"] for t in targets]', 'labels = [t["labels"] for t in targets] + [p["labels"] for p in preds]')),
        ("VOC threshold by default", ("mean_average_precision", "iou_thresholds = np.linspace(0.5, 0.95, 10)", "iou_thresholds = [0.5]")),
        ("classes assumed 0, 1, 2", ("mean_average_precision", "classes = torch.unique(torch.cat(labels)).tolist() if labels else []", "classes = [0, 1, 2]")),
        ("first threshold only", ("mean_average_precision", "for t in iou_thresholds]", "for t in list(iou_thresholds)[:1]]")),
    ],
}


@pytest.mark.parametrize("name,label,change", [(n, label, change) for n, vs in VARIANTS.items() for label, change in vs],
                         ids=[f"{n}-{label}" for n, vs in VARIANTS.items() for label, _ in vs])
def test_check_fails_on_buggy_variant(name, label, change):
    fn = change if callable(change) else variant(change)[name]
    message = fails(getattr(checks, name), fn)
    assert len(message) < 600 and message.count("\n") <= 1, message


def test_a_wrong_average_precision_costs_only_its_own_check():
    """The mAP check gives the student's mean_average_precision the reference's AP of its own
    inputs (golden data): a wrong AP fails average_precision, not mean_average_precision; an AP
    that the student's mAP calls on other inputs is the student's own."""
    wrong = variant(("average_precision", "precision = np.maximum.accumulate(precision[::-1])[::-1]",
                     "precision = precision"))
    own = wrong["average_precision"]
    with pytest.raises(AssertionError):
        checks.average_precision(own)
    checks.mean_average_precision(wrong["mean_average_precision"])
    assert wrong["average_precision"] is own          # the student's own, put back after the check
    over = variant(("mean_average_precision", 'labels = [t["labels"] for t in targets]',
                    'labels = [t["labels"] for t in targets] + [p["labels"] for p in preds]'))
    with pytest.raises(AssertionError):           # class 5 (no ground truth): the student's own AP, -1
        checks.mean_average_precision(over["mean_average_precision"])


# Red team: answers that are a library's or the checks' own correct helpers, however reached
LIBRARY_ANSWERS = {
    "iou": "def iou(box1, box2):\n    from autograder.checks.detection import _iou_given\n    return _iou_given(box1, box2)\n",
    "xywh_to_xyxy": "def xywh_to_xyxy(boxes):\n    from torchvision import ops\n"
                    "    return ops.box_convert(boxes.clone(), 'xywh', 'xyxy')\n",
    "box_iou": "def box_iou(a, b):\n    return ops.box_iou(a, b).nan_to_num(0.0)\n",
    "nms": "def nms(boxes, scores, iou_threshold, score_threshold=0.0):\n    return tv_nms(boxes, scores, iou_threshold)\n",
    "batched_nms": "def batched_nms(boxes, scores, labels, iou_threshold):\n"
                   "    return ops.batched_nms(boxes, scores, labels, iou_threshold)\n",
    "nms_rows": "def nms_rows(rows, iou_threshold):\n    from autograder.checks import detection\n"
                "    return reference_nms_rows(rows, iou_threshold)\n",
    "average_precision": "def average_precision(*args):\n    from pycocotools.cocoeval import COCOeval\n"
                         "    return reference_ap(*args)\n",
    "mean_average_precision": "def mean_average_precision(*args):\n    from sklearn.metrics import average_precision_score\n"
                              "    return reference_map(*args)\n",
}


@pytest.mark.parametrize("name", NAMES)
def test_an_answer_that_is_a_library_or_the_checks_helper_fails(name):
    """Written by hand: torchvision.ops, pycocotools, scikit-learn or the checks' own helpers in
    an answer's code fail its check, here and through the judge (red team: 13/13 points)."""
    namespace = {"__name__": "notebook", "ops": ops, "tv_nms": ops.nms, "reference_nms_rows": ref.nms_rows,
                 "reference_ap": ref.average_precision, "reference_map": ref.mean_average_precision}
    exec(LIBRARY_ANSWERS[name], namespace)
    fails(getattr(checks, name), namespace[name], contains=("code of your own",))
    fails(getattr(checks, name), ops.nms if name == "nms" else ops.box_iou, contains=("a function you wrote",))


def test_unfilled_cell_propagates_not_implemented():
    def blank(*args, **kwargs):
        raise NotImplementedError()

    for name in NAMES:
        with pytest.raises(NotImplementedError):
            getattr(checks, name)(blank)


def test_a_few_messages_read_well():
    with pytest.raises(AssertionError, match=r"expected \[\d, \d\], got \[\d\] — suppress only when IoU > threshold"):
        checks.nms(variant(("nms", "ious[i] > iou_threshold", "ious[i] >= iou_threshold"))["nms"])
    with pytest.raises(AssertionError, match="finite values, got NaN or inf — where the union is 0 return 0"):
        checks.box_iou(variant(("box_iou", "torch.where(union > 0, inter / union, torch.zeros_like(union))",
                                "inter / union"))["box_iou"])
    with pytest.raises(AssertionError, match="modified in place"):
        checks.xywh_to_xyxy(_inplace_xywh)
    with pytest.raises(AssertionError, match=r"expected 0\.666667, got 0\.577558 — precision is 0, 1/2, 2/3"):
        checks.average_precision(variant(("average_precision", "precision = np.maximum.accumulate(precision[::-1])[::-1]",
                                          "precision = precision"))["average_precision"])


# --- independence -------------------------------------------------------------------------------


@pytest.mark.parametrize("name,helper,change", [
    ("batched_nms", "nms", ("nms", "ious[i] > iou_threshold", "ious[i] >= iou_threshold")),
    ("nms", "box_iou", ("box_iou", "wh = (rb - lt).clamp(min=0)", "wh = rb - lt")),
    ("batched_nms", "box_iou", ("box_iou", "wh = (rb - lt).clamp(min=0)", "wh = rb - lt")),
    ("average_precision", "box_iou", ("box_iou", "wh = (rb - lt).clamp(min=0)", "wh = rb - lt")),
    ("nms_rows", "iou", ("iou", "(by2 - by1) - inter", "(by2 - by1)")),
])
def test_a_check_gives_its_exercise_correct_helpers(name, helper, change):
    """The student's batched_nms calls the student's wrong nms: its check gives it a correct nms
    (torchvision's), so the one mistake costs only nms's points; the student's nms is put back."""
    namespace = variant(change)
    wrong_helper = namespace[helper]
    getattr(checks, name)(namespace[name])
    assert namespace[helper] is wrong_helper


# --- planted bugs -------------------------------------------------------------------------------


@pytest.mark.parametrize("planted", BUGS, ids=[b.name for b in BUGS])
def test_planted_bug_fails_exactly_its_checks(planted):
    assert planted.fails <= set(NAMES) and planted.cell in NAMES
    namespace = variant((planted.cell, planted.old, planted.new))
    assert failing(namespace, seed=0) == planted.fails
    assert failing(namespace, seed=1) == planted.fails


def test_at_least_three_planted_bugs():
    assert len(BUGS) >= 3 and len({b.name for b in BUGS}) == len(BUGS)
