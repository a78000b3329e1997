"""`course grade`: every notebook of a class, restored, executed, scored per check.

Layouts: `SUBMISSIONS/<student>/<lab>.ipynb`, or nbgrader's collected
`submitted/<student>/<lab>/<lab>.ipynb` (find_submissions). One broken submission never stops
the class: a file that is not a notebook, a cell that raises or loops, a kernel that dies — each
becomes 0 points on what it broke, with a message, and grading goes on. A check passes when its
test cell runs without an error; output on stderr (a torch warning) never costs points.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from . import sandbox
from .config import Course, CourseError, Lab
from .i18n import Domain
from .i18n import gettext as _
from .i18n import set_language
from .notebook import SubmissionError, cell_kind, is_grade, is_solution, load_source, read_capped, read_submission, restore
from .results import MAX_OUTPUTS, CheckResult, Outcome, Result, capped_outputs
from .sandbox import RuntimeFolder, SandboxOptions, Worker, WorkerLost, launched, require_sandbox
from .scoring import MAX_MODELS, resolve_dataset, scored_checks, scoring_images, scoring_labels

MAX_MESSAGE = 400
UNSANDBOXED = "graded WITHOUT a sandbox (--unsafe-no-sandbox): the submission ran with the grader's rights"
ENGINES = ("fork", "kernel")    # fork: warm worker, fresh child per notebook; kernel: a Jupyter kernel each
DEVICES = ("auto", "cpu", "cuda")
GPU_CHECK = "gpu"               # in every lab that trains: where the graded training ran


def cuda_available() -> bool:
    """Whether this machine has CUDA, asked through NVML so that the process stays fork-safe.
    Without an NVIDIA device node (or WSL's /dev/dxg) there is none, and torch is not imported."""
    if not any(os.path.exists(node) for node in ("/dev/nvidiactl", "/dev/dxg")):
        return False
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


def printable(text: str) -> str:
    """`text` without terminal escape sequences or other control characters (newlines kept)."""
    text = re.sub(r"\x1b\[[0-9;?]*[ -/]*[@-~]", "", text)       # ANSI sequences (IPython's colours, cursor moves)
    return re.sub(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", " ", text)


def _one_line(text: str) -> str:
    text = printable(text)
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    short = " / ".join(lines[:2])
    return short if len(short) <= MAX_MESSAGE else short[: MAX_MESSAGE - 1] + "…"


def _describe(outcome: Outcome) -> str:
    if outcome.status == "timeout":
        return _("timed out: {why} (an infinite loop, or too much work)").format(why=outcome.evalue)
    if outcome.status == "memory":
        return _("stopped: {why}").format(why=outcome.evalue)
    if outcome.status == "died":
        return _("the kernel died while running this cell (os._exit, a crash, or out of memory)")
    if outcome.status == "not_run":
        return _("not run: {why}").format(why=outcome.evalue)
    if outcome.ename == "AssertionError":
        return _one_line(outcome.evalue) or _("AssertionError (no message)")
    if outcome.ename == "NotImplementedError":
        return _("not answered yet: an answer cell still raises NotImplementedError")
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
          device: str = "cpu", records: dict[int, tuple[dict, bytes]] | None = None,
          facts: dict | None = None) -> list[CheckResult]:
    """Points per check of `lab` from the executed notebook's test cells; the GPU check's points
    follow `gpu_policy` on a grader whose device is `device`. With `records` (the probes'), a
    check cell that ran is judged here; a cell that timed out, died or never ran fails as such."""
    results: dict[str, CheckResult] = {}
    first_failure = ""           # the first failing non-test cell, as context for later errors
    deciding = _deciding_cells(nb, outcomes, lab)
    verdicts = {}
    if records is not None:      # every check cell that ran, judged at once, apart
        cells = [(i, nb.cells[i].source, name in lab.partial) for i, name in deciding.items()
                 if outcomes[i].status == "ok" or (outcomes[i].status == "error" and i in records)]
        from .judges import judge_apart
        verdicts = judge_apart(lab.id, cells, records, device, facts or {}) if cells else {}
    for index, cell in enumerate(nb.cells):
        outcome = outcomes.get(index)
        if outcome is None:
            continue
        if index in deciding:
            name = deciding[index]
            max_points = lab.checks[name]
            outcome, share = verdicts.get(index, (outcome, None))
            if outcome.status == "ok":
                results[name] = CheckResult(name, max_points, max_points)
            elif share:
                results[name] = CheckResult(name, round(max_points * share, 2), max_points, _describe(outcome))
            else:
                message = _describe(outcome)
                if outcome.status == "error" and outcome.ename not in ("AssertionError", "NotImplementedError") and first_failure:
                    message += f" (earlier, {first_failure})"
                results[name] = CheckResult(name, 0, max_points, message)
            if name == GPU_CHECK:
                results[name] = _gpu_policy(results[name], outcome, gpu_policy, device)
        elif not (is_grade(cell) and not is_solution(cell)) and outcome.status != "ok" and not first_failure:
            meta = cell.metadata.get("nbgrader", {})
            first_failure = f"cell {meta.get('grade_id', index)!r} failed: {_describe(outcome)}"
    # a check whose test cell never ran (absent from the source) is a grader bug, not 0 silently
    return [results.get(n) or CheckResult(n, 0, p, "not run: the check cell is missing from the source notebook")
            for n, p in lab.checks.items()] + written_answers(lab)


BY_HAND = "to be graded by hand"


def written_answers(lab: Lab, message: str = BY_HAND) -> list[CheckResult]:
    """The lab's written answers, not scored yet: a person scores them in formgrader, and the
    next `course grade` reads that score from the gradebook (pipeline.apply_hand_scores)."""
    return [CheckResult(n, 0, p, message, by_hand=True, pending=message == BY_HAND) for n, p in lab.written.items()]


def _deciding_cells(nb, outcomes: dict[int, Outcome], lab: Lab) -> dict[int, str]:
    """index → check name of the cell that decides each of the lab's checks: the first of its
    test cells that ran."""
    deciding: dict[int, str] = {}
    for index, cell in enumerate(nb.cells):
        if index in outcomes and is_grade(cell) and not is_solution(cell):
            name = cell.metadata["nbgrader"]["grade_id"].removeprefix("check_")
            if name in lab.checks and name not in deciding.values():
                deciding[index] = name
    return deciding


@lru_cache(maxsize=1)
def grader_digest() -> str:
    """Of the grader's own code (autograder/*.py, the checks and the compiled catalogs of their
    messages): a new grader regrades."""
    package = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted([*package.glob("*.py"), *package.glob("checks/*.py"), *package.glob("locale/*/LC_MESSAGES/*.mo")]):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def fingerprint(path: Path, lab: Lab, course: Course, device: str = "cpu", sandboxed: bool = True,
                draw: int = 0) -> str:
    """Changes when the submission, the lab's source notebook, its points and thresholds, the GPU
    policy, the hidden split, the device, the sandbox, the draw or the grader's code change: a
    result with the same fingerprint need not be graded again."""
    h = hashlib.sha256()
    try:          # as the grader reads it: a FIFO would block, a sparse 40 GB file fill the memory
        h.update(read_capped(path))
    except SubmissionError as e:
        h.update(f"<unreadable: {e}>".encode())
    try:
        h.update(course.solution_path(lab.id).read_bytes())
    except OSError:
        h.update(b"<unreadable>")
    h.update(json.dumps([lab.checks, lab.written, lab.thresholds, course.gpu, course.data_hidden, device, sandboxed,
                         grader_digest(), course.language, draw], sort_keys=True).encode())
    return h.hexdigest()


def submission_draw(draw: int, cells: list) -> int:
    """The draw one submission's checks use (autograder.checks.drawn): the grading run's `draw`
    mixed with the code the notebook runs. A notebook can read its own draw while it is graded
    (it runs beside its check process) and show it in its feedback; the draw is then worth
    nothing to any other submission, or to another version of the same one. 0 (the notebooks'
    own cases) stays 0."""
    if not draw:
        return 0
    digest = hashlib.blake2b(json.dumps([draw, cells]).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % ((1 << 31) - 1) + 1


def _job(nb, lab: Lab, course: Course, limits: tuple[float, float], threads: int | None, engine: str,
         device: str, draw: int, datasets: dict[str, str]) -> dict:
    """What the worker needs to run one notebook: plain data, no path of the grader's; the
    submission's own draw (submission_draw); the data sets whose test images the worker may ask
    for: those the lab's scored checks use (`datasets`, as `run_submission` resolved them)."""
    env = {"COURSE_GRADING": "1", "COURSE_SEED": str(course.seed), "COURSE_DEVICE": device}
    if course.data_root:
        env["COURSE_DATA"] = "/course-data"
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cells = [[i, c.source, cell_kind(c)] for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    return {"cells": cells, "env": env, "cell_timeout": limits[0], "notebook_timeout": limits[1],
            "memory_mb": course.memory_mb, "threads": threads, "engine": engine, "device": device,
            "datasets": sorted(set(datasets.values())), "lab": lab.id, "draw": submission_draw(draw, cells)}


def _parse_reply(reply: dict) -> tuple[dict[int, Outcome], list[str], dict[str, list[int] | str], dict]:
    """The worker's answer, as plain data of the expected types (WorkerLost otherwise): outcomes,
    notes, predictions, and what each cell showed (capped again); the probes' records are read
    apart (autograder.results.read_records)."""
    if "error" in reply:
        raise WorkerLost(f"the grading worker failed: {str(reply['error'])[:300]}")
    try:
        outcomes = {int(i): Outcome(str(status), str(ename), str(evalue), float(seconds))
                    for i, status, ename, evalue, seconds in reply["outcomes"]}
        notes = [printable(str(n)[:500]) for n in reply.get("notes", [])][:20]
        predictions = {}
        for stem, got in dict(reply.get("predictions", {})).items():
            predictions[str(stem)] = str(got)[:300] if isinstance(got, str) else [int(x) for x in got]
        budget, shown = [MAX_OUTPUTS], {}
        for index, items in list(reply.get("outputs", []))[:len(outcomes)]:
            if int(index) in outcomes:
                shown[int(index)] = capped_outputs(items, budget)
        return outcomes, notes, predictions, shown
    except (KeyError, TypeError, ValueError) as e:
        raise WorkerLost(f"the grading worker broke its protocol ({type(e).__name__})") from None


@dataclass(frozen=True)
class RunSettings:
    """How every notebook of a run is executed: one object, not a parameter list."""
    cell_timeout: float
    notebook_timeout: float
    engine: str = "fork"
    device: str = "cpu"
    threads: int | None = None
    draw: int = 0               # which random cases the checks draw (autograder.checks.drawn)


@dataclass
class Submission:
    """One submitted notebook of `lab`, read and restored from the source: ready to run."""
    student: str
    lab: Lab
    path: Path
    nb: Any
    restore_notes: list[str]
    stamp: str
    seconds: float                  # reading and restoring it took


def prepare_submission(path: Path, lab: Lab, student: str, course: Course, device: str,
                       sandboxed: bool, draw: int = 0) -> Submission | Result:
    """Read one submitted notebook and restore it from the lab's source notebook, here; a file
    that is not a gradable notebook gets its result at once (it never waits for a worker)."""
    start = time.monotonic()
    student = student or path.parent.name
    source_path = course.solution_path(lab.id)
    if not source_path.exists():
        raise CourseError(f"{source_path}: missing source notebook for lab {lab.id!r} (run `course build`)")
    stamp = fingerprint(path, lab, course, device, sandboxed, draw)
    try:
        nb, restore_notes = restore(read_submission(path), load_source(source_path))
    except SubmissionError as e:
        return not_graded(student, lab, path, e, stamp, sandboxed, time.monotonic() - start)
    return Submission(student, lab, path, nb, restore_notes, stamp, time.monotonic() - start)


def run_submission(submission: Submission, worker: Worker, graders: "Graders") -> tuple[Result, dict]:
    """Run one restored notebook in `worker`'s sandbox, judge its checks here; also return the
    predictions of the models it submitted for scoring (see `apply_scores`). Never raises for a
    bad submission; WorkerLost when the worker is lost."""
    course, settings = graders.course, graders.settings
    device = settings.device
    start = time.monotonic() - submission.seconds      # (waiting for the worker is not counted)
    lab, nb = submission.lab, submission.nb
    sandboxed = worker.options.sandboxed
    notes = [] if sandboxed else [UNSANDBOXED]
    limits = (settings.cell_timeout, settings.notebook_timeout)
    # the data set each scored check uses: the worker's images, and a fact the judge knows
    datasets = {spec.dataset: resolve_dataset(spec, course) for spec in scored_checks(lab.id).values()}
    job = _job(nb, lab, course, limits, settings.threads, settings.engine, device, settings.draw, datasets)
    reply, blob = worker.run(job, graders.images, limits[1] + MAX_MODELS * limits[0] + 60)
    outcomes, run_notes, predictions, shown = _parse_reply(reply)
    from .results import JUDGE_SECONDS, read_records
    records = read_records(blob, reply.get("records"))
    del blob
    # what the grader knows itself: the notebook's wall time, and the data sets above
    facts = {"notebook_seconds": reply.get("notebook_seconds"), "judge_left": [JUDGE_SECONDS], "datasets": datasets,
             "draw": job["draw"]}
    checks = score(nb, outcomes, lab, course.gpu, device, records, facts)
    compute = round(sum(o.seconds for o in outcomes.values()), 2)
    return Result(submission.student, lab.id, str(submission.path), checks, submission.restore_notes + run_notes + notes,
                  round(time.monotonic() - start, 2), compute, fingerprint=submission.stamp, sandboxed=sandboxed,
                  outputs=shown), predictions


def not_graded(student: str, lab: Lab, path: Path, error: SubmissionError, stamp: str, sandboxed: bool,
               seconds: float = 0.0) -> Result:
    """The result of a file that is not a gradable notebook of `lab`: every check 0, and why."""
    checks = [CheckResult(n, 0, p, f"not graded: {error}") for n, p in lab.checks.items()] + written_answers(lab, f"not graded: {error}")
    notes = [str(error)] + ([] if sandboxed else [UNSANDBOXED])
    return Result(student, lab.id, str(path), checks, notes, round(seconds, 2), fingerprint=stamp, sandboxed=sandboxed)


def apply_scores(result: Result, predictions: dict[str, list[int] | str], course: Course, lab: Lab) -> Result:
    """Finish the scored checks of `result` (see autograder.scoring): a check whose cell passed
    gets its points only if the submitted model's predictions reach the lab's threshold. Runs
    in the process that called `course grade`, the only one that reads the test labels."""
    scored = scored_checks(lab.id)
    if not scored:
        return result
    from .checks import at_least, submission_stem
    by_name = {c.name: c for c in result.checks}
    for name, spec in scored.items():
        check = by_name.get(name)
        if check is None or not check.passed:
            continue                        # the cell failed: its message says why
        dataset = resolve_dataset(spec, course)
        key = spec.threshold.format(dataset=dataset)
        lab_ = Domain(lab.id).gettext             # the lab's own words (its model's name, its hints)
        what = _("{name} accuracy on {split}").format(name=lab_(spec.model), split=_("the hidden test split"))
        if key not in lab.thresholds:
            raise CourseError(f"{course.path}: labs.{lab.id}.thresholds.{key}: missing (check {name!r} is scored against it)")
        threshold = lab.thresholds[key]
        got = predictions.get(submission_stem(spec.model, dataset))
        failed = None                              # (expected, got, hint)
        if got is None:
            failed = (_("a model submitted by the check cell"), _("none"), _("do not delete files the grader writes"))
        elif isinstance(got, str):
            failed = (at_least(threshold), got, lab_(spec.crash_hint))
        else:
            labels = scoring_labels(dataset, course)
            if len(got) != len(labels):
                failed = (_("{n} predictions").format(n=len(labels)), str(len(got)), _("the model must keep the batch size"))
            else:
                accuracy = float(np.mean(np.asarray(got) == labels))
                check.measured = round(accuracy, 4)
                if accuracy < threshold:
                    failed = (at_least(threshold), f"{accuracy:.3f}", lab_(spec.low_hint))
                else:
                    check.message = _("accuracy {accuracy} on the hidden test split ({threshold})").format(
                        accuracy=f"{accuracy:.3f}", threshold=at_least(threshold))
        if failed is not None:
            check.points = 0
            check.message = _("{what}: expected {expected}, got {got}").format(
                what=what, expected=failed[0], got=failed[1]) + f" — {failed[2]}"
    return result


def warm_up_plan(course: Course, lab_ids) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(labs, heavy imports) a worker that grades `lab_ids` warms up for (autograder.forked.warm_up):
    "dynamo" (2 s: torch._dynamo, which the first optimizer step imports, and torchvision),
    "mnist" (the embedded split, parsed) and "sklearn" (sklearn.datasets: 1.4 s of every tensors
    or forward notebook) only where a lab's source notebook or its checks use them. What a
    notebook imports beyond that costs it the import, never a grade."""
    from . import forked
    from .release import PACKAGE_DIR
    labs, heavy = tuple(sorted(set(lab_ids))), set()
    for lab_id in labs:
        try:
            text = "".join(c.source for c in load_source(course.solution_path(lab_id)).cells if c.cell_type == "code")
            text += (PACKAGE_DIR / "checks" / f"{lab_id}.py").read_text(encoding="utf-8")
        except (OSError, ValueError):     # not readable here: everything, as before the labs were known
            heavy.update(forked.HEAVY)
            continue
        if "optim" in text or "torchvision" in text:
            heavy.add("dynamo")
        if "mnist" in text:
            heavy.add("mnist")
        if re.search(r"^\s*(from|import) sklearn\b", text, re.M):
            heavy.add("sklearn")
    return labs, tuple(sorted(heavy))


class Graders:
    """`jobs` warm workers, each in its own sandbox, launched at once (ready by first use) and replaced when lost;
    and the test images they ask for (loaded here, once per data set)."""

    def __init__(self, course: Course, jobs: int, device: str, sandboxed: bool = True,
                 cell_timeout: float | None = None, notebook_timeout: float | None = None, engine: str = "fork",
                 threads: int | None = None, draw: int = 0, labs: tuple[str, ...] | None = None) -> None:
        if sandboxed:
            require_sandbox()
        self.course = course
        self.sandboxed = sandboxed
        set_language(course.language)     # the messages this process makes: the judges', pages, the README
        self.threads = threads or max(1, (os.cpu_count() or 1) // jobs)   # torch threads per notebook
        self.settings = RunSettings(cell_timeout or course.cell_timeout, notebook_timeout or course.notebook_timeout,
                                    engine, device, self.threads, draw)
        options = SandboxOptions(sandboxed, course.data_root_path, device, self.threads,
                                 warm=None if labs is None else warm_up_plan(course, labs))
        # kept from an earlier run of this process where it keeps them (sandbox.keep_workers)
        self.pool = sandbox.POOL if sandboxed else None
        # the pool's runtime folder, or this grader's own (removed with it, or by the next one's sweep)
        self.runtime = self.pool.runtime() if self.pool else RuntimeFolder()
        self.idle: queue.Queue[Worker] = queue.Queue()
        for slot in range(jobs):          # each warms up in its sandbox while this process goes on
            self.idle.put(self.pool.worker(options) if self.pool
                          else launched(Worker(slot, self.runtime.path, options)))
        self._images: dict[str, object] = {}
        self._lock = threading.Lock()
        from .judges import shared    # (torch, for judging: imported while the workers warm up)
        shared().start()          # the judges' server warms up while the first notebooks run

    def images(self, dataset: str):
        with self._lock:
            if dataset not in self._images:
                self._images[dataset] = scoring_images(dataset, self.course).numpy().astype("float32")
            return self._images[dataset]

    def grade(self, student: str, lab: Lab, path: Path) -> Result:
        """Grade one submission on an idle worker: run and probe it there, judge it and count its
        accuracy here, the points computed once. A lost worker costs this submission only."""
        try:
            submission = prepare_submission(path, lab, student, self.course, self.settings.device, self.sandboxed,
                                            self.settings.draw)
            # not a gradable notebook: its result at once, no worker needed
            result = submission if isinstance(submission, Result) else self._run(submission)
        except CourseError:
            raise
        except Exception as e:  # noqa: BLE001 — WorkerLost, or a grader bug: recorded on the submission, the class goes on
            result = _grader_error(student, lab.id, str(path), self.course, e)
        return result.with_valid_text()     # a student's text (or a file name) UTF-8 cannot write: U+FFFD

    def _run(self, submission: Submission) -> Result:
        """Run, judge and score a prepared submission on an idle worker (given back afterwards)."""
        worker = self.idle.get()
        try:
            if not worker.alive:
                worker.start()
            elif not worker.ready:
                worker.wait_ready()
            result, predictions = run_submission(submission, worker, self)
            if not result.grader_error:   # the labels are read here, in this process, never in a sandbox
                apply_scores(result, predictions, self.course, submission.lab)
            return result
        finally:
            self.idle.put(worker)

    def close(self) -> None:
        while not self.idle.empty():
            worker = self.idle.get()
            if self.pool:
                self.pool.give_back(worker)
            else:
                worker.close()
        if not self.pool:
            self.runtime.cleanup()

    def __enter__(self) -> "Graders":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def grade_notebook(path: Path, lab: Lab, course: Course, student: str = "",
                   cell_timeout: float | None = None, notebook_timeout: float | None = None,
                   engine: str = "fork", device: str = "cpu", sandboxed: bool = True) -> Result:
    """Grade one submitted notebook of `lab` (run, then score). Never raises for a bad submission."""
    with Graders(course, 1, device, sandboxed, cell_timeout, notebook_timeout, engine, labs=(lab.id,)) as graders:
        return graders.grade(student or path.parent.name, lab, path)


_COPY_SUFFIX = re.compile(r"\s*\(\d+\)$")       # `backprop (1).ipynb`: a browser's second download
SUBMISSION_TIME = "timestamp.txt"                   # nbgrader's: when the student submitted
_RENAMED = "(its name differs from the lab's)"


def lab_name(stem: str) -> str:
    """The lab a notebook's name means: case and a ` (1)` suffix aside."""
    return _COPY_SUFFIX.sub("", stem).strip().lower()


CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")     # (XML cannot hold them; no folder name should)


def shown(name: str) -> str:
    """A file or folder name as text every report can write: bytes that are not UTF-8 (Python
    keeps them as lone surrogates) and control characters (which XML cannot hold) become
    `\\xff`, so two such names stay two names."""
    try:
        text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:          # a surrogate no file name holds
        text = name.encode("utf-8", "backslashreplace").decode("utf-8")
    return CONTROL_CHARS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _student_ids(folders: list[Path], root: Path) -> dict[Path, str]:
    """Each student folder's id: its name, except for cloned repositories (a `.git` inside), which
    GitHub Classroom names `<assignment>-<login>` in a folder `<assignment>-submissions`: there
    the login. Outside such a folder the assignment is the prefix all the clones share (with one
    clone alone, its whole name is its id)."""
    ids = {folder: folder.name for folder in folders}
    clones = [f.name for f in folders if (f / ".git").exists()]
    if root.name.endswith("-submissions"):
        prefix = root.name.removesuffix("submissions")
    else:
        prefix = os.path.commonprefix(clones) if len(clones) > 1 else ""
        prefix = prefix[:prefix.rfind("-") + 1]
    if prefix:
        taken = {f.name for f in folders}
        ids.update({f: f.name[len(prefix):] for f in folders if f.name in clones and f.name.startswith(prefix)
                    and len(f.name) > len(prefix) and f.name[len(prefix):] not in taken})   # never two with one id
    return {folder: shown(i) for folder, i in ids.items()}


def find_submissions(root: Path, course: Course, lab_ids: list[str] | None,
                     shard: tuple[int, int] | None = None) -> tuple[list[tuple[str, Lab, Path]], list[str]]:
    """(student, lab, path) of each student's notebook for each selected lab, in either layout:
    `root/<student>/<lab>.ipynb`, or nbgrader's `root/<student>/<lab>/<lab>.ipynb` (its
    `submitted/` folder, with `timestamp.txt`). A name that differs in case or by a ` (1)`
    suffix still names its lab (the result says so); where a student handed in several files
    for one lab, `<lab>.ipynb` is graded, else the newest. Every file not graded is a warning.
    With `shard` (K, N), only the submissions in the K-th of N slices (`in_shard`)."""
    if not root.is_dir():
        raise CourseError(f"{root}: no such submissions folder (expected {root}/<student>/<lab>.ipynb)")
    labs = {lab.id: lab for lab in course.select(lab_ids)}
    known = {lab.id for lab in course.labs}
    found, warnings = [], []
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    ids = _student_ids(folders, root)
    for student_dir in folders:
        student = ids[student_dir]
        candidates: dict[str, list[Path]] = {}
        nested = [d for d in sorted(student_dir.iterdir())        # a linked folder is not followed
                  if d.is_dir() and not d.is_symlink() and not d.name.startswith(".")]
        for nb_path in [*sorted(student_dir.glob("*.ipynb")), *(p for d in nested for p in sorted(d.glob("*.ipynb")))]:
            name = lab_name(nb_path.stem)
            folder = lab_name(nb_path.parent.name) if nb_path.parent != student_dir else None
            if folder in known and folder != name:    # nbgrader's folder of another lab: submitted at its time
                if name in labs:
                    warnings.append(f"skipped {nb_path.relative_to(root)}: handed in with lab {folder}, not as lab {name}")
                continue
            if name in labs:
                candidates.setdefault(name, []).append(nb_path)
            elif name not in known:
                warnings.append(f"skipped {nb_path.relative_to(root)}: no lab {nb_path.stem!r} in course.yml")
        for lab_id, paths in candidates.items():
            exact = [p for p in paths if p.name == f"{lab_id}.ipynb"] or paths
            chosen = max(exact, key=lambda p: (p.stat().st_mtime, str(p)))
            found.append((student, labs[lab_id], chosen))
            for other in paths:
                if other != chosen:
                    warnings.append(f"skipped {other.relative_to(root)}: {student} handed in "
                                    f"{chosen.relative_to(root)} for lab {lab_id} too, and that one is graded")
    if not found:
        which = ", ".join(labs) if lab_ids else "any lab"
        raise CourseError(f"{root}: no submissions for {which} (expected {root}/<student>/<lab>.ipynb "
                          f"or nbgrader's {root}/<student>/<lab>/<lab>.ipynb)")
    warnings = [shown(w) for w in warnings]     # (file names that are not UTF-8)
    order = {lab.id: i for i, lab in enumerate(course.labs)}
    found.sort(key=lambda f: (f[0], order[f[1].id]))
    if shard is not None:                 # a slice of the class may be empty; the class may not
        found = [f for f in found if in_shard(f[0], f[1].id, shard)]
    return found, warnings


def submission_facts(result: Result, path: Path, course: Course | None = None) -> Result:
    """`result` with what the file tells beyond its cells: a note where its name is not
    `<lab>.ipynb`, when it was submitted (nbgrader's `timestamp.txt` beside it) and, past the
    lab's due time, the late penalty of course.yml."""
    result.notes[:] = [n for n in result.notes
                       if not (n.endswith(_RENAMED) or n.startswith(SUBMISSION_TIME) or n.startswith(_LATE))]
    if path.name != f"{result.lab}.ipynb":
        result.notes.append(f"graded {path.name} as {result.lab}.ipynb {_RENAMED}")
    stamp = path.parent / SUBMISSION_TIME
    if lab_name(path.parent.name) == result.lab and (stamp.is_file() or stamp.is_symlink()):
        text = _submission_time_text(stamp)
        if text is None:
            result.notes.append(f"{SUBMISSION_TIME} is not a small plain file of nbgrader's: when it was submitted is unknown")
        elif (path.parent.parent / ".git").exists():
            result.notes.append(f"{SUBMISSION_TIME} in a cloned repository is the student's own file, not nbgrader's: "
                                "when it was submitted is unknown")
        else:
            from nbgrader.utils import parse_utc
            try:
                result.submitted_at = parse_utc(text).isoformat() + "+00:00"
            except (ValueError, OverflowError):
                result.notes.append(f"{SUBMISSION_TIME} reads {text!r}, not a time: when it was submitted is unknown")
    result.late_penalty = 0.0
    if course is not None:
        _apply_late_policy(result, course)
    return result


def _submission_time_text(stamp: Path) -> str | None:
    """The text of nbgrader's timestamp.txt, or None when it is not a small regular file (a link
    could name any file the grader can read, and its text would reach the student's feedback)."""
    try:
        return read_capped(stamp, limit=200).decode("utf-8", errors="replace").strip()[:100]
    except SubmissionError:
        return None


_LATE = "submitted late"


def _apply_late_policy(result: Result, course: Course) -> None:
    """Past the lab's `due`, each started day late costs `grading.late.per_day` of the points the
    checks earned, all of them past `max_days`; without a policy lateness is only noted."""
    due = course.lab(result.lab).due
    if due is None or not result.submitted_at:
        return
    late = datetime.fromisoformat(result.submitted_at) - due
    if late.total_seconds() <= 0:
        return
    days = math.ceil(late.total_seconds() / 86400)
    earned = sum(c.points for c in result.checks)
    if course.late_per_day is None:
        result.notes.append(f"{_LATE}: {days} day(s) after {due:%Y-%m-%d %H:%M} UTC (no late policy in course.yml)")
        return
    share = 1.0 if course.late_max_days is not None and days > course.late_max_days else min(1.0, course.late_per_day * days)
    result.late_penalty = round(earned * share, 2)
    result.notes.append(f"{_LATE}: {days} day(s) after {due:%Y-%m-%d %H:%M} UTC: -{result.late_penalty:g} "
                        f"of {earned:g} points ({share:.0%}, course.yml grading.late)")


def _grader_error(student: str, lab_id: str, path: str, course: Course, e: Exception) -> Result:
    lab = course.lab(lab_id)
    why = str(e) if isinstance(e, WorkerLost) else f"{type(e).__name__}: {e}"
    message = f"not graded: grader error ({why})"
    checks = [CheckResult(n, 0, p, message) for n, p in lab.checks.items()] + written_answers(lab, message)
    return Result(student, lab_id, path, checks, grader_error=why)


MAX_ATTEMPTS = 2    # runs that may stop while grading one submission before it is set aside


class GraderStopped(Exception):
    pass


def in_shard(student: str, lab_id: str, shard: tuple[int, int]) -> bool:
    """Whether (student, lab) is in shard K of N: by a hash of the pair, so that a submission's
    shard never changes when others join or leave the class."""
    k, n = shard
    digest = hashlib.sha256(f"{student}\0{lab_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n == k - 1


def parse_shard(text: str) -> tuple[int, int]:
    """`K/N` (1 <= K <= N) as (K, N), or CourseError."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise CourseError(f"--shard {text}: expected K/N, e.g. 1/4") from None
    if not 1 <= k <= n:
        raise CourseError(f"--shard {text}: K must be between 1 and N")
    return k, n


def _attempts(folder: Path, student: str, lab_id: str) -> tuple[Path, int]:
    mark = folder / student / lab_id
    try:
        return mark, int(mark.read_text())
    except (OSError, ValueError):
        return mark, 0


def grade_class(root: Path, course: Course, lab_ids: list[str] | None = None, jobs: int | None = None,
                cell_timeout: float | None = None, notebook_timeout: float | None = None,
                on_result=None, engine: str = "fork",
                done: dict[tuple[str, str], Result] | None = None,
                device: str | None = None, sandboxed: bool = True,
                attempts: Path | None = None, shard: tuple[int, int] | None = None,
                cluster=None, found: tuple[list, list[str]] | None = None,
                draw: int = 0) -> tuple[list[Result], list[str]]:
    """Grade every submission under `root` with `jobs` sandboxed workers; `on_result(result)` is
    called (in this thread) as soon as each one is known. A submission whose result is in `done`
    with the same fingerprint is not graded again (`on_result` has it only where what the file
    tells beyond its cells changed: `submission_facts`). `device`: where notebooks run ("auto": cuda
    if present). With an `attempts` folder, a mark is kept there while a submission is graded:
    one during which this process stopped (crashed, or was killed) MAX_ATTEMPTS times is set
    aside with a grader error, so that it cannot stop every later run of the class. Returns the
    results in submission order and warnings. With `shard` (K, N), only the K-th of N
    deterministic slices of the class (`find_submissions`). With `cluster` (a dask.distributed
    Client), the submissions are graded on its workers (autograder.cluster) and `jobs` is unused.
    `found`: what `find_submissions` returned for these arguments, where the caller has it.
    `draw`: which random cases the checks draw (autograder.checks.drawn; 0: a notebook's own)."""
    if engine not in ENGINES:
        raise CourseError(f"unknown engine {engine!r} (choose {' or '.join(ENGINES)})")
    if cluster is not None:
        from .cluster import cluster_device
        device = cluster_device(cluster, device)
    else:
        device = resolve_device(device)
    found, warnings = found or find_submissions(root, course, lab_ids, shard)
    warnings = list(warnings)
    results: dict[int, Result] = {}
    todo = []
    for i, (student, lab, path) in enumerate(found):
        old = (done or {}).get((student, lab.id))
        if old is not None and not old.grader_error and old.fingerprint == fingerprint(path, lab, course, device, sandboxed, draw):
            before = old.to_dict()
            results[i] = submission_facts(old, path, course)
            if on_result and results[i].to_dict() != before:     # a new timestamp.txt or due time: its
                on_result(results[i])                               # stored result is written again
        else:
            todo.append(i)
    if attempts is not None and cluster is None:     # (Dask retries what a lost worker held itself)
        for i in list(todo):
            student, lab, path = found[i]
            if _attempts(attempts, student, lab.id)[1] >= MAX_ATTEMPTS:
                todo.remove(i)
                results[i] = submission_facts(_grader_error(student, lab.id, str(path), course, GraderStopped(
                    f"the grader stopped {MAX_ATTEMPTS} times while grading this submission; it is set aside "
                    "(grade it again with --force)")), path, course)
                if on_result:
                    on_result(results[i])
    if not todo:
        return [results[i] for i in range(len(found))], warnings
    if cluster is not None:
        from .cluster import grade_on_cluster
        settings = RunSettings(cell_timeout or course.cell_timeout, notebook_timeout or course.notebook_timeout,
                               engine, device, draw=draw)
        for i, result in grade_on_cluster(cluster, course, [(i, *found[i]) for i in todo], settings, sandboxed):
            results[i] = submission_facts(result, found[i][2], course)
            if on_result:
                on_result(results[i])
        return [results[i] for i in range(len(found))], warnings

    def grade(student: str, lab: Lab, path: Path) -> Result:
        if attempts is not None:
            mark, count = _attempts(attempts, student, lab.id)
            mark.parent.mkdir(parents=True, exist_ok=True)
            partial = mark.with_name(mark.name + ".partial")     # whole or not at all: an empty mark (a kill
            partial.write_text(str(count + 1))                   # between open and write) reads as no attempt,
            os.replace(partial, mark)                            # and its submission is never set aside
        return submission_facts(graders.grade(student, lab, path), path, course)

    jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo)))
    with Graders(course, jobs, device, sandboxed, cell_timeout, notebook_timeout, engine, draw=draw,
                 labs=tuple(found[i][1].id for i in todo)) as graders, \
            ThreadPoolExecutor(jobs) as pool:
        futures = {pool.submit(grade, *found[i]): i for i in todo}
        for future in as_completed(futures):
            result = future.result()
            results[futures[future]] = result
            if on_result:
                on_result(result)
            if attempts is not None:
                _attempts(attempts, result.student, result.lab)[0].unlink(missing_ok=True)
    return [results[i] for i in range(len(found))], warnings
