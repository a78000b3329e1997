"""reference.detection against torchvision.ops and pycocotools' COCOeval (LABS.md, lab 14)."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import ops

from reference.detection import (
    _scenario,
    _tensors,
    average_precision,
    batched_nms,
    box_iou,
    golden,
    iou,
    mean_average_precision,
    nms,
    nms_rows,
    xywh_to_xyxy,
)

ROOT = Path(__file__).resolve().parents[2]


def random_boxes(gen: torch.Generator, n: int, integer: bool = False, size: float = 100.0) -> torch.Tensor:
    """[n, 4] valid boxes; with `integer`, small integer coordinates (many exact IoU ties)."""
    if integer:
        xy = torch.randint(0, 8, (n, 2), generator=gen).float()
        wh = torch.randint(1, 5, (n, 2), generator=gen).float()
    else:
        xy = torch.rand(n, 2, generator=gen) * size
        wh = torch.rand(n, 2, generator=gen) * size / 3 + 1
    return torch.cat([xy, xy + wh], dim=1)


def random_scores(gen: torch.Generator, n: int, ties: bool) -> torch.Tensor:
    return (torch.randint(0, 4, (n,), generator=gen).float() / 4) if ties else torch.rand(n, generator=gen)


# --- IoU ------------------------------------------------------------------------------------------


def test_iou_hand_values():
    assert iou([0, 0, 2, 2], [1, 1, 3, 3]) == pytest.approx(1 / 7)
    assert iou([0, 0, 2, 2], [0, 0, 2, 2]) == 1.0
    assert iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0.0      # disjoint on both axes
    assert iou([0, 0, 1, 1], [1, 0, 2, 1]) == 0.0      # touching edge
    assert iou([0, 0, 4, 4], [1, 1, 2, 2]) == pytest.approx(1 / 16)
    assert iou([1, 1, 1, 1], [1, 1, 1, 1]) == 0.0      # zero area: 0, not NaN / ZeroDivisionError
    assert iou([0, 0, 0, 5], [0, 0, 2, 5]) == 0.0
    assert isinstance(iou(torch.tensor([0.0, 0, 2, 2]), torch.tensor([1.0, 1, 3, 3])), float)


@pytest.mark.parametrize("seed", range(4))
def test_box_iou_and_iou_match_torchvision(seed):
    gen = torch.Generator().manual_seed(seed)
    a, b = random_boxes(gen, 17, integer=seed % 2 == 1), random_boxes(gen, 11, integer=seed % 2 == 1)
    expected = ops.box_iou(a, b)
    got = box_iou(a, b)
    assert got.shape == (17, 11) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
    for i in range(0, 17, 3):
        for j in range(11):
            assert iou(a[i].tolist(), b[j].tolist()) == pytest.approx(float(expected[i, j]), abs=1e-6)


def test_box_iou_edge_cases():
    assert box_iou(torch.zeros(0, 4), torch.zeros(3, 4)).shape == (0, 3)
    assert box_iou(torch.zeros(2, 4), torch.zeros(0, 4)).shape == (2, 0)
    a = torch.tensor([[0.0, 0, 1, 1], [5, 5, 8, 9]])
    assert torch.equal(box_iou(a, a).diagonal(), torch.ones(2))
    assert float(box_iou(a[:1], a[1:])) == 0.0
    degenerate = torch.tensor([[1.0, 1, 1, 1], [0, 0, 0, 3], [2, 2, 5, 2]])
    assert torch.isnan(ops.box_iou(degenerate, degenerate)).any()      # the deliberate difference
    got = box_iou(degenerate, torch.cat([degenerate, a]))
    assert torch.isfinite(got).all() and torch.equal(got, torch.zeros(3, 5))
    assert box_iou(a.double(), a.double()).dtype == torch.float64


@pytest.mark.parametrize("seed", range(3))
def test_xywh_to_xyxy_matches_box_convert(seed):
    gen = torch.Generator().manual_seed(seed)
    xywh = torch.rand(9, 4, generator=gen) * 50
    before = xywh.clone()
    got = xywh_to_xyxy(xywh)
    torch.testing.assert_close(got, ops.box_convert(xywh, "xywh", "xyxy"))
    assert torch.equal(xywh, before)                                 # input untouched
    assert xywh_to_xyxy(torch.zeros(0, 4)).shape == (0, 4)


# --- NMS ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(24))
def test_nms_matches_torchvision(seed):
    gen = torch.Generator().manual_seed(seed)
    integer, ties = seed % 3 == 1, seed % 2 == 1
    n = int(torch.randint(1, 60, (1,), generator=gen))
    boxes, scores = random_boxes(gen, n, integer=integer), random_scores(gen, n, ties)
    # Integer boxes have exact IoU ties: use thresholds that float32 represents exactly (see
    # test_nms_tie_at_an_inexact_threshold for the one place torchvision differs).
    for thr in (0.0, 0.25, 0.5, 0.75, 1.0) if integer else (0.0, 0.3, 0.5, 0.7, 1.0):
        expected = ops.nms(boxes, scores, thr)
        got = nms(boxes, scores, thr)
        assert got.dtype == torch.int64
        assert torch.equal(got, expected), (thr, got, expected)
        # scores: highest first, ties by index
        assert all((scores[got[i]] > scores[got[i + 1]]) or (scores[got[i]] == scores[got[i + 1]] and got[i] < got[i + 1])
                   for i in range(len(got) - 1))


def test_nms_exact_threshold_ties_and_order():
    boxes = torch.tensor([[0.0, 0, 2, 1], [0, 0, 1, 1]])             # IoU exactly 0.5
    assert nms(boxes, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0, 1]
    assert nms(boxes, torch.tensor([0.9, 0.8]), 0.49).tolist() == [0]
    same = torch.tensor([[0.0, 0, 1, 1]] * 3)
    assert nms(same, torch.tensor([0.5, 0.5, 0.5]), 0.5).tolist() == [0]
    apart = torch.tensor([[0.0, 0, 1, 1], [5, 5, 6, 6], [9, 9, 10, 10]])
    assert nms(apart, torch.tensor([0.3, 0.7, 0.3]), 0.5).tolist() == [1, 0, 2]


def test_nms_tie_at_an_inexact_threshold():
    # IoU = 3/10 exactly. Both the IoU and the threshold round to the same float32, so the box
    # survives (IoU equal to the threshold). torchvision compares the float32 IoU with the threshold
    # as a double (0.3000000119 > 0.3) and suppresses it: a rounding artefact we do not copy.
    boxes = torch.tensor([[0.0, 0, 10, 1], [0, 0, 3, 1]])
    scores = torch.tensor([0.9, 0.8])
    assert float(box_iou(boxes[:1], boxes[1:])) == pytest.approx(0.3)
    assert nms(boxes, scores, 0.3).tolist() == [0, 1]
    assert ops.nms(boxes, scores, 0.3).tolist() == [0]


def test_nms_score_threshold_and_empty():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [21, 21, 30, 30]])
    scores = torch.tensor([0.4, 0.6, 0.5, 0.3])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    # 0.5 takes part (>=), and the dropped 0.3 box cannot suppress anything
    assert nms(boxes, scores, 0.5, score_threshold=0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.5, score_threshold=0.55).tolist() == [1]
    # indices point into the original boxes, not into the filtered ones
    assert nms(boxes, torch.tensor([0.1, 0.6, 0.5, 0.3]), 0.5, score_threshold=0.2).tolist() == [1, 2]
    assert nms(boxes, scores, 0.5, score_threshold=0.95).tolist() == []
    empty = nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.shape == (0,) and empty.dtype == torch.int64
    assert nms(boxes, scores, 0.5, score_threshold=2.0).dtype == torch.int64


def test_nms_zero_area_boxes_never_suppress():
    boxes = torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 4, 4]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == ops.nms(boxes, scores, 0.5).tolist() == [0, 1, 2]


@pytest.mark.parametrize("seed", range(16))
def test_batched_nms_matches_torchvision(seed):
    gen = torch.Generator().manual_seed(100 + seed)
    n = int(torch.randint(1, 50, (1,), generator=gen))
    boxes = random_boxes(gen, n, integer=seed % 2 == 0)
    scores = random_scores(gen, n, ties=seed % 4 < 2)
    labels = torch.randint(0, 4, (n,), generator=gen)
    for thr in (0.25, 0.5, 0.75) if seed % 2 == 0 else (0.3, 0.5, 0.8):
        expected = ops.batched_nms(boxes, scores, labels, thr)
        got = batched_nms(boxes, scores, labels, thr)
        assert got.dtype == torch.int64 and torch.equal(got, expected), (thr, got, expected)


def test_batched_nms_edge_cases():
    same = torch.tensor([[0.0, 0, 1, 1]] * 2)
    assert batched_nms(same, torch.tensor([0.5, 0.9]), torch.tensor([0, 1]), 0.5).tolist() == [1, 0]
    assert batched_nms(same, torch.tensor([0.5, 0.9]), torch.tensor([1, 1]), 0.5).tolist() == [1]
    empty = batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5)
    assert empty.shape == (0,) and empty.dtype == torch.int64


@pytest.mark.parametrize("seed", range(10))
def test_nms_rows_matches_batched_nms(seed):
    gen = torch.Generator().manual_seed(200 + seed)
    n = int(torch.randint(0, 40, (1,), generator=gen))
    boxes = random_boxes(gen, n, integer=seed % 2 == 0)
    scores = random_scores(gen, n, ties=seed % 3 == 0)
    labels = torch.randint(0, 3, (n,), generator=gen)
    rows = [[int(c), float(s), *b] for c, s, b in zip(labels, scores, boxes.tolist())]
    snapshot = [list(r) for r in rows]
    for thr in (0.3, 0.5):
        keep = ops.batched_nms(boxes, scores, labels, thr).tolist()
        got = nms_rows(rows, thr)
        assert got == [rows[i] for i in keep]
        assert all(g is rows[i] for g, i in zip(got, keep))
    assert rows == snapshot                                          # input list untouched


def test_nms_rows_seed_example():
    # The seed's form: [class, score, x1, y1, x2, y2]; IoU exactly 0.5 survives at threshold 0.5.
    rows = [[0, 0.8, 0, 0, 1, 1], [0, 0.9, 0, 0, 2, 1], [1, 0.7, 0, 0, 2, 1], [0, 0.6, 0.1, 0, 2, 1]]
    assert nms_rows(rows, 0.5) == [[0, 0.9, 0, 0, 2, 1], [0, 0.8, 0, 0, 1, 1], [1, 0.7, 0, 0, 2, 1]]
    assert nms_rows([], 0.5) == []


# --- mAP against pycocotools -------------------------------------------------------------------------


def coco_map(preds: list, targets: list, thresholds=None) -> tuple[float, np.ndarray]:
    """COCOeval (bbox, area all, 100 detections): stats[0] and the precision array [T,R,K]."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    classes = sorted({int(c) for t in targets for c in t["labels"]} | {int(c) for p in preds for c in p["labels"]})
    images, anns, dets = [], [], []
    for i, (p, t) in enumerate(zip(preds, targets)):
        images.append({"id": i + 1})
        for box, c in zip(t["boxes"].double().tolist(), t["labels"].tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": c + 1,
                         "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0})
        for box, s, c in zip(p["boxes"].double().tolist(), p["scores"].tolist(), p["labels"].tolist()):
            dets.append({"image_id": i + 1, "category_id": c + 1, "score": s,
                         "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c + 1} for c in classes]}
        gt.createIndex()
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        if thresholds is not None:
            ev.params.iouThrs = np.array(thresholds, dtype=np.float64)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0]), ev.eval["precision"][:, :, :, 0, -1]


def random_detection_data(gen: torch.Generator, n_images: int, n_classes: int, integer: bool):
    preds, targets = [], []
    for _ in range(n_images):
        g = int(torch.randint(0, 8, (1,), generator=gen))
        gt = random_boxes(gen, g, integer=integer, size=60)
        gt_labels = torch.randint(0, n_classes, (g,), generator=gen)
        # detections: noisy copies of the ground truth (some twice) plus clutter
        copies = torch.randint(0, 3, (g,), generator=gen)
        src = torch.repeat_interleave(torch.arange(g), copies)
        wh = (gt[src, 2:] - gt[src, :2]).repeat(1, 2)
        noise = torch.randint(-1, 2, wh.shape, generator=gen).float() if integer else \
            (torch.rand(wh.shape, generator=gen) - 0.5) * 0.5 * wh
        k = int(torch.randint(0, 6, (1,), generator=gen))
        boxes = torch.cat([gt[src] + noise, random_boxes(gen, k, integer=integer, size=60)])
        boxes = torch.cat([boxes[:, :2], torch.maximum(boxes[:, 2:], boxes[:, :2] + 0.5)], dim=1)
        labels = torch.cat([gt_labels[src], torch.randint(0, n_classes + 1, (k,), generator=gen)])
        scores = random_scores(gen, len(boxes), ties=integer)
        preds.append({"boxes": boxes, "scores": scores, "labels": labels})
        targets.append({"boxes": gt, "labels": gt_labels})
    return preds, targets


@pytest.mark.parametrize("seed", range(8))
def test_map_equals_cocoeval(seed):
    gen = torch.Generator().manual_seed(300 + seed)
    preds, targets = random_detection_data(gen, n_images=4 + seed % 3, n_classes=3, integer=seed % 2 == 1)
    if not any(len(p["boxes"]) for p in preds):
        pytest.skip("no detections: COCO cannot load an empty result")
    expected, precision = coco_map(preds, targets)
    assert mean_average_precision(preds, targets) == pytest.approx(expected, abs=1e-6)
    # per class and threshold: AP equals the mean of COCO's precision at 101 recall points
    classes = sorted({int(c) for t in targets for c in t["labels"]} | {int(c) for p in preds for c in p["labels"]})
    for k, c in enumerate(classes):
        for ti, thr in enumerate(np.linspace(0.5, 0.95, 10)):
            q = precision[ti, :, k]
            ap = average_precision([p["boxes"][p["labels"] == c] for p in preds],
                                   [p["scores"][p["labels"] == c] for p in preds],
                                   [t["boxes"][t["labels"] == c] for t in targets], float(thr))
            assert ap == pytest.approx(float(q.mean()) if (q > -1).all() else -1.0, abs=1e-6), (c, thr)
    # Pascal VOC style: a single threshold of 0.5
    voc, _ = coco_map(preds, targets, [0.5])
    assert mean_average_precision(preds, targets, [0.5]) == pytest.approx(voc, abs=1e-6)


def test_map_truncates_to_100_detections_per_image():
    gen = torch.Generator().manual_seed(7)
    gt = torch.tensor([[10.0, 10, 20, 20]])
    clutter = random_boxes(gen, 150, size=40) + 50                   # never overlaps the gt
    boxes = torch.cat([clutter[:119], gt, clutter[119:]])
    scores = torch.linspace(1.0, 0.01, 151)                          # the true positive ranks 120th
    preds = [{"boxes": boxes, "scores": scores, "labels": torch.zeros(151, dtype=torch.int64)}]
    targets = [{"boxes": gt, "labels": torch.zeros(1, dtype=torch.int64)}]
    expected, _ = coco_map(preds, targets)
    assert expected == 0.0
    assert mean_average_precision(preds, targets) == 0.0
    # without the cap the true positive would count: 1/120 precision at every recall point
    assert average_precision([boxes[100:]], [scores[100:]], [gt], 0.5) == pytest.approx(1 / 20)


def test_average_precision_hand_example():
    # Two objects; the detector's best guess is wrong, its next two are right.
    gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    boxes = torch.tensor([[40.0, 40, 50, 50], [0, 0, 10, 10], [20, 20, 30, 30]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    # precision 0, 1/2, 2/3 at recall 0, 1/2, 1 -> monotone 2/3 everywhere -> AP = 2/3
    assert average_precision([boxes], [scores], [gt], 0.5) == pytest.approx(2 / 3)
    # a duplicate of a matched box is a false positive
    dup = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    assert average_precision([dup], [scores], [gt], 0.5) == pytest.approx((51 + 50 * 2 / 3) / 101)
    # equal scores keep input order: the false positive first
    assert average_precision([boxes[:2]], [torch.tensor([0.5, 0.5])], [gt[:1]], 0.5) == pytest.approx(0.5)
    assert average_precision([torch.zeros(0, 4)], [torch.zeros(0)], [gt], 0.5) == 0.0
    assert average_precision([boxes], [scores], [torch.zeros(0, 4)], 0.5) == -1.0
    # IoU exactly 1 still matches at threshold 1.0 (COCO caps the threshold at 1 - 1e-10)
    assert average_precision([gt], [scores[:2]], [gt], 1.0) == pytest.approx(1.0)


def test_map_hand_example_and_empty():
    gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    boxes = torch.tensor([[40.0, 40, 50, 50], [0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 5, 5]])
    preds = [{"boxes": boxes, "scores": torch.tensor([0.9, 0.8, 0.7, 0.6]), "labels": torch.tensor([0, 0, 0, 5])}]
    targets = [{"boxes": gt, "labels": torch.tensor([0, 0])}]
    # class 5 has no ground truth: left out
    assert mean_average_precision(preds, targets) == pytest.approx(2 / 3)
    assert mean_average_precision(preds, targets) == pytest.approx(coco_map(preds, targets)[0], abs=1e-6)
    assert mean_average_precision(preds, [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]) == -1.0


# --- golden ------------------------------------------------------------------------------------------


def test_golden_is_deterministic_and_matches_cocoeval():
    g = golden()
    assert json.loads(json.dumps(g)) == g == golden()
    preds, targets = _tensors(_scenario())
    assert g["map"] == pytest.approx(coco_map(preds, targets)[0], abs=1e-6)
    assert g["map_50"] == pytest.approx(coco_map(preds, targets, [0.5])[0], abs=1e-6)
    assert 0.2 < g["map"] < 0.8


def test_golden_file_is_current():
    path = ROOT / "autograder" / "golden" / "detection.json"
    assert path.read_text() == json.dumps(golden(), indent=1, sort_keys=True) + "\n"
