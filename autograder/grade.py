"""`course grade`: every notebook of a class, restored, executed, scored per check.

Layout as nbgrader's: `SUBMISSIONS/<student>/<lab>.ipynb`. One broken submission never stops
the class: a file that is not a notebook, a cell that raises or loops, a kernel that dies — each
becomes 0 points on what it broke, with a message, and grading goes on. A check passes when its
test cell runs without an error; output on stderr (a torch warning) never costs points.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from nbgrader.utils import is_grade, is_solution

from .config import Course, CourseError, Lab
from .execute import Outcome, run_notebook
from .forked import run_notebook_forked, warm_up
from .notebook import SubmissionError, load_source, read_submission, restore
from .scoring import predict_all, resolve_dataset, scored_checks, scoring_labels

MAX_MESSAGE = 400
ENGINES = ("fork", "kernel")    # fork: warm worker, fresh child per notebook; kernel: a Jupyter kernel each
DEVICES = ("auto", "cpu", "cuda")
GPU_CHECK = "gpu"               # in every lab that trains: where the graded training ran


def cuda_available() -> bool:
    """Whether this machine has CUDA, asked through NVML so that the process stays fork-safe."""
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    import torch
    return torch.cuda.is_available()


def resolve_device(requested: str | None) -> str:
    """`--device`: "auto" (or None) is cuda where this machine has it, else cpu."""
    requested = requested or "auto"
    if requested not in DEVICES:
        raise CourseError(f"unknown device {requested!r} (choose {', '.join(DEVICES)})")
    if requested == "auto":
        return "cuda" if cuda_available() else "cpu"
    if requested == "cuda" and not cuda_available():
        raise CourseError("--device cuda: this machine has no CUDA device (use --device auto or cpu)")
    return requested


@dataclass
class CheckResult:
    name: str
    points: float
    max_points: float
    message: str = ""          # empty when the check passed

    @property
    def passed(self) -> bool:
        return self.points == self.max_points


@dataclass
class Result:
    student: str
    lab: str
    path: str
    checks: list[CheckResult]
    notes: list[str] = field(default_factory=list)   # about the submission as a whole
    seconds: float = 0.0                             # restore + run + score, in the worker
    compute_seconds: float = 0.0                     # of which the notebook's own cells ran
    grader_error: str = ""                           # the grader itself failed (not the student)
    fingerprint: str = ""                            # of the submission and what graded it

    @property
    def score(self) -> float:
        return sum(c.points for c in self.checks)

    @property
    def max_score(self) -> float:
        return sum(c.max_points for c in self.checks)

    def to_dict(self) -> dict:
        return {**asdict(self), "score": self.score, "max_score": self.max_score}

    @classmethod
    def from_dict(cls, d: dict) -> "Result":
        d = {k: v for k, v in d.items() if k not in ("score", "max_score")}
        return cls(**{**d, "checks": [CheckResult(**c) for c in d["checks"]]})


def _one_line(text: str) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)           # ANSI colours from IPython
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    short = " / ".join(lines[:2])
    return short if len(short) <= MAX_MESSAGE else short[: MAX_MESSAGE - 1] + "…"


def _describe(outcome: Outcome) -> str:
    if outcome.status == "timeout":
        return f"timed out: {outcome.evalue} (an infinite loop, or too much work)"
    if outcome.status == "memory":
        return f"stopped: {outcome.evalue}"
    if outcome.status == "died":
        return "the kernel died while running this cell (os._exit, a crash, or out of memory)"
    if outcome.status == "not_run":
        return f"not run: {outcome.evalue}"
    if outcome.ename == "AssertionError":
        return _one_line(outcome.evalue) or "AssertionError (no message)"
    if outcome.ename == "NotImplementedError":
        return "not answered yet: an answer cell still raises NotImplementedError"
    return _one_line(f"{outcome.ename}: {outcome.evalue}")


def _gpu_policy(check: CheckResult, outcome: Outcome, policy: str, device: str) -> CheckResult:
    """The GPU execution check under course.yml's policy (grading.gpu) on this grader's device."""
    if policy == "ignore":
        return CheckResult(check.name, check.max_points, check.max_points, "not graded (grading.gpu: ignore)")
    if outcome.status != "error" or outcome.ename != "Skipped":
        return check
    if device != "cpu":
        return CheckResult(check.name, 0, check.max_points, f"GPU execution: expected the training on {device}, got a "
                           "skipped check — use device = get_device() and do not override COURSE_DEVICE")
    if policy == "required":
        return CheckResult(check.name, 0, check.max_points,
                           "skipped: no CUDA on this grader — course.yml requires GPU execution (grading.gpu: required)")
    return CheckResult(check.name, check.max_points, check.max_points,
                       "skipped: no CUDA on this grader (grading.gpu: preferred)")


def score(nb, outcomes: dict[int, Outcome], lab: Lab, gpu_policy: str = "preferred",
          device: str = "cpu") -> list[CheckResult]:
    """Points per check of `lab` from the executed notebook's test cells; the GPU check's points
    follow `gpu_policy` on a grader whose device is `device`."""
    results: dict[str, CheckResult] = {}
    first_failure = ""           # the first failing non-test cell, as context for later errors
    for index, cell in enumerate(nb.cells):
        outcome = outcomes.get(index)
        if outcome is None:
            continue
        meta = cell.metadata.get("nbgrader", {})
        if is_grade(cell) and not is_solution(cell):
            name = meta["grade_id"].removeprefix("check_")
            if name not in lab.checks or name in results:
                continue
            max_points = lab.checks[name]
            if outcome.status == "ok":
                results[name] = CheckResult(name, max_points, max_points)
            else:
                message = _describe(outcome)
                if outcome.status == "error" and outcome.ename not in ("AssertionError", "NotImplementedError") and first_failure:
                    message += f" (earlier, {first_failure})"
                results[name] = CheckResult(name, 0, max_points, message)
            if name == GPU_CHECK:
                results[name] = _gpu_policy(results[name], outcome, gpu_policy, device)
        elif outcome.status != "ok" and not first_failure:
            first_failure = f"cell {meta.get('grade_id', index)!r} failed: {_describe(outcome)}"
    # a check whose test cell never ran (absent from the source) is a grader bug, not 0 silently
    return [results.get(n) or CheckResult(n, 0, p, "not run: the check cell is missing from the source notebook")
            for n, p in lab.checks.items()]


def fingerprint(path: Path, lab: Lab, course: Course, device: str = "cpu") -> str:
    """Changes when the submission, the lab's source notebook, its points and thresholds, the GPU
    policy, the hidden split or the device change: a result with the same fingerprint need not
    be graded again."""
    h = hashlib.sha256()
    for p in (path, course.solution_path(lab.id)):
        try:
            h.update(p.read_bytes())
        except OSError:
            h.update(b"<unreadable>")
    h.update(json.dumps([lab.checks, lab.thresholds, course.gpu, course.data_hidden, device], sort_keys=True).encode())
    return h.hexdigest()


def run_submission(path: Path, lab: Lab, course: Course, student: str = "",
                   cell_timeout: float | None = None, notebook_timeout: float | None = None,
                   threads: int | None = None, engine: str = "fork",
                   device: str = "cpu") -> tuple[Result, dict[str, list[int] | str]]:
    """Execute one submitted notebook of `lab` and score its cells; also return the predictions
    of the models it submitted for scoring (see `apply_scores`). Never raises for a bad submission."""
    start = time.monotonic()
    student = student or path.parent.name
    source_path = course.solution_path(lab.id)
    if not source_path.exists():
        raise CourseError(f"{source_path}: missing source notebook for lab {lab.id!r} (run `course build`)")
    stamp = fingerprint(path, lab, course, device)
    try:
        submission = read_submission(path)
    except SubmissionError as e:
        checks = [CheckResult(n, 0, p, f"not graded: {e}") for n, p in lab.checks.items()]
        return Result(student, lab.id, str(path), checks, [str(e)], round(time.monotonic() - start, 2), fingerprint=stamp), {}
    nb, notes = restore(submission, load_source(source_path))
    limits = (cell_timeout or course.cell_timeout, notebook_timeout or course.notebook_timeout)
    with tempfile.TemporaryDirectory(prefix="course-scoring-") as scoring_dir:
        env = {"COURSE_GRADING": "1", "COURSE_SEED": str(course.seed), "COURSE_DEVICE": device,
               "COURSE_SCORING_DIR": scoring_dir}
        if course.data_root:
            env["COURSE_DATA"] = str(course.data_root_path)
        if threads:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        if engine == "kernel":
            outcomes = run_notebook(nb, *limits, env)
        else:
            outcomes = run_notebook_forked(nb, *limits, env, threads, course.memory_mb, notes)
        predictions = predict_all(Path(scoring_dir), course, limits[0], course.memory_mb, threads, device)
    checks = score(nb, outcomes, lab, course.gpu, device)
    compute = round(sum(o.seconds for o in outcomes.values()), 2)
    return Result(student, lab.id, str(path), checks, notes, round(time.monotonic() - start, 2), compute,
                  fingerprint=stamp), predictions


def apply_scores(result: Result, predictions: dict[str, list[int] | str], course: Course, lab: Lab) -> Result:
    """Finish the scored checks of `result` (see autograder.scoring): a check whose cell passed
    gets its points only if the submitted model's predictions reach the lab's threshold. Runs
    in the process that called `course grade`, the only one that reads the test labels."""
    from .checks import at_least, submission_stem
    by_name = {c.name: c for c in result.checks}
    for name, spec in scored_checks(lab.id).items():
        check = by_name.get(name)
        if check is None or not check.passed:
            continue                        # the cell failed: its message says why
        dataset = resolve_dataset(spec, course)
        key = spec.threshold.format(dataset=dataset)
        what = f"{spec.model} accuracy on the hidden test split"
        if key not in lab.thresholds:
            raise CourseError(f"{course.path}: labs.{lab.id}.thresholds.{key}: missing (check {name!r} is scored against it)")
        threshold = lab.thresholds[key]
        got = predictions.get(submission_stem(spec.model, dataset))
        message = ""
        if got is None:
            message = f"{what}: expected a model submitted by the check cell, got none — do not delete files the grader writes"
        elif isinstance(got, str):
            message = f"{what}: expected {at_least(threshold)}, got {got} — {spec.crash_hint}"
        else:
            labels = scoring_labels(dataset, course)
            if len(got) != len(labels):
                message = f"{what}: expected {len(labels)} predictions, got {len(got)} — the model must keep the batch size"
            else:
                accuracy = float(np.mean(np.asarray(got) == labels))
                if accuracy < threshold:
                    message = f"{what}: expected {at_least(threshold)}, got {accuracy:.3f} — {spec.low_hint}"
                else:
                    check.message = f"accuracy {accuracy:.3f} on the hidden test split ({at_least(threshold)})"
        if message:
            check.points, check.message = 0, message
    return result


def grade_notebook(path: Path, lab: Lab, course: Course, student: str = "",
                   cell_timeout: float | None = None, notebook_timeout: float | None = None,
                   threads: int | None = None, engine: str = "fork", device: str = "cpu") -> Result:
    """Grade one submitted notebook of `lab` (run, then score). Never raises for a bad submission."""
    result, predictions = run_submission(path, lab, course, student, cell_timeout, notebook_timeout, threads,
                                         engine, device)
    return apply_scores(result, predictions, course, lab)


def find_submissions(root: Path, course: Course, lab_ids: list[str] | None) -> tuple[list[tuple[str, Lab, Path]], list[str]]:
    """(student, lab, path) for every `root/<student>/<lab>.ipynb` of the selected labs, and
    warnings for notebooks whose name is no lab."""
    if not root.is_dir():
        raise CourseError(f"{root}: no such submissions folder (expected {root}/<student>/<lab>.ipynb)")
    labs = {lab.id: lab for lab in course.select(lab_ids)}
    known = {lab.id for lab in course.labs}
    found, warnings = [], []
    for student_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for nb_path in sorted(student_dir.glob("*.ipynb")):
            if nb_path.stem in labs:
                found.append((student_dir.name, labs[nb_path.stem], nb_path))
            elif nb_path.stem not in known:
                warnings.append(f"skipped {student_dir.name}/{nb_path.name}: no lab {nb_path.stem!r} in course.yml")
    if not found:
        which = ", ".join(labs) if lab_ids else "any lab"
        raise CourseError(f"{root}: no submissions for {which} (expected {root}/<student>/<lab>.ipynb)")
    return found, warnings


def _grade_job(args: tuple) -> tuple[dict, dict]:
    student, lab_id, path, course, cell_timeout, notebook_timeout, threads, engine, device = args
    try:
        result, predictions = run_submission(Path(path), course.lab(lab_id), course, student, cell_timeout,
                                             notebook_timeout, threads, engine, device)
    except Exception as e:  # a grader bug: record it on the submission, keep the class going
        return _grader_error(student, lab_id, path, course, e).to_dict(), {}
    return result.to_dict(), predictions


def _grader_error(student: str, lab_id: str, path: str, course: Course, e: Exception) -> Result:
    lab = course.lab(lab_id)
    checks = [CheckResult(n, 0, p, "not graded: grader error") for n, p in lab.checks.items()]
    return Result(student, lab_id, path, checks, grader_error=f"{type(e).__name__}: {e}")


def grade_class(root: Path, course: Course, lab_ids: list[str] | None = None, jobs: int | None = None,
                cell_timeout: float | None = None, notebook_timeout: float | None = None,
                on_result=None, engine: str = "fork",
                done: dict[tuple[str, str], Result] | None = None,
                device: str | None = None) -> tuple[list[Result], list[str]]:
    """Grade every submission under `root` with `jobs` worker processes; `on_result(result)` is
    called as soon as each one is known. A submission whose result is in `done` with the same
    fingerprint is not graded again. `device`: where notebooks run ("auto": cuda if present).
    Returns the results in submission order and warnings."""
    if engine not in ENGINES:
        raise CourseError(f"unknown engine {engine!r} (choose {' or '.join(ENGINES)})")
    device = resolve_device(device)
    found, warnings = find_submissions(root, course, lab_ids)
    results: dict[int, Result] = {}
    todo = []
    for i, (student, lab, path) in enumerate(found):
        old = (done or {}).get((student, lab.id))
        if old is not None and not old.grader_error and old.fingerprint == fingerprint(path, lab, course, device):
            results[i] = old
        else:
            todo.append(i)
    if not todo:
        return [results[i] for i in range(len(found))], warnings
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo)))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    tasks = {i: (found[i][0], found[i][1].id, str(found[i][2]), course, cell_timeout, notebook_timeout, threads, engine,
                 device) for i in todo}
    # workers start clean (spawn) and, for the fork engine, import torch & co. once each
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=warm_up if engine == "fork" else None) as pool:
        futures = {pool.submit(_grade_job, t): i for i, t in tasks.items()}
        for future in as_completed(futures):
            data, predictions = future.result()
            result = Result.from_dict(data)
            if not result.grader_error:
                try:   # the labels are read here, in this process, never in a worker or a notebook
                    apply_scores(result, predictions, course, course.lab(result.lab))
                except Exception as e:  # noqa: BLE001 — a grader bug: keep the class going
                    result = _grader_error(result.student, result.lab, result.path, course, e)
            results[futures[future]] = result
            if on_result:
                on_result(result)
    return [results[i] for i in range(len(found))], warnings
