from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.config import load_course

ROOT = Path(__file__).resolve().parent.parent


def _torch_modes() -> int:
    """Modes on torch's torch-function stack (0 before torch is imported)."""
    torch = sys.modules.get("torch")
    return torch._C._len_torch_function_stack() if torch is not None else 0


def _torch_state() -> dict:
    """torch's process-wide switches that a check or a probe run here could leave changed."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    return {"default dtype": torch.get_default_dtype(), "grad mode": torch.is_grad_enabled(),
            "inference mode": torch.is_inference_mode_enabled(),
            "deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
            "anomaly detection": torch.is_anomaly_enabled()}    # (threads: fixtures set them on purpose)


@pytest.fixture(autouse=True)
def torch_left_as_found():
    """A probe run in this process that left a torch-function mode behind (a DeviceContext, a
    recorder of calls), grad mode off or another dtype on would skew every later test of this
    pytest worker, and every later cell of a real notebook: the test that leaves one fails (and
    the modes are removed)."""
    modes, state = _torch_modes(), _torch_state()
    yield
    left = _torch_modes() - modes
    if left > 0:
        import torch
        torch.set_default_device(None)           # a default device left set (its DeviceContext)
        while _torch_modes() > modes:
            torch._C._pop_torch_function_stack()
        pytest.fail(f"{left} torch-function mode(s) left on the stack (torch.device(...) or a TorchFunctionMode "
                    "not exited)")
    after = _torch_state()
    changed = {k: (state[k], after[k]) for k in state if k in after and state[k] != after[k]}
    if changed:
        pytest.fail(f"torch state left changed: {changed}")


@pytest.fixture(scope="session", autouse=True)
def kept_workers():
    """The grading runs of one pytest process keep their warm sandboxed workers for the next run
    (autograder.sandbox.WorkerPool): the many small classes of the suite warm torch up once per
    kind of worker, not once per run. `course grade` in a subprocess keeps none."""
    from autograder import sandbox
    pool = sandbox.keep_workers()
    yield pool
    pool.close()
    sandbox.POOL = None


@pytest.fixture
def fresh_workers(monkeypatch):
    """Workers launched for this test's runs alone, and none kept from earlier ones alive (a test
    that kills, stops, patches or counts them)."""
    from autograder import sandbox
    if sandbox.POOL is not None:
        sandbox.POOL.close()
    monkeypatch.setattr(sandbox, "POOL", None)


@pytest.fixture(scope="session")
def course():
    return load_course(ROOT / "course.yml")


def with_late_policy(course, lab_id: str):
    """(the lab, `course` with only it): due 2026-12-10 15:00 UTC, each started day late costing
    10% of the points earned, all of them past 3 days."""
    import dataclasses
    import datetime as dt
    lab = dataclasses.replace(course.lab(lab_id), due=dt.datetime(2026, 12, 10, 15, 0, tzinfo=dt.timezone.utc))
    return lab, dataclasses.replace(course, labs=(lab,), late_per_day=0.1, late_max_days=3)


def course_cli(args: list[str]) -> subprocess.CompletedProcess:
    """`course ARGS` run in this process, where its kept workers and judges are warm (a
    subprocess warms up its own: seconds of CPU), its output taken as a pipe takes it: strict
    UTF-8, so that printing a lone surrogate raises as it would there."""
    from autograder.cli import main
    streams = [io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True) for _ in range(2)]
    with contextlib.redirect_stdout(streams[0]), contextlib.redirect_stderr(streams[1]):
        rc = main(args)
    return subprocess.CompletedProcess(args, rc, *(s.buffer.getvalue().decode() for s in streams))


def full_marks(result) -> bool:
    """Every point the grader gives by itself: the written answers (graded by a person) aside."""
    return result.score == result.max_score - result.pending_points


def lost_checks(result) -> dict[str, str]:
    """{check: message} of every check the result lost (a written answer waiting for a person is not lost)."""
    return {c.name: c.message for c in result.checks if not c.passed and not c.pending}
