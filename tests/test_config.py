"""course.yml validation: every problem is one line naming the file, the key and the problem."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from autograder.config import CourseError, load_course
from tests.conftest import ROOT, course_cli


def variant(tmp_path, edit):
    raw = yaml.safe_load((ROOT / "course.yml").read_text())
    edit(raw)
    path = tmp_path / "course.yml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_the_course_loads(course):
    assert [lab.id for lab in course.labs][:1] and all(lab.max_points > 0 for lab in course.labs)
    assert course.gpu in ("required", "preferred", "ignore")


BAD = {
    "unknown key": (lambda r: r["grading"].update(colour="red"), "grading: unknown key 'colour'"),
    "unknown lab key": (lambda r: r["labs"][0].update(pointz=3), "labs[0]: unknown key 'pointz'"),
    "wrong type": (lambda r: r["grading"].update(cell_timeout="soon"), "grading.cell_timeout: expected an integer or a number, got str"),
    "points not int": (lambda r: r["labs"][0]["checks"].update({next(iter(r["labs"][0]["checks"])): "two"}), "expected an integer"),
    "no reference module": (lambda r: r["labs"].append({"id": "nosuchlab", "title": "x", "checks": {"a": 1}}), "has no reference module reference/nosuchlab.py"),
    "duplicate lab": (lambda r: r["labs"].append(dict(r["labs"][0])), "duplicate lab id"),
    "missing key": (lambda r: r["grading"].pop("gpu"), "grading.gpu: missing"),
    "bad choice": (lambda r: r["grading"].update(gpu="always"), "grading.gpu: expected one of required, preferred, ignore, got 'always'"),
    "negative timeout": (lambda r: r["grading"].update(notebook_timeout=0), "grading.notebook_timeout: must be > 0"),
    "bad due": (lambda r: r["labs"][0].update(due="next friday"), "labs[0].due: not a time"),
    "late share": (lambda r: r["grading"].update(late={"per_day": 10}), "grading.late.per_day: a share of the points in (0, 1]"),
    "late without share": (lambda r: r["grading"].update(late={"max_days": 3}), "grading.late.per_day: missing"),
}


def test_due_times_are_utc_whatever_way_they_are_written(tmp_path):
    import datetime as dt

    def edit(raw):
        raw["labs"][0]["due"] = "2026-12-10T23:59:00+09:00"
        raw["labs"][1]["due"] = dt.date(2026, 12, 11)
        raw["grading"]["late"] = {"per_day": 0.1, "max_days": 5}
    course = load_course(variant(tmp_path, edit))
    utc = dt.timezone.utc
    assert course.labs[0].due == dt.datetime(2026, 12, 10, 14, 59, tzinfo=utc)
    assert course.labs[1].due == dt.datetime(2026, 12, 11, 23, 59, 59, tzinfo=utc)      # a date: its end
    assert course.labs[2].due is None and (course.late_per_day, course.late_max_days) == (0.1, 5)


@pytest.mark.parametrize("case", BAD)
def test_bad_course_yml_names_file_and_key(tmp_path, case):
    edit, expected = BAD[case]
    path = variant(tmp_path, edit)
    with pytest.raises(CourseError) as err:
        load_course(path)
    message = str(err.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "course.yml"
    bad.write_text("labs: [\n  - id: x\n")
    with pytest.raises(CourseError, match="not valid YAML at line"):
        load_course(bad)
    with pytest.raises(CourseError, match="no such file"):
        load_course(tmp_path / "absent.yml")


def run_cli(*args):
    """`course ARGS` of this repository's course (unless ARGS name one), in this process."""
    return course_cli(list(args) if "--course" in args else ["--course", str(ROOT), *args])


@pytest.mark.parametrize("args, expected", [
    (["build", "--lab", "nosuch"], "unknown lab 'nosuch'"),
    (["grade", "no/such/folder"], "no such submissions folder"),
    (["validate", "--lab", "nosuch"], "unknown lab 'nosuch'"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args, expected):
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert proc.stderr.startswith("course: error:") and expected in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_cli_bad_course_yml(tmp_path):
    path = variant(tmp_path, lambda r: r["grading"].update(colour="red"))
    proc = run_cli("--course", str(path), "build", "--check")
    assert proc.returncode == 2 and "unknown key 'colour'" in proc.stderr and "Traceback" not in proc.stderr


def test_course_path_is_named_or_found_never_assumed(tmp_path):
    """`--course` names a course.yml or its folder; without it the nearest course.yml at or above
    the working folder is used. Outside a course: an error, not the installed package's."""
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "COURSE_YML"}
    for args, expected in ((["--course", str(tmp_path), "build", "--check"], "a folder without a course.yml"),
                           (["--course", str(tmp_path / "nope.yml"), "build", "--check"], "no such file"),
                           (["build", "--check"], f"no course.yml in {nested} or a folder above it")):
        proc = subprocess.run([sys.executable, "-m", "autograder.cli", *args], cwd=nested, capture_output=True,
                              text=True, timeout=120, env=env)
        assert proc.returncode == 2 and proc.stderr.startswith("course: error:") and expected in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    (tmp_path / "course.yml").write_text((ROOT / "course.yml").read_text())   # found from a folder below
    for cwd, args in ((nested, []), (ROOT.parent, ["--course", str(ROOT)])):
        proc = subprocess.run([sys.executable, "-c", "import sys; from autograder.config import load_course, course_path;"
                               "print(course_path(sys.argv[1] if len(sys.argv) > 1 else None))", *args[1:]],
                              cwd=cwd, capture_output=True, text=True, timeout=60, env=env)
        expected = tmp_path / "course.yml" if not args else ROOT / "course.yml"
        assert proc.returncode == 0 and Path(proc.stdout.strip()) == expected, proc.stderr


def test_grade_warns_once_per_lab_when_course_yml_changed_since_the_build(course, tmp_path):
    """Students saw the built notebooks' points and thresholds: when course.yml has changed since,
    grading (with course.yml's values) says so, once per lab, naming what changed."""
    from autograder.pipeline import changed_since_built
    xor, lenet = course.lab("xor"), course.lab("lenet")
    submitted = []
    for student in ("ann", "bob"):
        path = tmp_path / student / "xor.ipynb"
        path.parent.mkdir()
        path.write_text(course.exercise_path("xor").read_text())
        submitted.append((student, xor, path))
    submitted.append(("ann", lenet, course.solution_path("lenet")))
    assert changed_since_built(course, submitted) == []

    labs = [dataclasses.replace(xor, thresholds={"accuracy": 0.75}, checks={**xor.checks, "train_xor": 5})
            if lab.id == "xor" else lab for lab in course.labs]
    warnings = changed_since_built(dataclasses.replace(course, labs=tuple(labs)), submitted)
    assert warnings == ["lab xor: course.yml differs from what the built exercise notebook shows (points train_xor: 3 there, "
                        "5 in course.yml; threshold accuracy: 1.0 there, 0.75 in course.yml): graded with course.yml's "
                        "values; run `course build`, then release again"]

    # built again after the change, but the students handed in the old release
    nb = json.loads(submitted[0][2].read_text())
    nb["metadata"]["course"]["points"]["train_xor"] = 2
    submitted[0][2].write_text(json.dumps(nb))
    warnings = changed_since_built(course, submitted)
    assert len(warnings) == 1 and "a submitted notebook shows (points train_xor: 2 there, 3 in course.yml)" in warnings[0]


def test_notebooks_validate_as_before_without_rfc3987_syntax():
    """autograder leaves rfc3987_syntax out (2.5 s of grammar building on import, for jsonschema's
    "iri" formats alone): nbformat still validates notebooks, and rejects an invalid one."""
    code = ("import autograder, sys, nbformat\n"
            "nb = nbformat.read(sys.argv[1], as_version=4)\n"
            "nbformat.validate(nb)\n"
            "nb.cells[0]['cell_type'] = 'spreadsheet'\n"
            "try:\n"
            "    nbformat.validate(nb)\n"
            "except nbformat.ValidationError:\n"
            "    print('rejected')\n"
            "print(sys.modules.get('rfc3987_syntax'))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT / "solutions" / "tensors" / "tensors.ipynb")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["rejected", "None"]
