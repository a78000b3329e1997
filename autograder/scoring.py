"""Accuracy scored outside the student's process.

While grading, a scored check's hidden cell only saves the student's model (its class by value
with cloudpickle, and its weights) into the sandbox's scoring folder (`COURSE_SCORING_DIR`).
After the notebook has run and every process it started is gone, the sandboxed worker
(autograder.worker) asks the grading process for the test images (`scoring_images`: images
only, sent over its pipe) and forks a scorer that rebuilds the model and returns the predicted
classes, under a time and a memory limit. The labels never enter a sandbox: `scoring_labels` is
read by the process that runs `course grade`, and the accuracy is counted there. Patching torch
in the notebook, or a model that misbehaves in the scorer, can change only the predictions,
never how they are counted.
"""
from __future__ import annotations

import importlib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .config import Course
from .worker import MAX_MODELS  # noqa: F401  (saved models scored per submission)

if TYPE_CHECKING:
    from .checks import Scored


def scored_checks(lab_id: str) -> dict[str, Scored]:
    """`SCORED` of `autograder.checks.<lab_id>`: check name → how it is scored. A module whose
    source never names SCORED declares none and is not imported (check modules import torch: 4 s
    of every `course grade` whose labs score no accuracy, in a process that needs no torch)."""
    if not _names_scored(lab_id):
        return {}
    return dict(getattr(importlib.import_module(f"autograder.checks.{lab_id}"), "SCORED", {}))


@lru_cache(maxsize=None)
def _names_scored(lab_id: str) -> bool:
    try:            # (find_spec would import autograder.checks, and torch with it)
        return "SCORED" in (Path(__file__).parent / "checks" / f"{lab_id}.py").read_text(encoding="utf-8")
    except (OSError, ValueError):          # no source to read: import it
        return True


def resolve_dataset(spec: Scored, course: Course) -> str:
    if spec.dataset == "capstone":
        from .data import capstone_dataset
        return capstone_dataset(course.data_root_path)
    return spec.dataset


def _read_idx(path: Path) -> np.ndarray:
    data = path.read_bytes()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _hidden_file(course: Course, kind: str) -> Path:
    return course.hidden_path / "MNIST" / "raw" / f"t10k-{kind}-idx{3 if kind == 'images' else 1}-ubyte"


def scoring_images(dataset: str, course: Course):
    """The test images of `dataset` as float32 [N, C, H, W] in [0, 1] (the scorer calls this)."""
    import torch

    from .data import DATASETS, _mnist_split_tensors, load_torchvision
    if dataset == "mnist":
        if course.hidden_path:
            return torch.from_numpy(_read_idx(_hidden_file(course, "images")).astype(np.float32) / 255.0)[:, None]
        return _mnist_split_tensors(0)["test"][0]
    return load_torchvision(DATASETS[dataset][0], course.data_root_path, train=False).tensors[0]


@lru_cache(maxsize=8)
def _labels(dataset: str, hidden: Path | None, root: Path | None) -> np.ndarray:
    from .data import DATASETS, _mnist_split_tensors, load_torchvision
    if dataset == "mnist":
        if hidden:
            return _read_idx(hidden / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").astype(np.int64)
        return _mnist_split_tensors(0)["test"][1].numpy()
    return load_torchvision(DATASETS[dataset][0], root, train=False).tensors[1].numpy()


def scoring_labels(dataset: str, course: Course) -> np.ndarray:
    """The test labels of `dataset`: only the process that runs `course grade` reads them."""
    return _labels(dataset, course.hidden_path, course.data_root_path)
