"""Planted bugs of lab debugging: the seed's own bugs, one at a time (reference/debugging.py
SEED_BUGS, the same substitutions the student's starting script is made of).

Each fails exactly the check aimed at it, except `self.network==`: with it `Net()` cannot be
built, the training cell never runs a training step, and `gpu` fails too ("none recorded"). A
wrong flatten size, or block 2 fed the input, also breaks the training cell, but only after the
first convolution has run in training mode, so `gpu` keeps its points; so do the bugs of `fit`
(the first epoch trains before they strike) and those after the training cell.
"""
from reference.debugging import SEED_BUGS
from tests.planted import bug

_NAMES = ["network-compared-not-assigned", "flatten-64-29-29", "dropout-comma-256", "dropout-comma-64",
          "softmax-before-cross-entropy", "block2-fed-the-input", "forward-at-module-level",
          "accuracy-over-train-batches", "patience-counter-set-to-1", "validation-after-the-loop",
          "val-loader-name", "best-epoch-dot-best", "test-accuracy-over-train-set", "test-accuracy-called-train",
          "class-total-counts-right-only", "nms-chose-box", "nms-bbox"]
_ALSO_FAILS = {"network_assignment": {"gpu"}}

BUGS = [bug(name, b.cell, b.fixed, b.broken, {b.check} | _ALSO_FAILS.get(b.check, set()))
        for name, b in zip(_NAMES, SEED_BUGS, strict=True)]
