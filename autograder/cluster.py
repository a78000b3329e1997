"""Grading on a Dask cluster: `course grade --cluster ADDR` (a running scheduler) or `--cluster local`
(a `LocalCluster` of worker processes on this machine).

    this process:  find submissions, fingerprints, reuse  ->  one task per submission (its bytes)
    Dask worker:   one warm `Graders` per worker process (the sandboxed engine of local grading,
                   one sandbox per worker thread): run, probe, judge, score -> the Result as plain data
    this process:  each result written (atomically, signed) as it arrives; reports; gradebook

A worker lost mid-run costs only the submissions it held: Dask's scheduler gives them to another
worker (up to its `distributed.scheduler.allowed-failures`, 3 by default); one that lost every
worker it was given gets a grader error, and the class goes on.

Every worker must see the course as this process does — the same checkout at the same path (a
shared file system, or the same image) with the same grader: the submission's fingerprint is
computed here and again on the worker, and a result whose fingerprints differ is a grader error
that says so, never a score.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Iterator

from .config import Course, CourseError, Lab
from .grade import Graders, RunSettings, cuda_available, fingerprint, not_graded
from .notebook import SubmissionError, read_capped
from .results import Result

LOCAL = "local"
CONNECT_SECONDS = 20


@contextlib.contextmanager
def open_cluster(address: str, workers: int | None = None):
    """A dask.distributed Client: on the scheduler at `address`, or on a LocalCluster of `workers`
    processes of one thread each (default: the cores) for "local". Closed (with the local cluster)
    on exit. CourseError when the scheduler cannot be reached."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise CourseError("--cluster needs dask.distributed: pip install 'cnn-course[cluster]'") from None
    logging.getLogger("distributed").setLevel(logging.ERROR)      # its INFO lines are not the grader's output
    if address == LOCAL:
        with LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(address, timeout=CONNECT_SECONDS)
    except (OSError, TimeoutError, ValueError) as e:
        raise CourseError(f"--cluster {address}: cannot reach a Dask scheduler there ({type(e).__name__}: {e})") from None
    with client:
        try:
            client.wait_for_workers(1, timeout=CONNECT_SECONDS)
        except (OSError, TimeoutError) as e:
            raise CourseError(f"--cluster {address}: the scheduler has no workers ({type(e).__name__}); "
                              f"start some (dask worker {address})") from None
        yield client


def cluster_device(client, requested: str | None) -> str:
    """`--device` for the cluster's workers: "auto" is cuda only where every worker has CUDA."""
    requested = requested or "auto"
    if requested == "cpu":
        return "cpu"
    has = client.run(cuda_available)
    if requested == "cuda" and not all(has.values()):
        lacking = sorted(addr for addr, yes in has.items() if not yes)
        raise CourseError(f"--device cuda: Dask worker(s) without CUDA: {', '.join(lacking)}")
    return "cuda" if has and all(has.values()) else "cpu"


def _threads_by_host(client) -> dict[str, int]:
    """Torch threads per notebook on each host: its cores shared among all the worker threads there."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    cores = client.run(os.cpu_count)
    slots = Counter()
    for info in workers.values():
        slots[info["host"]] += info["nthreads"]
    return {info["host"]: max(1, (cores.get(addr) or 1) // slots[info["host"]]) for addr, info in workers.items()}


# --- on a Dask worker ----------------------------------------------------------------------

_engines: dict[str, Graders] = {}      # run id -> the warm engine of this worker process
_engines_lock = threading.Lock()


def _engine(run: str, course: Course, settings: RunSettings, sandboxed: bool, threads: dict[str, int],
            labs: tuple[str, ...]) -> Graders:
    from dask.distributed import get_worker
    with _engines_lock:
        if run not in _engines:
            close_engines()                     # an earlier run's engine: its settings may differ
            worker = get_worker()
            host = worker.address.rsplit("://", 1)[-1].rsplit(":", 1)[0]
            # its sandboxes warm up for the run's labs (grade.warm_up_plan), not for every lab
            _engines[run] = Graders(course, worker.state.nthreads, settings.device, sandboxed, settings.cell_timeout,
                                    settings.notebook_timeout, settings.engine, threads.get(host), settings.draw, labs)
        return _engines[run]


def close_engines() -> None:
    """Stop this worker process's sandboxes (run on every worker when a run ends)."""
    while _engines:
        _engines.popitem()[1].close()


def grade_remote(run: str, course: Course, settings: RunSettings, sandboxed: bool, threads: dict[str, int],
                 labs: tuple[str, ...], student: str, lab_id: str, name: str, data: bytes) -> dict:
    """A Dask task: grade one submission (its file's bytes) on this worker, one of the run's
    `labs`; the Result as a dict and what its cells showed."""
    graders = _engine(run, course, settings, sandboxed, threads, labs)
    # in the engine's own runtime folder: a worker killed mid-task leaves it to the next grader's sweep
    with tempfile.TemporaryDirectory(prefix="course-submission-", dir=graders.runtime.path) as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        result = graders.grade(student, course.lab(lab_id), path)
        return {"result": result.to_dict(), "outputs": sorted((result.outputs or {}).items())}


# --- here ----------------------------------------------------------------------------------

def _lost(student: str, lab: Lab, path: Path, course: Course, why: str) -> Result:
    from .grade import _grader_error
    return _grader_error(student, lab.id, str(path), course, RuntimeError(why))


def grade_on_cluster(client, course: Course, items: list[tuple[int, str, Lab, Path]], settings: RunSettings,
                     sandboxed: bool) -> Iterator[tuple[int, Result]]:
    """Grade `items` ((index, student, lab, path)) on the cluster's workers; yield (index, Result)
    as each one arrives. A file that is not readable here is not sent (its result is made here)."""
    from dask.distributed import as_completed
    run = uuid.uuid4().hex
    threads = _threads_by_host(client)
    labs = tuple(sorted({lab.id for _, _, lab, _ in items}))
    futures = {}
    for i, student, lab, path in items:
        stamp = fingerprint(path, lab, course, settings.device, sandboxed, settings.draw)
        try:
            data = read_capped(path)
        except SubmissionError as e:
            yield i, not_graded(student, lab, path, e, stamp, sandboxed)
            continue
        future = client.submit(grade_remote, run, course, settings, sandboxed, threads, labs, student, lab.id, path.name, data,
                               key=f"grade-{student}-{lab.id}-{run[:8]}-{i}", pure=False)
        futures[future] = (i, student, lab, path, stamp)
    try:
        for future in as_completed(futures):
            i, student, lab, path, stamp = futures.pop(future)
            try:
                reply = future.result()
                result = Result.from_dict(reply["result"])
                result.outputs = dict(reply["outputs"])
            except CourseError as e:
                raise CourseError(f"on a Dask worker: {e}") from None
            except Exception as e:  # noqa: BLE001 — KilledWorker, a lost connection: this submission only
                yield i, _lost(student, lab, path, course, f"the Dask cluster could not grade it ({type(e).__name__}: {e})")
                continue
            result.path = str(path)
            if result.fingerprint != stamp:
                result = _lost(student, lab, path, course, "the Dask worker's course differs from this one "
                               "(its course.yml, solutions/, data or grader code): give every worker the same checkout")
            yield i, result
    finally:
        for future in futures:
            future.cancel()
        with contextlib.suppress(Exception):
            client.run(close_engines)
