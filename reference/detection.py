"""Lab 14 — object detection basics: IoU, NMS and mAP (seeds 000 and 003).

Boxes are `(x1, y1, x2, y2)` with `(x1, y1)` the top-left and `(x2, y2)` the bottom-right corner,
unless a name says `xywh` (then `(x, y)` is the top-left corner and `(w, h)` the size).
The functions follow `torchvision.ops` (box_iou, nms, batched_nms, box_convert) except where the
lab says otherwise (a zero-area box has IoU 0, never NaN), and mAP follows pycocotools' COCOeval.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "iou", "xywh_to_xyxy", "box_iou", "nms", "batched_nms", "nms_rows",
    "average_precision", "mean_average_precision", "golden",
]


def iou(box1, box2) -> float:
    """Intersection over union of two boxes, as a Python float in [0, 1].

    box1, box2: 4 numbers `(x1, y1, x2, y2)` each — a list, a tuple or a tensor of shape [4].
    Boxes that do not overlap give 0; if the union has no area (two zero-area boxes) the result is 0.
    """
    ax1, ay1, ax2, ay2 = (float(v) for v in box1)
    bx1, by1, bx2, by2 = (float(v) for v in box2)
    # The intersection is the box between the larger top-left and the smaller bottom-right corner;
    # a negative width or height means the boxes do not overlap on that axis.
    inter = max(min(ax2, bx2) - max(ax1, bx1), 0.0) * max(min(ay2, by2) - max(ay1, by1), 0.0)
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union > 0 else 0.0


def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """Convert boxes from `(x, y, w, h)` (top-left corner and size) to `(x1, y1, x2, y2)`.

    boxes: [N, 4] (any leading shape works). Returns a new tensor of the same shape and dtype;
    the input is left unchanged.
    """
    x, y, w, h = boxes.unbind(-1)                     # each [N]
    return torch.stack([x, y, x + w, y + h], dim=-1)  # [N, 4]


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box of `a` with every box of `b`, vectorised.

    a: [N, 4], b: [M, 4] in `(x1, y1, x2, y2)`. Returns [N, M] with entry (i, j) = IoU(a[i], b[j]).
    Where the union has no area the IoU is 0 (torchvision gives NaN there).
    """
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])     # [N]
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])     # [M]
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])     # [N, M, 2] top-left of each intersection
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])     # [N, M, 2] bottom-right of each intersection
    wh = (rb - lt).clamp(min=0)                            # [N, M, 2] no overlap -> width/height 0
    inter = wh[..., 0] * wh[..., 1]                        # [N, M]
    union = area_a[:, None] + area_b[None, :] - inter      # [N, M]
    return torch.where(union > 0, inter / union, torch.zeros_like(union))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
        score_threshold: float = 0.0) -> torch.Tensor:
    """Greedy non-maximum suppression, with torchvision's rules.

    boxes: [N, 4] `(x1, y1, x2, y2)`, scores: [N]. Only boxes with `score >= score_threshold` take
    part. Repeatedly keep the best remaining box and drop every remaining box whose IoU with it is
    greater than `iou_threshold` (IoU equal to the threshold survives).
    Returns an int64 tensor [K] of indices into `boxes`, highest score first (ties: lower index first).
    """
    candidates = torch.nonzero(scores >= score_threshold).flatten()                # [C]
    by_score = torch.sort(scores[candidates], descending=True, stable=True).indices
    order = candidates[by_score]                       # [C] candidates, best first; ties by index
    ious = box_iou(boxes[order], boxes[order])         # [C, C]
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(int(order[i]))
        suppressed |= ious[i] > iou_threshold         # drop everything that overlaps box i too much
    return torch.tensor(keep, dtype=torch.int64)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
    """Class-aware NMS: boxes suppress each other only when they have the same label.

    boxes: [N, 4], scores: [N], labels: [N] int64. Returns an int64 tensor [K] of kept indices into
    `boxes`, highest score first (ties: lower index first), as `torchvision.ops.batched_nms`.
    """
    keep = [torch.empty(0, dtype=torch.int64)]
    for c in torch.unique(labels):
        idx = torch.nonzero(labels == c).flatten()                   # [K_c] boxes of class c
        keep.append(idx[nms(boxes[idx], scores[idx], iou_threshold)])
    keep = torch.sort(torch.cat(keep)).values          # index order, so that the stable sort below
    by_score = torch.sort(scores[keep], descending=True, stable=True).indices  # breaks ties by index
    return keep[by_score]


def nms_rows(rows: list, iou_threshold: float) -> list:
    """The lecture's NMS on its list form, with the lecture's bugs fixed.

    rows: a list of `[class, score, x1, y1, x2, y2]`. A row is dropped when a kept row of the same
    class has an IoU with it greater than `iou_threshold`. Returns the kept rows (the same row
    objects) in descending score order (ties: input order). The input list is not modified.
    """
    remaining = sorted(rows, key=lambda row: row[1], reverse=True)  # a new list; sorted is stable
    kept = []
    while remaining:
        chosen = remaining.pop(0)                      # the best row left
        remaining = [
            row for row in remaining
            if row[0] != chosen[0]                     # another class: never suppressed
            or iou(chosen[2:], row[2:]) <= iou_threshold
        ]
        kept.append(chosen)
    return kept


def average_precision(pred_boxes: list, pred_scores: list, gt_boxes: list,
                      iou_threshold: float) -> float:
    """Average precision of one class at one IoU threshold, by COCO's rules.

    pred_boxes[i]: [K_i, 4], pred_scores[i]: [K_i], gt_boxes[i]: [G_i, 4] — one entry per image.
    Per image, the 100 best detections (stable descending score) are matched in order, each to
    the unmatched ground-truth box of highest IoU >= the threshold (a true positive) or to none (a
    false positive). Over all images, sorted by score (stable, image order first), precision is
    made monotone from the right and read at the 101 recall points 0, 0.01, ..., 1 (0 past the
    highest recall reached); AP is their mean. With no ground truth, AP is undefined: -1.0, as COCO.
    """
    n_gt = sum(len(g) for g in gt_boxes)
    if n_gt == 0:
        return -1.0
    threshold = min(iou_threshold, 1 - 1e-10)          # COCO's cap: identical boxes match at 1.0
    scores, hits = [], []
    for boxes, s, gts in zip(pred_boxes, pred_scores, gt_boxes):
        order = torch.sort(s, descending=True, stable=True).indices[:100]   # at most 100 per image
        ious = box_iou(boxes[order].double(), gts.double()).tolist()        # [K][G]
        taken = [False] * len(gts)
        for k in range(len(order)):
            best, best_iou = -1, threshold
            for g in range(len(gts)):
                if not taken[g] and ious[k][g] >= best_iou:   # '>=': ties go to the later box, as COCO
                    best, best_iou = g, ious[k][g]
            if best >= 0:
                taken[best] = True
            hits.append(best >= 0)
            scores.append(float(s[order[k]]))
    ranked = np.argsort(-np.array(scores), kind="stable")   # all images, best first
    tp = np.cumsum(np.array(hits, dtype=bool)[ranked])      # true positives among the top n
    fp = np.cumsum(~np.array(hits, dtype=bool)[ranked])     # false positives among the top n
    recall = tp / n_gt
    precision = tp / (tp + fp)
    precision = np.maximum.accumulate(precision[::-1])[::-1]    # monotone: best precision to the right
    first = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")  # first rank reaching each level
    reached = first < len(precision)
    sampled = np.zeros(101)
    sampled[reached] = precision[first[reached]]
    return float(sampled.mean())


def mean_average_precision(preds: list, targets: list, iou_thresholds=None) -> float:
    """COCO mAP: `average_precision` averaged over classes with ground truth and over thresholds.

    preds[i]: dict with "boxes" [K_i, 4], "scores" [K_i], "labels" [K_i] (int64) for image i;
    targets[i]: dict with "boxes" [G_i, 4] and "labels" [G_i]. iou_thresholds: a sequence of
    floats, default COCO's 0.50, 0.55, ..., 0.95 (`[0.5]` gives Pascal VOC's mAP@0.5).
    Classes that only have predictions are left out; -1.0 when no class has ground truth.
    """
    if iou_thresholds is None:
        iou_thresholds = np.linspace(0.5, 0.95, 10)    # exactly COCOeval's thresholds
    labels = [t["labels"] for t in targets]
    classes = torch.unique(torch.cat(labels)).tolist() if labels else []
    if not classes:
        return -1.0
    aps = []
    for c in classes:
        boxes = [p["boxes"][p["labels"] == c] for p in preds]
        scores = [p["scores"][p["labels"] == c] for p in preds]
        gts = [t["boxes"][t["labels"] == c] for t in targets]
        aps += [average_precision(boxes, scores, gts, float(t)) for t in iou_thresholds]
    return float(np.mean(aps))


# ----------------------------------------------------------------------------------------------
# Golden values for the autograder (written by `course build` to autograder/golden/detection.json)

def _scenario(seed: int = 14, n_images: int = 5, n_classes: int = 3) -> dict:
    """A fixed detection scenario as JSON-able lists: ground truth and noisy predictions.

    Each image has a few ground-truth boxes per class; each box is detected (a jittered copy)
    with probability 0.8, sometimes twice; random false positives are added, some of class
    `n_classes`, which has no ground truth. Coordinates are rounded to 0.01, scores to 0.001.
    """
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=gen)

    def random_box():
        x, y = (rand(2) * 80).tolist()
        w, h = (rand(2) * 30 + 6).tolist()
        return [x, y, x + w, y + h]

    preds, targets = [], []
    for _ in range(n_images):
        gt, gt_labels, boxes, scores, labels = [], [], [], [], []
        for c in range(n_classes):
            for _ in range(int(torch.randint(0, 4, (1,), generator=gen))):
                box = random_box()
                gt.append(box)
                gt_labels.append(c)
                w, h = box[2] - box[0], box[3] - box[1]
                for _ in range(2 if float(rand(1)) < 0.25 else (1 if float(rand(1)) < 0.8 else 0)):
                    j = (rand(4) - 0.5) * 0.25 * torch.tensor([w, h, w, h])
                    boxes.append([v + d for v, d in zip(box, j.tolist())])
                    scores.append(float(rand(1)))
                    labels.append(c)
        for _ in range(int(torch.randint(1, 5, (1,), generator=gen))):
            boxes.append(random_box())
            scores.append(float(rand(1)) * 0.8)
            labels.append(int(torch.randint(0, n_classes + 1, (1,), generator=gen)))
        targets.append({"boxes": [[round(v, 2) for v in b] for b in gt], "labels": gt_labels})
        preds.append({"boxes": [[round(v, 2) for v in b] for b in boxes],
                      "scores": [round(s, 3) for s in scores], "labels": labels})
    return {"preds": preds, "targets": targets}


def _tensors(scenario: dict) -> tuple[list, list]:
    """The scenario's preds and targets as torchvision-style dicts of tensors."""
    def boxes(rows):
        return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)

    preds = [{"boxes": boxes(p["boxes"]), "scores": torch.tensor(p["scores"], dtype=torch.float32),
              "labels": torch.tensor(p["labels"], dtype=torch.int64)} for p in scenario["preds"]]
    targets = [{"boxes": boxes(t["boxes"]), "labels": torch.tensor(t["labels"], dtype=torch.int64)}
               for t in scenario["targets"]]
    return preds, targets


def golden() -> dict:
    """JSON-able inputs and reference outputs for the mAP checks (deterministic)."""
    scenario = _scenario()
    preds, targets = _tensors(scenario)
    classes = sorted({c for t in scenario["targets"] for c in t["labels"]})
    thresholds = [float(t) for t in np.linspace(0.5, 0.95, 10)]
    # Keep every IoU well away from the thresholds, so float32 and float64 students agree.
    for p, t in zip(preds, targets):
        gap = (box_iou(p["boxes"].double(), t["boxes"].double())[..., None]
               - torch.tensor(thresholds, dtype=torch.float64)).abs()
        assert gap.numel() == 0 or float(gap.min()) > 1e-4, "scenario has an IoU at a threshold"
    ap = {}
    for name, thr in (("ap_50", 0.5), ("ap_75", 0.75)):
        ap[name] = [average_precision([p["boxes"][p["labels"] == c] for p in preds],
                                      [p["scores"][p["labels"] == c] for p in preds],
                                      [t["boxes"][t["labels"] == c] for t in targets], thr)
                    for c in classes]
    # AP per class at every COCO threshold: what the mAP check gives a student's mAP in place of
    # their average_precision, so that a wrong AP costs only its own check
    ap["ap_by_threshold"] = [[average_precision([p["boxes"][p["labels"] == c] for p in preds],
                                                [p["scores"][p["labels"] == c] for p in preds],
                                                [t["boxes"][t["labels"] == c] for t in targets], thr)
                              for c in classes] for thr in thresholds]
    return {
        "scenario": scenario,
        "classes": classes,
        "thresholds": thresholds,
        **ap,
        "map": mean_average_precision(preds, targets),
        "map_50": mean_average_precision(preds, targets, [0.5]),
        "map_75": mean_average_precision(preds, targets, [0.75]),
    }
