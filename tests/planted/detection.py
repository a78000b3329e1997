"""Planted bugs of lab 14 (detection). Dependencies between exercises, as the solution wires them:
nms calls box_iou; batched_nms calls nms; nms_rows calls iou; average_precision calls box_iou;
mean_average_precision calls average_precision. The checks give an exercise correct helpers
(torchvision's box_iou, nms and IoU; for mean_average_precision, the reference's AP values of its
own inputs, from the golden data), so a bug fails its own check only.
"""
from __future__ import annotations

from tests.planted import bug

BUGS = [
    # torchvision suppresses only IoU > threshold; the seed's `< iou_threshold` keep-test is this bug.
    # batched_nms runs nms per class, but its check gives it a correct nms.
    bug("nms-suppresses-at-ge", "nms",
        "suppressed |= ious[i] > iou_threshold", "suppressed |= ious[i] >= iou_threshold",
        {"nms"}),
    # Disjoint boxes: two negative sides multiply to a positive "intersection". nms, batched_nms,
    # average_precision and mean_average_precision call box_iou; their checks give them a correct one.
    bug("box-iou-no-clamp", "box_iou",
        "wh = (rb - lt).clamp(min=0)", "wh = rb - lt",
        {"box_iou"}),
    # The union counts the overlap twice. nms_rows calls iou; its check gives it a correct one.
    bug("iou-union-keeps-intersection", "iou",
        "(by2 - by1) - inter", "(by2 - by1)",
        {"iou"}),
    # The old Pascal VOC "+1 pixel" width, on the intersection only.
    bug("iou-off-by-one", "iou",
        "max(min(ax2, bx2) - max(ax1, bx1), 0.0)", "max(min(ax2, bx2) - max(ax1, bx1) + 1, 0.0)",
        {"iou"}),
    bug("xywh-as-centre", "xywh_to_xyxy",
        "[x, y, x + w, y + h]", "[x - w / 2, y - h / 2, x + w / 2, y + h / 2]",
        {"xywh_to_xyxy"}),
    bug("nms-score-filter-strict", "nms",
        "scores >= score_threshold", "scores > score_threshold",
        {"nms"}),
    bug("batched-nms-not-resorted", "batched_nms",
        "return keep[by_score]", "return keep",
        {"batched_nms"}),
    # The seed's rule: keep a row only when IoU < threshold.
    bug("nms-rows-seed-strict-keep", "nms_rows",
        "<= iou_threshold", "< iou_threshold",
        {"nms_rows"}),
    bug("ap-precision-not-monotone", "average_precision",
        "precision = np.maximum.accumulate(precision[::-1])[::-1]", "precision = precision",
        {"average_precision"}),
    # The golden scenario has fewer than 100 detections per image: only the AP hand case sees it.
    bug("ap-no-100-detection-cap", "average_precision",
        ".indices[:100]", ".indices",
        {"average_precision"}),
    # Classes that only have predictions get AP -1 and drag the mean down.
    bug("map-over-predicted-classes", "mean_average_precision",
        'labels = [t["labels"] for t in targets]', 'labels = [t["labels"] for t in targets] + [p["labels"] for p in preds]',
        {"mean_average_precision"}),
    # Classes taken to be 0, 1, 2: the check renames the golden scenario's classes at random.
    bug("map-classes-assumed", "mean_average_precision",
        "classes = torch.unique(torch.cat(labels)).tolist() if labels else []", "classes = [0, 1, 2]",
        {"mean_average_precision"}),
]
