"""Lab lenet: training time and accuracy of the reference models with the notebook's settings.

Prints, for each seed, the seconds to train the reference LeNet5 on the 3,500 embedded training
digits (reference.lenet.TRAIN_SETTINGS, CPU, 2 threads as on CI) and its accuracy on the
validation and hidden test splits; then the same LeNet5 trained well (reference.lenet.
FAST_SETTINGS: Standardize in front, a one-cycle schedule), which the notebook's accuracy check
scores; then trained well and regularized (REGULARIZED_SETTINGS: also ±1-pixel random shifts and
label smoothing), the notebook's last step; then the seed's fully connected 784-256-10 network
trained plainly, for comparison.
course.yml's `thresholds.accuracy` for lenet comes from the trained-well test accuracies, minus
a margin.

    .venv/bin/python benchmarks/lenet.py [--seeds 0 1 2 3 4] [--threads 2]
"""
from __future__ import annotations

import argparse
import time

import torch

from torch import nn

from reference.lenet import (
    FAST_SETTINGS,
    REGULARIZED_SETTINGS,
    TRAIN_SETTINGS,
    LeNet5,
    MnistFC,
    Standardize,
    accuracy,
    count_params,
    mnist_splits,
    seed_everything,
    train_classifier,
)


def run(make, seed: int, splits, settings=TRAIN_SETTINGS) -> tuple[float, float, float]:
    seed_everything(seed)
    model = make()
    start = time.perf_counter()
    train_classifier(model, splits["train"], device="cpu", **settings)
    seconds = time.perf_counter() - start
    return seconds, accuracy(model, splits["val"]), accuracy(model, splits["test"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = mnist_splits()
    X = splits["train"].tensors[0]
    mean, std = X.mean().item(), X.std().item()
    print(f"{args.threads} threads, torch {torch.__version__}")

    def standardized() -> nn.Module:
        return nn.Sequential(Standardize(mean, std), LeNet5())
    recipes = (("LeNet5, plain", LeNet5, TRAIN_SETTINGS),
               ("LeNet5, trained well", standardized, FAST_SETTINGS),
               ("LeNet5, trained well and regularized", standardized, REGULARIZED_SETTINGS),
               ("MnistFC, plain", MnistFC, TRAIN_SETTINGS))
    for name, make, settings in recipes:
        rows = [(seed, *run(make, seed, splits, settings)) for seed in args.seeds]
        print(f"\n{name} ({count_params(make()):,} parameters): {settings}")
        print(f"{'seed':>4} {'train s':>8} {'val acc':>8} {'test acc':>9}")
        for seed, seconds, val, test in rows:
            print(f"{seed:>4} {seconds:>8.2f} {val:>8.3f} {test:>9.3f}")
        tests = [r[3] for r in rows]
        print(f"test accuracy: min {min(tests):.3f}, mean {sum(tests) / len(tests):.3f}, max {max(tests):.3f}")


if __name__ == "__main__":
    main()
