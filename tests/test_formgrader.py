"""nbgrader's formgrader, a real Jupyter server with its extension, on what `course grade` wrote:
its API lists the autograded scores, its submission view renders the autograded notebook, and
a manual score entered through its API reaches every report of the next `course grade`."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT

LAB = "tensors"
TOKEN = "formgrader-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _grade(classroom: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autograder.cli", "grade", str(classroom), "--lab", LAB, "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def graded(course, tmp_path_factory):
    root = tmp_path_factory.mktemp("formgrader")
    for student, source in (("ann", course.solution_path(LAB)), ("bob", course.exercise_path(LAB))):
        (root / "class" / student).mkdir(parents=True)
        shutil.copy(source, root / "class" / student / f"{LAB}.ipynb")
    from autograder.cli import main              # `course grade`, in this process (its judges are warm)
    assert main(["grade", str(root / "class"), "--lab", LAB, "--out", str(root / "out")]) == 0
    return root


@pytest.fixture(scope="module")
def server(graded):
    """`jupyter server` with nbgrader's formgrader extension, in the output folder (its course
    root: gradebook.db, autograded/)."""
    port = _free_port()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "JUPYTER_RUNTIME_DIR": str(graded / "rt")}
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_server", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
                             f"--ServerApp.token={TOKEN}", "--allow-root",
                             "--ServerApp.jpserver_extensions={'nbgrader.server_extensions.formgrader': True}",
                             f"--ServerApp.root_dir={graded / 'out'}"],
                            cwd=graded / "out", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if request(base, "/formgrader/api/status")[0] == 200:
                    break
            except OSError:
                time.sleep(0.25)
        else:
            pytest.fail("formgrader did not start in 30 s")
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def request(base: str, path: str, method: str = "GET", body: dict | None = None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as response:
        return response.status, response.read().decode()


def test_formgrader_lists_the_scores_and_renders_the_autograded_notebook(course, server):
    status, text = request(server, f"/formgrader/api/submitted_notebooks/{LAB}/{LAB}")
    assert status == 200
    notebooks = {n["student"]: n for n in json.loads(text)}
    max_points, automatic = course.lab(LAB).max_points, sum(course.lab(LAB).checks.values())
    assert (notebooks["ann"]["score"], notebooks["ann"]["max_score"], notebooks["ann"]["failed_tests"]) == (automatic, max_points, False)
    assert (notebooks["bob"]["score"], notebooks["bob"]["failed_tests"]) == (0, True)
    assert notebooks["ann"]["needs_manual_grade"] == bool(course.lab(LAB).written)     # the written answer waits for a TA
    status, page = request(server, f"/formgrader/submissions/{notebooks['bob']['id']}/")
    assert status == 200
    assert all(f"check_{name}" in page for name in course.lab(LAB).checks)
    assert "NotImplementedError" in page and "BEGIN HIDDEN" not in page
    status, page = request(server, f"/formgrader/submissions/{notebooks['ann']['id']}/")
    assert status == 200 and "torch.Size([150, 4]) torch.float64" in page     # what ann's cells printed when graded
    assert "data:image/png;base64," in page                                  # and the figures they drew


def test_a_manual_score_entered_in_formgrader_reaches_the_next_reports(course, graded, server):
    _, text = request(server, f"/formgrader/api/submitted_notebooks/{LAB}/{LAB}")
    ann = next(n for n in json.loads(text) if n["student"] == "ann")
    _, text = request(server, f"/formgrader/api/grades?submission_id={ann['id']}")
    first = next(g for g in json.loads(text) if g["name"] == f"check_{next(iter(course.lab(LAB).checks))}")
    status, text = request(server, f"/formgrader/api/grade/{first['id']}", "PUT", {"manual_score": 0.5, "extra_credit": None})
    assert status == 200 and json.loads(text)["manual_score"] == 0.5

    proc = _grade(graded / "class", graded / "out")          # nothing changed: nothing regraded
    assert proc.returncode == 0 and "unchanged since the last run" in proc.stderr, proc.stderr[-2000:]
    expected = sum(course.lab(LAB).checks.values()) - first["max_score"] + 0.5
    totals = list(csv.reader(io.StringIO((graded / "out" / "totals.csv").read_text())))
    assert totals[2] == ["ann", f"{expected:g}", f"{expected:g}"]
    assert "changed by hand" in (graded / "out" / "feedback" / "ann" / LAB / f"{LAB}.html").read_text()
    _, text = request(server, f"/formgrader/api/grade/{first['id']}")
    assert json.loads(text)["manual_score"] == 0.5 and json.loads(text)["auto_score"] == first["max_score"]
