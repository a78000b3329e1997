"""Accuracy scored outside the student's process.

While grading, a scored check's hidden cell only saves the student's model (its class by value
with cloudpickle, and its weights) into a folder of the grader's (`COURSE_SCORING_DIR`). After
the notebook has run, `predict_all` (in the grading worker) forks a scorer per saved model: it
rebuilds the model, receives the test images only and returns the predicted classes, under a
time and a memory limit. The labels never enter that process or the student's: `scoring_labels`
is read by the process that runs `course grade` (which forks nothing), and the accuracy is
counted there. Patching torch in the notebook, or a model that misbehaves in the scorer, can
change only the predictions, never how they are counted.

Nothing here runs a torch op in the worker itself: forking after torch's thread pools start is
unsafe, so images are loaded and the model runs only in the scorer.
"""
from __future__ import annotations

import importlib
import os
import select
import signal
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from .checks import Scored
from .config import Course
from .forked import _rss_mb

MAX_MODELS = 4         # saved models scored per submission (a submission cannot flood the scorer)
BATCH = 250


def scored_checks(lab_id: str) -> dict[str, Scored]:
    """`SCORED` of `autograder.checks.<lab_id>`: check name → how it is scored."""
    return dict(getattr(importlib.import_module(f"autograder.checks.{lab_id}"), "SCORED", {}))


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


def predict_all(folder: Path, course: Course, timeout: float, memory_mb: float | None, threads: int | None,
                device: str) -> dict[str, list[int] | str]:
    """Predictions of every model saved in `folder` (`<name>.<dataset>.pt`), by file stem: a list
    of class indices, or one line saying why there are none."""
    from .data import DATASETS
    out: dict[str, list[int] | str] = {}
    for path in sorted(folder.glob("*.pt"))[:MAX_MODELS]:
        dataset = path.stem.rsplit(".", 1)[-1]
        if dataset in DATASETS:
            out[path.stem] = _predict(path, dataset, course, timeout, memory_mb, threads, device)
    return out


def _scorer(path: Path, dataset: str, course: Course, threads: int | None, device: str, write_fd: int) -> None:
    """Runs in the forked scorer: rebuild the model, predict the test images, write the classes."""
    os.setpgid(0, 0)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    import warnings
    warnings.simplefilter("ignore")
    import torch
    if threads:
        torch.set_num_threads(threads)
    try:
        images = scoring_images(dataset, course)
        model = torch.load(path, map_location=device, weights_only=False)
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"the saved object is a {type(model).__name__}, not an nn.Module")
        model.eval()
        classes = []
        with torch.no_grad():
            for start in range(0, len(images), BATCH):
                batch = images[start:start + BATCH]
                logits = model(batch.to(device))
                if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != len(batch):
                    got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                    raise ValueError(f"logits of shape ({len(batch)}, classes) expected, got {got}")
                classes.append(logits.argmax(dim=1).cpu().numpy().astype(np.int64))
        payload = b"OK" + np.concatenate(classes).tobytes()
    except BaseException as err:  # noqa: BLE001 — the student's model may raise anything
        text = (str(err).strip().splitlines() or [""])[0]
        payload = b"ER" + f"{type(err).__name__}: {text}"[:300].encode()
    with os.fdopen(write_fd, "wb") as out:
        out.write(payload)


def _predict(path: Path, dataset: str, course: Course, timeout: float, memory_mb: float | None,
             threads: int | None, device: str) -> list[int] | str:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover  (runs in the scorer)
        try:
            os.close(read_fd)
            _scorer(path, dataset, course, threads, device, write_fd)
        finally:
            os._exit(0)
    os.close(write_fd)
    chunks, start, error = [], time.monotonic(), ""
    try:
        while True:
            if time.monotonic() - start > timeout:
                error = f"scoring ran past its {timeout:g} s limit"
                break
            if memory_mb and _rss_mb(pid) > memory_mb:
                error = f"scoring used more than {memory_mb:.0f} MB of memory"
                break
            if select.select([read_fd], [], [], 0.1)[0]:
                chunk = os.read(read_fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(read_fd)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
    data = b"".join(chunks)
    if error:
        return error
    if data.startswith(b"OK"):
        return np.frombuffer(data[2:], dtype=np.int64).tolist()
    if data.startswith(b"ER"):
        return data[2:].decode(errors="replace")
    return "the scorer died while running the model (a crash, or out of memory)"
