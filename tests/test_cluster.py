"""Grading on a Dask cluster (`course grade --cluster`): a real LocalCluster of 2 worker processes
gives the same scores, messages and reports as local grading; a worker killed mid-run costs only
a retry of what it held; a worker whose course differs gives grader errors, never scores."""
from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time

import pytest

pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install -e '.[test]')")

from autograder import cluster as cluster_module  # noqa: E402
from autograder.cluster import open_cluster  # noqa: E402
from autograder.config import CourseError  # noqa: E402
from autograder.grade import grade_class  # noqa: E402
from autograder.pipeline import GradeOptions, grade_to_folder  # noqa: E402
from tests.conftest import ROOT, full_marks  # noqa: E402
from tests.test_config import run_cli  # noqa: E402

# student -> (lab, what they hand in)
CLASS = {"ann": ("tensors", "solution"), "bob": ("tensors", "blank"), "dee": ("tensors", "bug"),
         "eve": ("tensors", "broken"), "slow": ("tensors", "slow")}
BUG = ROOT / "examples" / "class" / "bug-standardize-sample-std" / "tensors.ipynb"     # loses `standardize`
SLOW_SECONDS = 4


DRAW = 20_261_207


def _write_class(course, root):
    for student, (lab, kind) in CLASS.items():
        folder = root / student
        folder.mkdir(parents=True)
        target = folder / f"{lab}.ipynb"
        source = course.exercise_path(lab) if kind == "blank" else course.solution_path(lab)
        if kind == "broken":
            target.write_text('{"cells": [oops')
            continue
        nb = json.loads((BUG if kind == "bug" else source).read_text())
        if kind == "slow":             # a student's own cell that takes a while: a worker is killed under it
            nb["cells"].append({"cell_type": "code", "id": "slow-cell", "metadata": {}, "execution_count": None, "outputs": [],
                                "source": f"import time\ntime.sleep({SLOW_SECONDS})"})
        target.write_text(json.dumps(nb))


def _comparable(results):
    return {(r.student, r.lab): ([(c.name, c.points, c.max_points, c.message) for c in r.checks], r.notes,
                                 r.fingerprint, r.grader_error) for r in results}


@pytest.fixture(scope="module")
def client():
    with open_cluster("local", 2) as client:     # 2 worker processes of one thread, as `--cluster local --jobs 2`
        yield client


@pytest.fixture(scope="module")
def graded(course, client, tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    _write_class(course, root / "class")
    labs = sorted({lab for lab, _ in CLASS.values()})
    # one draw for both (each output folder would draw its own random cases: README "Trust model")
    local = grade_to_folder(root / "class", course, root / "local", GradeOptions(labs, jobs=2, draw=DRAW))
    on_dask = grade_to_folder(root / "class", course, root / "dask", GradeOptions(labs, cluster=client, draw=DRAW))
    return root, local, on_dask


def test_a_local_cluster_grades_as_local_grading_does(graded):
    root, local, on_dask = graded
    assert _comparable(on_dask.results) == _comparable(local.results)
    full = {r.student: full_marks(r) for r in on_dask.results}
    scores = {r.student: r.score for r in on_dask.results}
    assert full["ann"] and full["slow"] and scores["bob"] == scores["eve"] == 0
    assert 0 < scores["dee"] < scores["ann"]
    for name in ("grades.csv", "totals.csv"):
        assert (root / "dask" / name).read_text() == (root / "local" / name).read_text(), name
    assert not any(r.grader_error for r in on_dask.results)


def test_a_dask_worker_warms_up_for_the_runs_labs_only(course, client):
    """Each Dask worker's sandboxes warm up for the labs of the run (grade.warm_up_plan): a
    tensors run imports neither torch._dynamo nor the MNIST split (every lab's warm-up: 10
    CPU-s a worker, twice a tensors one's)."""
    def warm_plan():
        from autograder.grade import RunSettings
        graders = cluster_module._engine("warm-plan", course, RunSettings(60, 600), True, {}, ("tensors",))
        try:
            worker = graders.idle.get()
            graders.idle.put(worker)
            return worker.options.warm
        finally:
            cluster_module.close_engines()
    workers = list(client.scheduler_info()["workers"])
    plans = client.gather([client.submit(warm_plan, workers=[w], pure=False) for w in workers])
    assert len(workers) == 2 and plans == [(("tensors",), ("sklearn",))] * 2


def test_a_rerun_on_the_cluster_regrades_nothing(course, graded, client):
    root, _, _ = graded
    labs = sorted({lab for lab, _ in CLASS.values()})
    again = grade_to_folder(root / "class", course, root / "dask", GradeOptions(labs, cluster=client, draw=DRAW))
    assert again.reused == len(CLASS)


def test_a_worker_with_another_course_gives_grader_errors_not_scores(course, graded, client, monkeypatch):
    root, _, _ = graded
    monkeypatch.setattr(cluster_module, "fingerprint", lambda *a, **k: "this machine's fingerprint")
    one = root / "one"
    (one / "ann").mkdir(parents=True)
    shutil.copy(root / "class" / "ann" / "tensors.ipynb", one / "ann")
    results, _ = grade_class(one, course, ["tensors"], cluster=client)
    assert results and all(r.score == 0 and "course differs from this one" in r.grader_error for r in results)


def test_a_worker_killed_mid_run_costs_only_a_retry(course, graded, client):
    root, local, _ = graded
    killed = []

    def kill_the_slow_ones_worker(client):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for address, keys in client.processing().items():
                if any(str(key).startswith("grade-slow-") for key in keys):
                    time.sleep(1)        # the task is under way there (the engine warms up, the notebook runs)
                    pid = client.run(os.getpid, workers=[address])[address]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(address)
                    return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_the_slow_ones_worker, args=(client,))
    killer.start()
    results, _ = grade_class(root / "class", course, ["tensors"], cluster=client, draw=DRAW)
    killer.join()
    assert killed, "the slow submission's worker was never seen running it"
    want = {k: v for k, v in _comparable(local.results).items() if k[1] == "tensors"}
    assert _comparable(results) == want          # the slow one too: graded again elsewhere, not an error


def test_an_unreachable_scheduler_is_one_line_and_exit_2(graded, monkeypatch, tmp_path):
    root, _, _ = graded
    proc = run_cli("grade", str(root / "class"), "--out", str(tmp_path / "out"), "--cluster", "nonsense")
    assert proc.returncode == 2 and "--cluster nonsense: cannot reach a Dask scheduler" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    monkeypatch.setattr(cluster_module, "CONNECT_SECONDS", 1)
    with pytest.raises(CourseError, match="cannot reach a Dask scheduler"):
        with open_cluster("tcp://127.0.0.1:1"):
            pass
