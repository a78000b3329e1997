"""Checks of lab 14, Object detection basics: IoU and NMS (course.yml: lab `detection`).

Each public function takes the student's function and raises AssertionError (expected / got /
hint). Expectations come from torchvision.ops (box_iou, nms, batched_nms, box_convert), from
small cases worked by hand, and for mAP from golden values the build recorded from the
reference (`autograder/golden/detection.json`), never from `reference` itself. Random boxes come
from a private torch.Generator (`seed` picks the draw), so a check leaves the student's RNG alone;
they keep every IoU at least 1e-4 away from the thresholds used, so float32 and float64 agree.
Messages are msgids of the lab's catalog (autograder/locale/<lang>/LC_MESSAGES/detection.po).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import torch
from torchvision import ops

from autograder.checks import drawn, call_student as _call
from autograder.checks import as_number, case, expect, expect_close, expect_own_code, expect_shape, fail, fmt, given, golden
from autograder.checks import library_use
from autograder.i18n import Domain

_ = Domain("detection").gettext

__all__ = [
    "iou",
    "xywh_to_xyxy",
    "box_iou",
    "nms",
    "batched_nms",
    "nms_rows",
    "average_precision",
    "mean_average_precision",
]


def _tie() -> str:
    """Hint: a tie at the IoU threshold (msgid of the lab's catalog, made in the language of the moment)."""
    return _("suppress only when IoU > threshold: a box whose IoU equals the threshold survives, as in torchvision")


def _stable() -> str:
    """Hint: the order of equal scores."""
    return _("equal scores: lower index first (torch.sort(..., descending=True, stable=True))")


# --- helpers (private) --------------------------------------------------------------------------


# --- correct helpers, given to an exercise whose check would otherwise fail for another's bug ---

def _iou_given(box1, box2) -> float:
    """IoU of two (x1, y1, x2, y2) boxes, by torchvision."""
    return float(ops.box_iou(torch.tensor([list(map(float, box1))]), torch.tensor([list(map(float, box2))]))[0, 0])


def _box_iou_given(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ops.box_iou(a, b)


def _nms_given(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
               score_threshold: float = 0.0) -> torch.Tensor:
    """torchvision's nms with the course's score threshold and its tie order (lower index first)."""
    candidates = torch.nonzero(scores >= score_threshold).flatten()
    order = candidates[torch.sort(scores[candidates], descending=True, stable=True).indices]
    ranks = torch.arange(len(order), 0, -1, dtype=torch.float32)       # best first, ties by index
    return order[ops.nms(boxes[order].float(), ranks, float(iou_threshold))]


# Written by hand: no library's box operations, NMS or AP in an answer, and none of the checks'
# helpers (red team: torchvision.ops and the checks' own _nms_given earned every point).
_LIBRARY = frozenset({"nms", "batched_nms", "box_iou", "box_area", "box_convert", "generalized_box_iou",
                      "distance_box_iou", "complete_box_iou", "_box_inter_union", "_batched_nms_vanilla",
                      "_batched_nms_coordinate_trick", "COCOeval", "COCO", "MeanAveragePrecision",
                      "average_precision_score", "precision_recall_curve"})
_MODULES = ("torchvision", "pycocotools", "torchmetrics", "sklearn")
_ORACLES = {"iou": "torchvision.ops.box_iou", "box_iou": "torchvision.ops.box_iou", "xywh_to_xyxy": "torchvision.ops.box_convert",
            "nms": "torchvision.ops.nms", "batched_nms": "torchvision.ops.batched_nms", "nms_rows": "torchvision.ops.nms",
            "average_precision": "pycocotools' COCOeval", "mean_average_precision": "pycocotools' COCOeval"}


def _library_use(fn: Any) -> list | None:
    """What fn uses that the lab's answers must not (autograder.checks.library_use), in the
    student's process."""
    return library_use(fn, sorted(_LIBRARY), list(_MODULES), list(__all__))


def _given(**helpers: Callable) -> Callable:
    """A check of an exercise written by hand (its code reads no library's box operations, NMS or
    AP, and none of the checks' helpers); one whose exercise calls other exercises runs it with
    correct ones (see `given`)."""
    def decorate(check: Callable) -> Callable:
        @functools.wraps(check)
        def run(fn: Callable, *args: Any, **kwargs: Any) -> None:
            name = check.__name__
            expect_own_code(fn, name, _library_use,
                            _("code of your own: no torchvision.ops, pycocotools or the checks' helpers in it"),
                            _("write {name} yourself with torch operations; the check compares it with {oracle}").format(
                                name=name, oracle=_ORACLES[name]))
            with given(fn, **helpers):
                check(fn, *args, **kwargs)
        return run
    return decorate


def _boxes(gen: torch.Generator, n: int, size: float = 100.0) -> torch.Tensor:
    """[n, 4] random valid boxes (x1, y1, x2, y2) with float coordinates in [0, 4/3 size]."""
    xy = torch.rand(n, 2, generator=gen) * size
    wh = torch.rand(n, 2, generator=gen) * size / 3 + 1
    return torch.cat([xy, xy + wh], dim=1)


def _clear_of(boxes: torch.Tensor, thresholds: tuple) -> bool:
    """No pairwise IoU within 1e-4 of a threshold: float32 and float64 answers agree."""
    ious = ops.box_iou(boxes.double(), boxes.double())
    return all(bool(((ious - t).abs() > 1e-4).all()) for t in thresholds)


def _nms_case(gen: torch.Generator, n: int, thresholds: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Random boxes (drawn again until clear of the thresholds) and distinct scores in (0, 1)."""
    while True:
        boxes = _boxes(gen, n)
        if _clear_of(boxes, thresholds):
            return boxes, (torch.randperm(n, generator=gen).float() + 1) / (n + 1)


def _moved(gen: torch.Generator, boxes: torch.Tensor, scores: list[float]) -> tuple:
    """A hand case (whole-pixel boxes, scores in tenths) moved in ways that keep every IoU bit for
    bit and the scores' order and ties: the boxes shifted by a whole number of pixels, mirrored
    left-right (at random) and scaled by a power of 2; each score s mapped to (10 s + d) / 32 for a
    drawn d (exact in float32; thresholds map alike); the boxes reordered when no two scores are
    equal (equal scores keep their index order, which decides between them).
    Returns (boxes, scores, where, score): where[i] is the new index of box i; score(s) maps s."""
    d = int(torch.randint(0, 21, (), generator=gen))

    def score(s: float) -> float:
        return (round(float(s) * 10) + d) / 32

    offset = torch.randint(0, 61, (2,), generator=gen).float()
    mirror = bool(torch.randint(0, 2, (), generator=gen))
    moved = _shifted(boxes, offset, mirror, 2.0 ** int(torch.randint(-1, 3, (), generator=gen)), 100)
    n = len(boxes)
    order = torch.randperm(n, generator=gen) if len(set(scores)) == n else torch.arange(n)
    where = torch.empty(n, dtype=torch.int64)
    where[order] = torch.arange(n)
    mapped = torch.tensor([score(s) for s in scores], dtype=torch.float32)
    return moved[order], mapped[order], where.tolist(), score


def _shifted(boxes: torch.Tensor, offset: torch.Tensor, mirror: bool, scale: float, width: float) -> torch.Tensor:
    """Boxes shifted by `offset` (x, y), mirrored left-right in [0, width] when `mirror`, then
    scaled by `scale`: every IoU between them stays what it was."""
    moved = boxes + offset.repeat(2)
    if mirror:
        moved = torch.stack([width - moved[:, 2], moved[:, 1], width - moved[:, 0], moved[:, 3]], dim=1)
    return moved * scale


def _scores(scores: torch.Tensor) -> str:
    """Scores for a message, as short as they are exact."""
    return "[" + ", ".join(f"{s:g}" for s in scores.tolist()) + "]"


def _labels(gen: torch.Generator, n: int) -> list[int]:
    """n distinct class labels drawn from 0..19."""
    return torch.randperm(20, generator=gen)[:n].tolist()


def _indices(value: Any, what: str) -> torch.Tensor:
    """value is a 1-D int64 tensor of indices (else a failure)."""
    if not isinstance(value, torch.Tensor):
        fail(what, _("an int64 tensor of kept indices"), type(value).__name__,
             _("return torch.tensor(keep, dtype=torch.int64)"))
    if value.dtype != torch.int64 or value.dim() != 1:
        fail(what, _("a 1-D int64 tensor"), _("{dtype} of shape {shape}").format(dtype=value.dtype, shape=tuple(value.shape)),
             _("return torch.tensor(keep, dtype=torch.int64)"))
    return value.detach().cpu()


def _show(idx: torch.Tensor | list) -> str:
    """Indices for a message: all of them when few, else the first 10."""
    items = idx.tolist() if isinstance(idx, torch.Tensor) else list(idx)
    return str(items) if len(items) <= 12 else _("{n} indices starting {first}").format(n=len(items), first=items[:10])


def _expect_keep(got: Any, expected: torch.Tensor | list, what: str, hint: str,
                 candidates: list | None = None) -> None:
    """Kept indices equal, in order. `candidates`: the indices that passed a score filter, to
    recognise positions in the filtered list returned instead of indices into all boxes."""
    g = _indices(got, what)
    e = torch.as_tensor(expected, dtype=torch.int64)
    if not torch.equal(g, e):
        if candidates is not None and g.tolist() == [candidates.index(i) for i in e.tolist()]:
            hint = _("return indices into the original boxes, not positions among the boxes left after the score filter")
        elif sorted(g.tolist()) == sorted(e.tolist()):
            hint = _("the right boxes in the wrong order: highest score first, equal scores by lower index")
        fail(what, _show(e), _show(g), hint)


# --- iou ----------------------------------------------------------------------------------------


@_given()
def iou(iou: Callable, seed: int = 0) -> None:
    """Hand cases (overlap 1/7, identical, disjoint on one and on both axes, containment, zero area),
    lists and tensors alike, and 40 random pairs against torchvision.ops.box_iou."""
    cases = [
        ([0, 0, 2, 2], [1, 1, 3, 3], 1 / 7,
         _("the intersection is [1, 1, 2, 2] with area 1; the union is 4 + 4 - 1 = 7")),
        ([1, 2, 5, 7], [1, 2, 5, 7], 1.0, _("identical boxes: intersection = union")),
        ([0, 0, 4, 4], [1, 1, 2, 2], 1 / 16, _("a box inside another: the intersection is the small box")),
        ([0, 0, 1, 1], [2, 0, 3, 1], 0.0, _("no overlap on x: clamp the intersection width at 0 (max(..., 0))")),
        ([0, 0, 1, 1], [0, 2, 1, 3], 0.0, _("no overlap on y: clamp the intersection height at 0 (max(..., 0))")),
        ([0, 0, 1, 1], [2, 2, 3, 3], 0.0,
         _("no overlap on either axis: clamp width and height at 0, or two negative sides multiply to a positive area")),
        ([0, 0, 1, 1], [1, 0, 2, 1], 0.0, _("boxes that only touch share no area")),
        ([0, 0, 2, 1], [0, 0, 1, 1], 0.5, _("intersection 1, union 2 + 1 - 1 = 2; corners are (x1, y1, x2, y2), no +1")),
        ([1, 1, 1, 1], [1, 1, 1, 1], 0.0, _("zero-area boxes have union 0: return 0 instead of dividing by zero")),
    ]
    for a, b, expected, hint in cases:
        what = f"iou({a}, {b})"
        got = as_number(_call(iou, what, list(a), list(b), hint=hint), what, tensors=False)
        expect(got == got and abs(got - expected) <= 1e-6, what, expected, got, hint)
    what = "iou(tensor([0., 0., 2., 2.]), tensor([1., 1., 3., 3.]))"
    got = as_number(_call(iou, what, torch.tensor([0.0, 0, 2, 2]), torch.tensor([1.0, 1, 3, 3])), what, tensors=False)
    expect(abs(got - 1 / 7) <= 1e-6, what, 1 / 7, got, _("boxes may come as tensors of shape [4] too"))

    gen = drawn(1400 + seed)
    a, b = _boxes(gen, 40, size=30), _boxes(gen, 40, size=30)
    expected = ops.box_iou(a, b).diagonal()
    for i in range(40):
        what = _("iou({a}, {b}) (random pair {i})").format(a=fmt(a[i]), b=fmt(b[i]), i=i)
        got = as_number(_call(iou, what, a[i].tolist(), b[i].tolist()), what, tensors=False)
        hint = _("IoU = intersection / (area1 + area2 - intersection), as torchvision.ops.box_iou")
        if got < 0 or (float(expected[i]) == 0 and got > 0):
            hint = _("these boxes do not overlap: clamp the intersection width and height at 0 before multiplying")
        expect(abs(got - float(expected[i])) <= 1e-5, what, float(expected[i]), got, hint)


# --- xywh_to_xyxy -------------------------------------------------------------------------------


@_given()
def xywh_to_xyxy(xywh_to_xyxy: Callable, seed: int = 0) -> None:
    """(1, 2, 3, 4) -> (1, 2, 4, 6); random boxes against torchvision.ops.box_convert; [0, 4] in,
    [0, 4] out; the input left unchanged."""
    hint = _("x2 = x + w and y2 = y + h: (x, y) is the top-left corner, not the centre")
    what = "xywh_to_xyxy(tensor([[1., 2., 3., 4.]]))"
    got = _call(xywh_to_xyxy, what, torch.tensor([[1.0, 2.0, 3.0, 4.0]]), hint=hint)
    expect_shape(got, (1, 4), what, _("one row (x1, y1, x2, y2) per box"))
    expect_close(got, [[1.0, 2.0, 4.0, 6.0]], what, hint=hint)

    gen = drawn(1410 + seed)
    boxes = torch.rand(12, 4, generator=gen) * 50
    before = boxes.clone()
    what = _("xywh_to_xyxy(12 random boxes)")
    got = _call(xywh_to_xyxy, what, boxes, hint=hint)
    expect(bool(torch.equal(boxes, before)), _("{what}: the input boxes").format(what=what), _("unchanged"),
           _("modified in place"), _("build a new tensor (torch.stack / torch.cat) instead of writing into the input"))
    expect_shape(got, (12, 4), what, _("one row (x1, y1, x2, y2) per box"))
    expect_close(got, ops.box_convert(before, "xywh", "xyxy"), what, hint=hint)

    what = "xywh_to_xyxy(torch.zeros(0, 4))"
    expect_shape(_call(xywh_to_xyxy, what, torch.zeros(0, 4)), (0, 4), what, _("no boxes in, no boxes out"))


# --- box_iou ------------------------------------------------------------------------------------


@_given()
def box_iou(box_iou: Callable, seed: int = 0) -> None:
    """Disjoint boxes 0 (on x, on y, on both), identical 1, zero-area boxes 0 (never NaN), [N, M]
    against torchvision.ops.box_iou on random boxes, empty inputs."""
    clamp = _("disjoint boxes must give 0: clamp the intersection width and height at 0 before multiplying "
              "((rb - lt).clamp(min=0)); two negative sides multiply to a positive area")
    a = torch.tensor([[0.0, 0, 1, 1], [4, 4, 6, 7]])
    b = torch.tensor([[2.0, 2, 3, 3], [2, 0, 3, 1], [0, 2, 1, 3], [0, 0, 1, 1], [4, 4, 6, 7]])
    what = "box_iou([[0,0,1,1], [4,4,6,7]], [[2,2,3,3], [2,0,3,1], [0,2,1,3], [0,0,1,1], [4,4,6,7]])"
    got = _call(box_iou, what, a, b)
    expect_shape(got, (2, 5), what, _("entry (i, j) is IoU(a[i], b[j]): broadcast a[:, None] against b[None, :]"))
    expected = torch.tensor([[0.0, 0, 0, 1, 0], [0, 0, 0, 0, 1]])
    disjoint = got.detach().double()[expected == 0]
    expect_close(got, expected, what, hint=clamp if bool((disjoint != 0).any()) else
                 _("identical boxes give 1 (their union, area_a + area_b - intersection, is the box itself)"))

    z = torch.tensor([[1.0, 1, 1, 1], [0, 0, 0, 3]])
    what = _("box_iou on zero-area boxes [[1,1,1,1], [0,0,0,3]] with themselves and [[0,0,4,4]]")
    got = _call(box_iou, what, z, torch.cat([z, torch.tensor([[0.0, 0, 4, 4]])]))
    expect_shape(got, (2, 3), what)
    expect_close(got, torch.zeros(2, 3), what,
                 hint=_("where the union is 0 return 0, not NaN (torch.where(union > 0, inter / union, 0)); "
                        "torchvision gives NaN here, this lab gives 0"))

    gen = drawn(1420 + seed)
    for n, m, size in ((5, 7, 100.0), (9, 4, 20.0), (1, 1, 10.0)):
        a, b = _boxes(gen, n, size), _boxes(gen, m, size)
        what = _("box_iou(a [{n}, 4], b [{m}, 4]) on random boxes").format(n=n, m=m)
        got = _call(box_iou, what, a, b)
        expect_shape(got, (n, m), what, _("entry (i, j) is IoU(a[i], b[j]): broadcast a[:, None] against b[None, :]"))
        expected = ops.box_iou(a, b)
        hint = _("intersection / (area_a[:, None] + area_b[None, :] - intersection), as torchvision")
        if bool((got.detach().double()[expected == 0] != 0).any()):
            hint = clamp
        expect_close(got, expected, what, atol=1e-5, rtol=1e-5, hint=hint)

    for shape_a, shape_b in (((0, 4), (3, 4)), ((2, 4), (0, 4))):
        what = f"box_iou(a {list(shape_a)}, b {list(shape_b)})"
        got = _call(box_iou, what, _boxes(gen, shape_a[0]), _boxes(gen, shape_b[0]))
        expect_shape(got, (shape_a[0], shape_b[0]), what, _("no boxes: an empty [N, M] matrix, no error"))


# --- nms ----------------------------------------------------------------------------------------


@_given(box_iou=_box_iou_given)
def nms(nms: Callable, seed: int = 0) -> None:
    """Hand cases, moved at random: ties at the threshold survive, highest score first with ties
    by index, score_threshold (>=, indices into the original boxes); empty input; random boxes
    against torchvision.ops.nms."""
    # The hand cases, each moved at random (a grading run's draw gives moves no notebook saw).
    hand = drawn(2430 + seed)
    boxes, scores, where, _score = _moved(hand, torch.tensor([[0.0, 0, 2, 1], [0, 0, 1, 1]]), [0.9, 0.8])  # IoU 0.5
    with case("the tie at the threshold"):
        what = _("nms on two boxes with IoU exactly 0.5 at iou_threshold 0.5")
        _expect_keep(_call(nms, what, boxes, scores, 0.5), [where[0], where[1]], what, _tie())
        what = _("nms on two boxes with IoU exactly 0.5 at iou_threshold 0.4")
        _expect_keep(_call(nms, what, boxes, scores, 0.4), [where[0]], what,
                     _("IoU 0.5 > 0.4: the lower-scoring box is suppressed"))

    apart = torch.tensor([[0.0, 0, 1, 1], [5, 5, 6, 6], [9, 9, 10, 10]])
    with case("highest score first"):
        boxes, scores, where, _score = _moved(hand, apart, [0.3, 0.7, 0.5])
        what = _("nms on 3 disjoint boxes with scores {scores}").format(scores=_scores(scores))
        _expect_keep(_call(nms, what, boxes, scores, 0.5), [where[1], where[2], where[0]], what,
                     _("nothing overlaps, so all are kept, highest score first"))
    with case("equal scores in index order"):
        boxes, scores, where, _score = _moved(hand, apart, [0.5, 0.5, 0.5])
        what = _("nms on 3 disjoint boxes with equal scores {scores}").format(scores=_scores(scores))
        _expect_keep(_call(nms, what, boxes, scores, 0.5), [0, 1, 2], what, _stable())
        boxes, scores, where, _score = _moved(hand, torch.tensor([[2.0, 2, 4, 4]] * 3), [0.5, 0.5, 0.5])
        what = _("nms on 3 identical boxes with equal scores {scores}").format(scores=_scores(scores))
        _expect_keep(_call(nms, what, boxes, scores, 0.5), [0], what,
                     _("{rule}; the kept box suppresses its copies").format(rule=_stable()))

    pairs = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [21, 21, 30, 30]])  # IoU 0.81
    with case("the score threshold"):
        boxes, scores, where, score = _moved(hand, pairs, [0.4, 0.6, 0.5, 0.3])
        what = f"nms(boxes, scores={_scores(scores)}, 0.5, score_threshold={score(0.5):g})"
        _expect_keep(_call(nms, what, boxes, scores, 0.5, score_threshold=score(0.5)), [where[1], where[2]],
                     what, _("boxes with score >= score_threshold take part ({score} does)").format(score=f"{score(0.5):g}"),
                     candidates=sorted([where[1], where[2]]))
        boxes, scores, where, score = _moved(hand, pairs, [0.1, 0.6, 0.5, 0.3])
        what = f"nms(boxes, scores={_scores(scores)}, 0.5, score_threshold={score(0.2):g})"
        _expect_keep(_call(nms, what, boxes, scores, 0.5, score_threshold=score(0.2)), [where[1], where[2]],
                     what, _("return indices into the original boxes, not into the boxes left after the score filter"),
                     candidates=sorted([where[1], where[2], where[3]]))

    with case("no boxes"):
        what = "nms(torch.zeros(0, 4), torch.zeros(0), 0.5)"
        got = _indices(_call(nms, what, torch.zeros(0, 4), torch.zeros(0), 0.5), what)
        expect(got.shape == (0,), what, _("an empty int64 tensor"), fmt(got), _("no boxes in, no indices out"))

    gen = drawn(1430 + seed)
    thresholds = (0.3, 0.5, 0.7)
    with case("random boxes against torchvision"):
        for n in (40, 25):
            boxes, scores = _nms_case(gen, n, thresholds)
            for t in thresholds:
                what = _("nms on {n} random boxes at iou_threshold {t}").format(n=n, t=t)
                expected = ops.nms(boxes, scores, t)
                _expect_keep(_call(nms, what, boxes.clone(), scores.clone(), t), expected, what,
                             _("keep the best remaining box, drop all with IoU > threshold against it, repeat "
                               "(as torchvision.ops.nms)"))


# --- batched_nms --------------------------------------------------------------------------------


@_given(nms=_nms_given, box_iou=_box_iou_given)
def batched_nms(batched_nms: Callable, seed: int = 0) -> None:
    """Hand cases, moved and relabelled at random: different classes never suppress each other;
    same class as nms (ties at the threshold survive); highest score first; empty input; random
    boxes against torchvision.ops.batched_nms."""
    # The hand cases, each moved at random and with random class labels (as nms's).
    hand = drawn(2440 + seed)
    same = torch.tensor([[0.0, 0, 1, 1]] * 2)
    with case("classes apart"):
        boxes, scores, where, _score = _moved(hand, same, [0.5, 0.9])
        classes = torch.tensor(_labels(hand, 2))[torch.argsort(torch.tensor(where))]
        what = _("batched_nms on two identical boxes of classes {classes}, scores {scores}").format(
            classes=classes.tolist(), scores=_scores(scores))
        _expect_keep(_call(batched_nms, what, boxes, scores, classes, 0.5), [where[1], where[0]],
                     what, _("only boxes of the same class suppress each other; all kept boxes highest score first"))
    with case("one class suppresses"):
        boxes, scores, where, _score = _moved(hand, same, [0.5, 0.9])
        classes = torch.tensor(_labels(hand, 1) * 2)
        what = _("batched_nms on two identical boxes of classes {classes}, scores {scores}").format(
            classes=classes.tolist(), scores=_scores(scores))
        _expect_keep(_call(batched_nms, what, boxes, scores, classes, 0.5), [where[1]],
                     what, _("boxes of the same class suppress each other as in nms"))
    with case("the tie at the threshold"):
        boxes, scores, where, _score = _moved(hand, torch.tensor([[0.0, 0, 2, 1], [0, 0, 1, 1]]), [0.9, 0.8])
        c = _labels(hand, 1)[0]
        what = _("batched_nms on two boxes of class {c} with IoU exactly 0.5 at iou_threshold 0.5").format(c=c)
        _expect_keep(_call(batched_nms, what, boxes, scores, torch.tensor([c, c]), 0.5), [where[0], where[1]], what, _tie())

    with case("no boxes"):
        what = "batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5)"
        got = _indices(_call(batched_nms, what, torch.zeros(0, 4), torch.zeros(0),
                             torch.zeros(0, dtype=torch.int64), 0.5), what)
        expect(got.shape == (0,), what, _("an empty int64 tensor"), fmt(got), _("no boxes in, no indices out"))

    gen = drawn(1440 + seed)
    thresholds = (0.3, 0.5, 0.7)
    with case("random boxes against torchvision"):
        for n in (40, 30):
            boxes, scores = _nms_case(gen, n, thresholds)
            labels = torch.randint(0, 4, (n,), generator=gen)
            for t in thresholds:
                what = _("batched_nms on {n} random boxes of 4 classes at iou_threshold {t}").format(n=n, t=t)
                expected = ops.batched_nms(boxes, scores, labels, t)
                _expect_keep(_call(batched_nms, what, boxes.clone(), scores.clone(), labels.clone(), t), expected,
                             what, _("run NMS within each class, then order all kept boxes by score (as torchvision)"))


# --- nms_rows -----------------------------------------------------------------------------------


def _rows_equal(got: Any, expected: list) -> bool:
    try:
        return [[float(v) for v in r] for r in got] == [[float(v) for v in r] for r in expected]
    except (TypeError, ValueError):
        return False


def _rows_show(rows: Any) -> str:
    """Rows for a message by (class, score), which tell the rows of the checks apart."""
    try:
        pairs = [(int(r[0]), round(float(r[1]), 3)) for r in rows]
    except (TypeError, ValueError, IndexError):
        return repr(rows)[:200]
    more = ", ..." if len(pairs) > 6 else ""
    return _("{n} rows (class, score): [{pairs}{more}]").format(n=len(pairs), pairs=", ".join(map(str, pairs[:6])),
                                                               more=more)


@_given(iou=_iou_given)
def nms_rows(nms_rows: Callable, seed: int = 0) -> None:
    """The lecture's list form [class, score, x1, y1, x2, y2]: a worked example with an IoU tie at the
    threshold and another class, the input list left as it was, empty input, and random rows
    against torchvision.ops.batched_nms."""
    rows = [[0, 0.8, 0, 0, 1, 1], [0, 0.9, 0, 0, 2, 1], [1, 0.7, 0, 0, 2, 1], [0, 0.6, 0.1, 0, 2, 1]]
    snapshot = [list(r) for r in rows]
    what = _("nms_rows(rows, 0.5) with rows {rows}").format(rows=snapshot)
    got = _call(nms_rows, what, rows, 0.5, hint=_("the lecture's loop with its bugs fixed (chosen_box, box[2:])"))
    expected = [snapshot[1], snapshot[0], snapshot[2]]
    expect(rows == snapshot, _("{what}: the rows you were given").format(what=what), _rows_show(snapshot),
           _rows_show(rows), _("work on a sorted copy (sorted(...) makes one); the lecture's code pops from the list itself"))
    hint = _("sort by score, highest first; keep the best row, drop rows of its class with IoU > threshold, repeat")
    try:
        kept = {tuple(float(v) for v in r) for r in got}
    except (TypeError, ValueError):
        kept = None
    if kept is not None:
        if kept == {tuple(float(v) for v in r) for r in expected}:
            hint = _("return the kept rows in descending score order")
        elif tuple(float(v) for v in snapshot[2]) not in kept:
            hint = _("row 2 is another class: rows of different classes never suppress each other")
        elif tuple(float(v) for v in snapshot[0]) not in kept:
            hint = _("rows 0 and 1 have IoU exactly 0.5: keep a row when IoU <= threshold "
                     "(the lecture's `< iou_threshold` also drops IoU equal to it)")
    expect(isinstance(got, list) and _rows_equal(got, expected), what, _rows_show(expected), _rows_show(got), hint)

    what = "nms_rows([], 0.5)"
    got = _call(nms_rows, what, [], 0.5)
    expect(got == [], what, "[]", repr(got), _("no rows in, no rows out"))

    gen = drawn(1450 + seed)
    for n, t in ((30, 0.4), (30, 0.6)):
        boxes, scores = _nms_case(gen, n, (t,))
        labels = torch.randint(0, 3, (n,), generator=gen)
        rows = [[int(c), float(s), *b] for c, s, b in zip(labels, scores, boxes.tolist())]
        expected = [rows[i] for i in ops.batched_nms(boxes, scores, labels, t).tolist()]
        what = _("nms_rows on {n} random rows of 3 classes at iou_threshold {t}").format(n=n, t=t)
        got = _call(nms_rows, what, [list(r) for r in rows], t)
        expect(isinstance(got, list) and _rows_equal(got, expected), what, _rows_show(expected), _rows_show(got),
               _("sort by score, keep the best row, drop rows of its class with IoU > threshold, repeat"))


# --- average_precision --------------------------------------------------------------------------

_GT2 = [[0.0, 0, 10, 10], [20, 20, 30, 30]]


def _ap_recipe() -> str:
    """Hint: COCO's AP, in one line."""
    return _("match detections best first to the unmatched ground truth of highest IoU >= threshold; "
             "make precision monotone from the right; average it at the 101 recall points 0, 0.01, ..., 1")


def _golden_class(g: dict, c: int) -> tuple[list, list, list]:
    """Per-image boxes, scores and ground truth of class c in the golden scenario (float32)."""
    def t(rows):
        return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)

    pb, ps, gb = [], [], []
    for p, tg in zip(g["scenario"]["preds"], g["scenario"]["targets"]):
        pb.append(t([b for b, l in zip(p["boxes"], p["labels"]) if l == c]))
        ps.append(torch.tensor([s for s, l in zip(p["scores"], p["labels"]) if l == c], dtype=torch.float32))
        gb.append(t([b for b, l in zip(tg["boxes"], tg["labels"]) if l == c]))
    return pb, ps, gb


@_given(box_iou=_box_iou_given)
def average_precision(average_precision: Callable) -> None:
    """Hand cases (a false positive ranked first: 2/3; a duplicate; equal scores in input order;
    more than 100 detections in an image; no detections) and the golden scenario's AP of each class
    at two drawn COCO thresholds, the scenario moved in ways that keep AP, within 1e-6."""
    gt = torch.tensor(_GT2)
    t = torch.tensor
    cases = [
        (_("one image, 2 objects; detections [miss, hit, hit] with scores [0.9, 0.8, 0.7]"),
         [t([[40.0, 40, 50, 50], [0, 0, 10, 10], [20, 20, 30, 30]])], [t([0.9, 0.8, 0.7])], [gt], 2 / 3,
         _("precision is 0, 1/2, 2/3 at recall 0, 1/2, 1; made monotone from the right it is 2/3 at every "
           "recall point, so AP = 2/3")),
        (_("one image, 2 objects; detections [hit A, hit A again, hit B] with scores [0.9, 0.8, 0.7]"),
         [t([[0.0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]])], [t([0.9, 0.8, 0.7])], [gt], (51 + 50 * 2 / 3) / 101,
         _("a ground-truth box matches at most one detection: the duplicate is a false positive")),
        (_("one image, objects A [0,0,10,10] and B [4,0,14,10]; detections [3,0,13,10] (IoU 0.54 with A, 0.82 with B) "
           "and [0,0,10,10] (A)"),
         [t([[3.0, 0, 13, 10], [0, 0, 10, 10]])], [t([0.9, 0.8])], [t([[0.0, 0, 10, 10], [4, 0, 14, 10]])], 1.0,
         _("each detection takes the unmatched ground-truth box of highest IoU, not the first one above the threshold")),
        (_("one image, 1 object; detections [miss, hit] with equal scores [0.5, 0.5]"),
         [t([[40.0, 40, 50, 50], [0, 0, 10, 10]])], [t([0.5, 0.5])], [gt[:1]], 0.5,
         _("equal scores keep their input order (a stable sort): the miss comes first")),
        (_("one image, 1 object; 151 detections, the only hit ranked 120th"),
         [torch.cat([t([[50.0, 50, 60, 60]] * 119), gt[:1], t([[50.0, 50, 60, 60]] * 31)])],
         [torch.linspace(1.0, 0.01, 151)], [gt[:1]], 0.0,
         _("COCO keeps only the 100 highest-scoring detections of each image")),
        (_("two images, 2 objects in the first; no detections"),
         [torch.zeros(0, 4), torch.zeros(0, 4)], [torch.zeros(0), torch.zeros(0)], [gt, torch.zeros(0, 4)], 0.0,
         _("no detections: recall never rises above 0, so AP = 0")),
    ]
    for desc, pb, ps, gb, expected, hint in cases:
        what = _("average_precision at IoU 0.5, {case}").format(case=desc)
        got = as_number(_call(average_precision, what, pb, ps, gb, 0.5, hint=hint), what, tensors=False)
        expect(got == got and abs(got - expected) <= 1e-6, what, expected, got, hint)

    # The golden scenario's classes, each at two drawn COCO thresholds and moved at random in ways
    # that keep its AP (a grading run's draw gives moves no notebook saw): expected, the
    # reference's AP recorded in the golden data.
    g = golden("detection")
    gen = drawn(1455)
    for i, c in enumerate(g["classes"]):
        for row in sorted(torch.randperm(len(g["thresholds"]), generator=gen)[:2].tolist()):
            thr = g["thresholds"][row]
            pb, ps, gb = _moved_class(g, c, gen)
            what = _("average_precision of class {c} at IoU {thr:.2f} on the golden scenario ({n} images; "
                     "moved, mirrored, scaled and reordered, scores remapped: the same AP)").format(c=c, thr=thr, n=len(pb))
            expected = g["ap_by_threshold"][row][i]
            got = as_number(_call(average_precision, what, pb, ps, gb, thr), what, tensors=False)
            expect(got == got and abs(got - expected) <= 1e-6, what, expected, got, _ap_recipe())


def _same_sides(a: list, b: list, thresholds: list) -> bool:
    """Whether every IoU of detections and ground truth falls on the same side of every threshold
    in scene a and scene b (each a list of per-image (boxes, ground truth)), in float32 and float64."""
    for (pa, ga), (pb, gb) in zip(a, b):
        ious = [ops.box_iou(p.to(d), q.to(d)) for p, q in ((pa, ga), (pb, gb)) for d in (torch.float32, torch.float64)]
        for t in thresholds:
            sides = [iou >= t for iou in ious]
            if not all(torch.equal(sides[0], side) for side in sides[1:]):
                return False
    return True


def _moved_class(g: dict, c: int, gen: torch.Generator) -> tuple[list, list, list]:
    """Class c of the golden scenario changed in ways that keep its AP at every threshold: each
    image's boxes shifted by their own whole-pixel offset, the scene mirrored left-right (at
    random) and scaled by a power of 2, the images and each image's detections and ground truth
    reordered (no two of its scores are equal), the scores mapped by an increasing affine map.
    Drawn again while an IoU would cross a threshold (float rounding); after 20 tries, only
    reordered and remapped."""
    pb, ps, gb = _golden_class(g, c)
    order = torch.randperm(len(pb), generator=gen).tolist()
    a, b = 0.5 + 0.4 * float(torch.rand((), generator=gen)), 0.1 * float(torch.rand((), generator=gen))
    scores = [(ps[i] * a + b) for i in order]
    for attempt in range(21):
        scale = 2.0 ** int(torch.randint(-1, 3, (), generator=gen))
        mirror = bool(torch.randint(0, 2, (), generator=gen))
        offsets = [torch.randint(0, 81, (2,), generator=gen).float() for _ in order]
        if attempt == 20:                        # only reordered and remapped
            boxes, truth = [pb[i].clone() for i in order], [gb[i].clone() for i in order]
            break
        boxes = [_shifted(pb[i], o, mirror, scale, 300) for i, o in zip(order, offsets)]
        truth = [_shifted(gb[i], o, mirror, scale, 300) for i, o in zip(order, offsets)]
        if _same_sides([(pb[i], gb[i]) for i in order], list(zip(boxes, truth)), g["thresholds"]):
            break
    keep = [torch.randperm(len(s), generator=gen) for s in scores]
    mix = [torch.randperm(len(t), generator=gen) for t in truth]
    return ([bx[k] for bx, k in zip(boxes, keep)], [s[k] for s, k in zip(scores, keep)],
            [t[m] for t, m in zip(truth, mix)])


# --- mean_average_precision ---------------------------------------------------------------------


def _golden_dicts(g: dict, keep: list[int] | None = None, labels: dict | None = None) -> tuple[list, list]:
    """The golden scenario as preds and targets: only the classes in `keep` (default all; the
    class without ground truth always stays), each class c renamed labels[c] (default c)."""
    def t(rows):
        return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)

    def kept(classes):
        return [i for i, c in enumerate(classes) if keep is None or c in keep or c not in g["classes"]]

    def named(classes, rows):
        return torch.tensor([(labels or {}).get(classes[i], classes[i]) for i in rows], dtype=torch.int64)

    preds, targets = [], []
    for p, tg in zip(g["scenario"]["preds"], g["scenario"]["targets"]):
        rows = kept(p["labels"])
        preds.append({"boxes": t([p["boxes"][i] for i in rows]),
                      "scores": torch.tensor([p["scores"][i] for i in rows], dtype=torch.float32),
                      "labels": named(p["labels"], rows)})
        rows = kept(tg["labels"])
        targets.append({"boxes": t([tg["boxes"][i] for i in rows]), "labels": named(tg["labels"], rows)})
    return preds, targets


def _golden_map(g: dict, keep: list[int], thresholds: list[float]) -> float:
    """The reference's mAP of the golden scenario's classes `keep` over `thresholds` (each one of
    the golden thresholds): the mean of their recorded APs."""
    rows = [min(range(len(g["thresholds"])), key=lambda i: abs(g["thresholds"][i] - t)) for t in thresholds]
    cols = [g["classes"].index(c) for c in keep]
    return sum(g["ap_by_threshold"][r][c] for r in rows for c in cols) / (len(rows) * len(cols))


def _subset(gen: torch.Generator, items: list, least: int = 1) -> list:
    """A random subset of `items` with at least `least` of them, in a random order."""
    order = torch.randperm(len(items), generator=gen).tolist()
    n = int(torch.randint(least, len(items) + 1, (1,), generator=gen))
    return [items[i] for i in order[:n]]


def _same_list(got: Any, expected: list[torch.Tensor]) -> bool:
    """Whether `got` (per image: a tensor, or nested lists) holds the values of `expected`."""
    try:
        if len(got) != len(expected):
            return False
        return all(torch.equal(torch.as_tensor(g, dtype=torch.float32).reshape(-1), e.reshape(-1))
                   for g, e in zip(got, expected))
    except (TypeError, ValueError, RuntimeError):
        return False


def _ap_given(boxes: Any, scores: Any, gts: Any, iou_threshold: float = 0.5) -> float:
    """The AP the mAP check gives a student's mean_average_precision: for the check's own inputs
    (a class of the golden scenario at a COCO threshold, or the hand case's class) the
    reference's value, from the golden data; for any other input the student's own
    average_precision. A wrong AP then costs its own check only."""
    from autograder import witness
    g = golden("detection")
    thr = float(iou_threshold)
    hand_boxes = [torch.tensor([[40.0, 40, 50, 50], [0, 0, 10, 10], [20, 20, 30, 30]])]
    if _same_list(boxes, hand_boxes) and _same_list(scores, [torch.tensor([0.9, 0.8, 0.7])]) \
            and _same_list(gts, [torch.tensor(_GT2)]):
        return 2 / 3                          # exact hits: 2/3 at every threshold
    rows = [i for i, t in enumerate(g["thresholds"]) if abs(t - thr) < 1e-6]
    for i, c in enumerate(g["classes"]):
        pb, ps, gb = _golden_class(g, c)
        if rows and _same_list(gts, gb) and _same_list(boxes, pb) and _same_list(scores, ps):
            return float(g["ap_by_threshold"][rows[0]][i])
    own = witness.given_over("average_precision")
    if own is None:
        raise ValueError(_("average_precision: an input the check does not know"))
    return own(boxes, scores, gts, iou_threshold)


@_given(box_iou=_box_iou_given, average_precision=_ap_given)
def mean_average_precision(mean_average_precision: Callable) -> None:
    """A hand case (a class with predictions only is left out) and three drawn cases of the golden
    scenario (classes renamed, a subset of them kept): COCO mAP (IoU 0.50:0.05:0.95), mAP over
    several COCO thresholds and over one, within 1e-6; with a correct average_precision given
    (its values for these inputs, from the golden data)."""
    preds = [{"boxes": torch.tensor([[40.0, 40, 50, 50], [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 5, 5]]),
              "scores": torch.tensor([0.9, 0.8, 0.7, 0.6]), "labels": torch.tensor([0, 0, 0, 5])}]
    targets = [{"boxes": torch.tensor(_GT2), "labels": torch.tensor([0, 0])}]
    what = _("mean_average_precision, one image: class 0 with detections [miss, hit, hit], class 5 with a detection only")
    got = as_number(_call(mean_average_precision, what, preds, targets), what, tensors=False)
    expect(got == got and abs(got - 2 / 3) <= 1e-6, what, 2 / 3, got,
           _("class 0 has AP 2/3 at every threshold (its hits are exact); class 5 has no ground truth, so it is left out"))

    # The golden scenario's cases are drawn (a grading run's draw gives cases no notebook saw):
    # its classes renamed with random labels, a random subset of the classes with ground truth,
    # random COCO thresholds. Expected: the mean of the reference's recorded APs over them.
    g = golden("detection")
    gen = drawn(1460)
    hint = _("average AP over the classes that have ground truth and over the thresholds "
             "(default numpy.linspace(0.5, 0.95, 10))")
    others = sorted({c for p in g["scenario"]["preds"] for c in p["labels"]} - set(g["classes"]))
    everything = g["classes"] + others
    for thresholds in (None, _subset(gen, g["thresholds"], least=2), _subset(gen, g["thresholds"])[:1]):
        labels = dict(zip(everything, _labels(gen, len(everything))))
        keep = sorted(_subset(gen, g["classes"]))
        preds, targets = _golden_dicts(g, keep, labels)
        label = _("default thresholds 0.50:0.05:0.95") if thresholds is None else \
            "[" + ", ".join(f"{t:.2f}" for t in thresholds) + "]"
        scene = _("the golden scenario ({n} images; classes {classes} with ground truth, {others} without)").format(
            n=len(preds), classes=[labels[c] for c in keep], others=[labels[c] for c in others])
        what = _("mean_average_precision on {scene}, iou_thresholds {label}").format(scene=scene, label=label)
        args = () if thresholds is None else (thresholds,)
        got = as_number(_call(mean_average_precision, what, preds, targets, *args), what, tensors=False)
        expected = _golden_map(g, keep, thresholds or g["thresholds"])
        expect(got == got and abs(got - expected) <= 1e-6, what, expected, got, hint)
