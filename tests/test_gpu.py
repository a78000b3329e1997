"""The GPU execution check and course.yml's policy, tested on CPU: the record of where training
ran, the check's verdict with and without CUDA, the policy's points, and `--device`. (A notebook
graded under `gpu: required` without CUDA: tests/test_integrity.py.)"""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from autograder import runtime
from autograder.checks import Skipped, expect_gpu_execution
from autograder.config import CourseError
from autograder.execute import Outcome
from autograder.grade import CheckResult, _gpu_policy, cuda_available, resolve_device
from tests.conftest import ROOT


@pytest.fixture(autouse=True)
def fresh_record(monkeypatch):
    runtime.reset_training_devices()
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    monkeypatch.delenv("COURSE_GRADING", raising=False)
    yield
    runtime.reset_training_devices()


def _train_step(model, x):
    model.train()
    model(x).sum().backward()


def test_only_training_mode_forward_passes_with_gradients_are_recorded():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    model.eval()
    model(torch.zeros(2, 4))
    with torch.no_grad():
        model.train()
        model(torch.zeros(2, 4))
    assert runtime.training_devices(model) == {"parameters": set(), "batches": set()}
    _train_step(model, torch.zeros(2, 4))
    assert runtime.training_devices(model) == {"parameters": {"cpu"}, "batches": {"cpu"}}
    other = nn.Linear(4, 2)
    assert runtime.training_devices(other)["batches"] == set()     # per model, not global


def test_an_untrained_model_fails():
    with pytest.raises(AssertionError, match="expected a training step of the model in this notebook, got none recorded"):
        expect_gpu_execution("Net training", nn.Linear(4, 2))
    with pytest.raises(AssertionError, match="expected the trained model, got str"):
        expect_gpu_execution("Net training", "model")


def test_without_cuda_the_check_is_skipped_while_grading_and_a_note_otherwise(monkeypatch, capsys):
    model = nn.Linear(4, 2)
    _train_step(model, torch.zeros(2, 4))
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    expect_gpu_execution("Net training", model)                      # a student's machine: a note
    assert "skipped: no CUDA on this machine" in capsys.readouterr().out
    monkeypatch.setenv("COURSE_GRADING", "1")
    with pytest.raises(Skipped, match="no CUDA on this grader"):
        expect_gpu_execution("Net training", model)


def test_with_cuda_offered_the_model_and_batches_must_have_been_there(monkeypatch):
    """COURSE_DEVICE=cuda as the grader sets it; the record says where training ran."""
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    model = nn.Linear(4, 2)
    _train_step(model, torch.zeros(2, 4))                            # trained on the CPU
    with pytest.raises(AssertionError, match="expected parameters and batches on cuda, got parameters on cpu, batches on cpu"):
        expect_gpu_execution("Net training", model)
    runtime._TRAINED[model] = {"cuda"}                               # as if its batches were on cuda
    monkeypatch.setattr(runtime, "training_devices", lambda m=None: {"parameters": {"cuda"}, "batches": {"cuda"}})
    expect_gpu_execution("Net training", model)


SKIPPED = Outcome("error", "Skipped", "no CUDA on this grader")
FAILED = Outcome("error", "AssertionError", "Net training device: expected ...")


@pytest.mark.parametrize("outcome, policy, device, points, message", [
    (SKIPPED, "preferred", "cpu", 1, "skipped: no CUDA on this grader (grading.gpu: preferred)"),
    (SKIPPED, "required", "cpu", 0, "skipped: no CUDA on this grader — course.yml requires GPU execution (grading.gpu: required)"),
    (SKIPPED, "ignore", "cpu", 1, "not graded (grading.gpu: ignore)"),
    (SKIPPED, "preferred", "cuda", 0, "GPU execution: expected the training on cuda, got a skipped check"),
    (FAILED, "required", "cuda", 0, "Net training device: expected ..."),
    (FAILED, "ignore", "cuda", 1, "not graded (grading.gpu: ignore)"),
    (Outcome("ok"), "required", "cuda", 1, ""),
])
def test_the_policy_decides_the_points(outcome, policy, device, points, message):
    raw = CheckResult("gpu", 1 if outcome.status == "ok" else 0, 1, "" if outcome.status == "ok" else outcome.evalue)
    check = _gpu_policy(raw, outcome, policy, device)
    assert check.points == points
    assert check.message.startswith(message)


def test_device_choice():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if cuda_available() else "cpu")
    with pytest.raises(CourseError, match="unknown device"):
        resolve_device("tpu")
    if not cuda_available():
        with pytest.raises(CourseError, match="no CUDA device"):
            resolve_device("cuda")


@pytest.mark.skipif(cuda_available(), reason="this machine has CUDA")
def test_cli_device_cuda_without_cuda_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "training.ipynb").write_text("{}")
    out = subprocess.run([sys.executable, "-m", "autograder.cli", "grade", str(tmp_path), "--device", "cuda",
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["course: error: --device cuda: this machine has no CUDA device (use --device auto or cpu)"]
