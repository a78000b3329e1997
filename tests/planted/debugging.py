"""Planted bugs of lab debugging: the seed's own bugs, one at a time (reference/debugging.py
SEED_BUGS, the same substitutions the student's starting script is made of).

Each fails exactly the check aimed at it, except `self.network==`: with it `Net()` cannot be
built, the training cell never runs a training step, and `gpu` fails too ("none recorded"). A
wrong flatten size also breaks the training cell, but only at the first Linear layer: the
convolutions have run in training mode by then, so `gpu` keeps its points.
"""
from reference.debugging import SEED_BUGS
from tests.planted import bug

_NAMES = ["network-compared-not-assigned", "flatten-64-29-29", "dropout-comma-256", "dropout-comma-64",
          "softmax-before-cross-entropy", "accuracy-over-train-batches", "patience-counter-set-to-1",
          "nms-chose-box", "nms-bbox"]
_ALSO_FAILS = {"network_assignment": {"gpu"}}

BUGS = [bug(name, b.cell, b.fixed, b.broken, {b.check} | _ALSO_FAILS.get(b.check, set()))
        for name, b in zip(_NAMES, SEED_BUGS, strict=True)]
