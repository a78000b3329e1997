"""Lab training: training time and accuracy of the reference MLP with the notebook's settings.

Prints, for each seed, the seconds `fit` takes to train the reference MLP (784-256-128-10) on the
3,500 embedded training digits (reference.training.TRAIN_SETTINGS: 5 epochs, Adam 1e-3, batch
64; CPU) and its accuracy on the validation and hidden test splits. course.yml's
`thresholds.accuracy` for the lab comes from these test accuracies, minus a margin.

The notebook trains with one thread (a small MLP gains nothing from more, and on a shared
machine extra threads only wait for each other); `--threads` changes that.

    .venv/bin/python benchmarks/training.py [--seeds 0 1 2] [--threads 1]
"""
from __future__ import annotations

import argparse
import time

import torch

from reference.training import TRAIN_SETTINGS, MLP, count_params, evaluate, fit, make_loaders, seed_everything


def run(seed: int) -> tuple[float, float, float]:
    """(training seconds, validation accuracy, test accuracy) of one notebook run from `seed`."""
    seed_everything(seed)
    train_loader, val_loader, test_loader = make_loaders(TRAIN_SETTINGS["batch_size"])
    model = MLP()
    start = time.perf_counter()
    history = fit(model, train_loader, val_loader, TRAIN_SETTINGS["epochs"], TRAIN_SETTINGS["lr"], "cpu")
    seconds = time.perf_counter() - start
    return seconds, history["val_acc"][-1], evaluate(model, test_loader, "cpu")[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"MLP ({count_params(MLP()):,} parameters), settings {TRAIN_SETTINGS}, {args.threads} thread(s), "
          f"torch {torch.__version__}")
    print(f"{'seed':>4} {'train s':>8} {'val acc':>8} {'test acc':>9}")
    rows = [(seed, *run(seed)) for seed in args.seeds]
    for seed, seconds, val, test in rows:
        print(f"{seed:>4} {seconds:>8.2f} {val:>8.3f} {test:>9.3f}")
    tests = [r[3] for r in rows]
    print(f"test accuracy: min {min(tests):.3f}, mean {sum(tests) / len(tests):.3f}, max {max(tests):.3f}")


if __name__ == "__main__":
    main()
