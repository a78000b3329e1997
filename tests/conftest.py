from __future__ import annotations

import sys
from pathlib import Path

import pytest

from autograder.config import load_course

ROOT = Path(__file__).resolve().parent.parent


def _torch_modes() -> int:
    """Modes on torch's torch-function stack (0 before torch is imported)."""
    torch = sys.modules.get("torch")
    return torch._C._len_torch_function_stack() if torch is not None else 0


@pytest.fixture(autouse=True)
def no_torch_mode_left_behind():
    """A probe run in this process that left a torch-function mode behind (a DeviceContext, a
    recorder of calls) would slow and skew every later test of this pytest worker, and every
    later cell of a real notebook: the test that leaves one fails, and the mode is removed."""
    before = _torch_modes()
    yield
    left = _torch_modes() - before
    if left > 0:
        import torch
        torch.set_default_device(None)           # a default device left set (its DeviceContext)
        while _torch_modes() > before:
            torch._C._pop_torch_function_stack()
        pytest.fail(f"{left} torch-function mode(s) left on the stack (torch.device(...) or a TorchFunctionMode "
                    "not exited)")


@pytest.fixture(scope="session")
def course():
    return load_course(ROOT / "course.yml")


def full_marks(result) -> bool:
    """Every point the grader gives by itself: the written answers (graded by a person) aside."""
    return result.score == result.max_score - result.pending_points


def lost_checks(result) -> dict[str, str]:
    """{check: message} of every check the result lost (a written answer waiting for a person is not lost)."""
    return {c.name: c.message for c in result.checks if not c.passed and not c.pending}
