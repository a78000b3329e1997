"""A class graded in shards on several machines (`course grade --shard K/N`) and joined with
`course merge`: the slices partition the class, and the merged reports equal one run's, with
nothing regraded."""
from __future__ import annotations

import json
import shutil

import pytest

from autograder.config import CourseError
from autograder.grade import in_shard, parse_shard
from autograder.pipeline import GradeOptions, grade_to_folder, merge_folders
from autograder.report import read_results
from tests.test_config import run_cli

LAB = "tensors"
STUDENTS = {"ann": "solution", "bob": "blank", "cyd": "solution", "dee": "blank", "eve": "solution"}


@pytest.fixture(scope="module")
def runs(course, tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    for student, kind in STUDENTS.items():
        (root / "class" / student).mkdir(parents=True)
        source = course.solution_path(LAB) if kind == "solution" else course.exercise_path(LAB)
        shutil.copy(source, root / "class" / student / f"{LAB}.ipynb")
    (root / "roster.txt").write_text("\n".join([*STUDENTS, "zed"]) + "\n")      # zed hands in nothing
    options = dict(lab_ids=[LAB], jobs=2, roster=root / "roster.txt")
    one = grade_to_folder(root / "class", course, root / "one", GradeOptions(**options))
    # a slice (two or three notebooks: one worker) needs only its signed results for `course merge`: no reports
    # the same draw for every shard, as the README says (shard 2 forgets it: a warning)
    shards = [grade_to_folder(root / "class", course, root / f"shard{k}",
                              GradeOptions(**{**options, "jobs": 1}, shard=(k, 2), reports=False, draw=draw))
              for k, draw in ((1, 1234), (2, None))]
    merged = merge_folders(root / "merged", [root / "shard1", root / "shard2"], course)
    return root, one, shards, merged


def test_shards_partition_the_class(runs):
    _, one, shards, _ = runs
    keys = [{(r.student, r.lab) for r in s.results} for s in shards]
    assert keys[0] and keys[1] and not keys[0] & keys[1]
    assert keys[0] | keys[1] == {(r.student, r.lab) for r in one.results}            # zed's missing lab included once
    for k, shard in enumerate(keys, 1):
        assert all(in_shard(student, lab, (k, 2)) for student, lab in shard)


def test_a_shard_without_a_draw_is_warned(runs):
    _, _, shards, _ = runs
    assert not [w for w in shards[0].warnings if "--draw" in w]
    assert [w for w in shards[1].warnings if "give every shard of the class the same --draw N" in w]


def test_merged_reports_equal_one_run_and_nothing_is_regraded(runs):
    root, one, shards, merged = runs
    for name in ("grades.csv", "totals.csv"):
        assert (root / "merged" / name).read_text() == (root / "one" / name).read_text(), name
    graded = {(r.student, r.lab): r for s in shards for r in s.results}
    for r in read_results(root / "merged").values():                                  # signed with merged's own key
        source = graded[r.student, r.lab]
        assert (r.seconds, r.fingerprint, r.checks) == (source.seconds, source.fingerprint, source.checks)
    assert merged.warnings == [] and (root / "merged" / "gradebook.db").is_file()
    for report in ("grades.csv", "class_report.html", "feedback", "gradebook.db"):               # reports=False
        assert not (root / "shard1" / report).exists() and (root / "merged" / report).exists(), report
    assert [(r.student, r.score) for r in merged.results] == [(r.student, r.score) for r in one.results]


def test_merge_refuses_what_it_cannot_trust(course, runs, tmp_path):
    root, *_ = runs
    tampered = tmp_path / "tampered"
    shutil.copytree(root / "shard1", tampered)
    victim = next((tampered / "results").glob("*/*.json"))
    data = json.loads(victim.read_text())
    data["checks"][0]["points"] = 99                    # a result edited by hand: its signature no longer holds
    victim.write_text(json.dumps(data))
    merged = merge_folders(tmp_path / "out", [tampered], course, gradebook=False)
    assert any("signature does not match" in w and victim.name in w for w in merged.warnings)
    assert (data["student"], data["lab"]) not in {(r.student, r.lab) for r in merged.results}
    with pytest.raises(CourseError, match="not a `course grade` output folder"):
        merge_folders(tmp_path / "out2", [tmp_path / "nothing"], course)
    with pytest.raises(CourseError, match="K/N"):
        parse_shard("half")
    for args, expected in ((["grade", "x", "--shard", "3/2"], "K must be between 1 and N"),
                           (["merge", str(tmp_path / "o"), str(tmp_path / "nothing")], "not a `course grade` output folder")):
        proc = run_cli(*args)
        assert proc.returncode == 2 and expected in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
