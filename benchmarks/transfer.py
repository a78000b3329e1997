"""Lab transfer: scratch vs feature extraction vs fine-tuning with the notebook's settings.

Prints the pre-training of the digit backbone (seconds, test accuracy on the digits 0-4, and
whether it reproduces the shipped weights bit for bit), then, for each seed, the accuracy on the
validation and test digits 5-9 of the three models trained on the same `per_class` labelled
examples per digit (`few_shot(..., seed)`, initialisation seeded alike; reference.transfer.TRANSFER,
CPU). course.yml's `thresholds.transfer_accuracy` for transfer comes from these figures.

    .venv/bin/python benchmarks/transfer.py [--seeds 0 1 2] [--per-class 5] [--threads 1] [--no-pretrain]
"""
from __future__ import annotations

import argparse
import time

import torch

from reference.transfer import (
    TRANSFER,
    accuracy,
    few_shot,
    fit,
    load_digit_backbone,
    mnist_splits,
    pretrain_backbone,
    seed_everything,
    select_digits,
    transfer_models,
)

NAMES = ("scratch", "feature_extraction", "fine_tuning")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--per-class", type=int, default=TRANSFER["per_class"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-pretrain", action="store_true", help="skip re-running the pre-training")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = mnist_splits()
    print(f"settings {TRANSFER}, {args.per_class} per class, {args.threads} threads, torch {torch.__version__}")
    shipped = load_digit_backbone()
    if not args.no_pretrain:
        start, cpu = time.perf_counter(), time.process_time()
        model = pretrain_backbone()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        same = all(torch.equal(v, shipped[k]) for k, v in model.state_dict().items())
        acc = accuracy(model, select_digits(splits["test"], range(5)))
        print(f"pre-training: {wall:.1f} s ({cpu:.1f} s CPU), test accuracy on digits 0-4 {acc:.3f}, "
              f"bit-exact with the shipped file: {same}")
    train = select_digits(splits["train"], range(5, 10))
    evaluation = {"val": select_digits(splits["val"], range(5, 10)), "test": select_digits(splits["test"], range(5, 10))}
    print(f"\n{'seed':>4} " + " ".join(f"{n[:11] + ' ' + s:>16}" for n in NAMES for s in evaluation) + f" {'train s':>8}")
    rows = []
    for seed in args.seeds:
        labelled = few_shot(train, args.per_class, seed=seed)
        seed_everything(seed)
        models = transfer_models(shipped, num_classes=5)
        row, start = {}, time.perf_counter()
        for name in NAMES:
            seed_everything(seed)
            fit(models[name], labelled, TRANSFER["epochs"], TRANSFER["lr"][name], TRANSFER["batch_size"], device="cpu")
            for split, data in evaluation.items():
                row[name, split] = accuracy(models[name], data)
        rows.append(row)
        print(f"{seed:>4} " + " ".join(f"{row[n, s]:>16.3f}" for n in NAMES for s in evaluation)
              + f" {time.perf_counter() - start:>8.2f}")
    for split in evaluation:
        for name in NAMES:
            values = [r[name, split] for r in rows]
            print(f"{split:4s} {name:18s} min {min(values):.3f}  mean {sum(values) / len(values):.3f}  max {max(values):.3f}")
        gaps = [min(r["feature_extraction", split], r["fine_tuning", split]) - r["scratch", split] for r in rows]
        print(f"{split:4s} transferred minus scratch (the lower of the two): min {min(gaps):+.3f}, "
              f"mean {sum(gaps) / len(gaps):+.3f}; below zero on {sum(g < 0 for g in gaps)} of {len(gaps)} seeds")


if __name__ == "__main__":
    main()
