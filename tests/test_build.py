"""The build: templates → nbgrader source → solutions/ and exercises/, deterministic to the byte."""
from __future__ import annotations

import json
import shutil

import nbformat
import pytest

from autograder.build import build, dumps, exercise_source, generate_assignments, parse_cells, source_notebook
from autograder.config import CourseError, Lab, load_course
from tests.conftest import ROOT, course_cli


def sample(x: int, y: int = 2) -> int:
    """Docstring stays visible."""
    # the body is the solution
    z = x + y
    return z


class Sample:
    """A class keeps its docstring and method signatures."""
    scale = 3

    def __init__(self, k: int):
        self.k = k

    def forward(self, x):
        """Doc."""
        return x * self.k * self.scale


def test_exercise_source_wraps_every_body():
    fn = exercise_source(sample)
    assert fn.splitlines()[:3] == ["def sample(x: int, y: int = 2) -> int:", '    """Docstring stays visible."""', "    ### BEGIN SOLUTION"]
    assert fn.rstrip().endswith("    return z\n    ### END SOLUTION")
    cls = exercise_source(Sample)
    assert cls.count("### BEGIN SOLUTION") == 2 and "    scale = 3" in cls
    assert "        ### BEGIN SOLUTION\n        self.k = k\n        ### END SOLUTION" in cls
    compile(cls, "<cls>", "exec")


def test_percent_format_parsing():
    lab = Lab("x", "X", {"a": 2})
    text = "# %% [markdown]\n# # Title\n#\n# prose\n\n# %%\nimport torch\n\n# %% [check] id=check_a\nassert True\n"
    md, code, check = parse_cells(text, lab)
    assert md.source == "# Title\n\nprose" and md.metadata.nbgrader["locked"]
    assert code.source == "import torch" and code.metadata.nbgrader["grade_id"] == "code-02"
    assert check.metadata.nbgrader == {"grade": True, "grade_id": "check_a", "locked": True, "points": 2,
                                        "schema_version": 3, "solution": False}
    with pytest.raises(CourseError, match="text before the first"):
        parse_cells("stray\n# %%\nx = 1\n", lab)
    with pytest.raises(CourseError, match="duplicate cell id"):
        parse_cells("# %% [check] id=check_a\nx\n# %% [check] id=check_a\ny\n", lab)


def test_committed_notebooks_are_fresh(course):
    assert build(course, check=True) == []


@pytest.mark.parametrize("lab_id", [lab.id for lab in load_course(ROOT / "course.yml").labs])
def test_generated_notebooks(course, lab_id):
    lab = course.lab(lab_id)
    solution = nbformat.read(course.solution_path(lab_id), as_version=4)
    exercise = nbformat.read(course.exercise_path(lab_id), as_version=4)
    for nb in (solution, exercise):
        nbformat.validate(nb)
        assert nb.cells[0].source.startswith(f"*Generated from `reference/{lab_id}.py`")
        points = {c.metadata.nbgrader["grade_id"]: c.metadata.nbgrader["points"] for c in nb.cells if c.metadata.nbgrader["grade"]}
        assert points == {f"check_{k}": v for k, v in lab.checks.items()} | {f"written_{k}": v for k, v in lab.written.items()}
    ex_text = course.exercise_path(lab_id).read_text()
    assert "BEGIN SOLUTION" not in ex_text and "BEGIN HIDDEN TESTS" not in ex_text
    # each code answer cell holds nbgrader's stub, or its starter (the debugging lab's code to fix,
    # the capstone's skeleton of a network of one's own), and never the solution
    starters = {c.id: c.metadata["course"]["starter"] for c in solution.cells if "starter" in c.metadata.get("course", {})}
    answers = [c for c in exercise.cells if c.metadata.nbgrader["solution"] and c.cell_type == "code"]
    assert answers
    for cell in answers:
        assert cell.source.strip() == starters[cell.id].strip() if cell.id in starters else "raise NotImplementedError()" in cell.source
    assert "### BEGIN SOLUTION" in course.solution_path(lab_id).read_text()
    # every cell but the answers is locked in the exercise
    for cell in exercise.cells:
        meta = cell.metadata.nbgrader
        assert meta["solution"] or (meta["locked"] and cell.metadata.get("editable") is False)
    # the notebook never imports the reference (it contains the code)
    assert "import reference" not in ex_text and "from reference" not in ex_text


def test_build_is_deterministic(course):
    lab = course.labs[0]
    a, b = source_notebook(lab, course), source_notebook(lab, course)
    assert dumps(a) == dumps(b) == course.solution_path(lab.id).read_text()
    assert generate_assignments({lab.id: a})[lab.id] == course.exercise_path(lab.id).read_text()


def test_the_build_compiles_each_schema_once_and_judges_as_before(course, monkeypatch):
    """nbconvert validated after each of nbgrader's preprocessors with a freshly compiled schema
    (jupyter/nbconvert#1663) and nbgrader checked its metadata schema for every graded cell: half
    of `course build`. Now one lab's notebooks compile the relaxed notebook schema at most once,
    and what is valid stays so: a wrong nbgrader field is refused, an extra notebook field is
    allowed only where nbconvert relaxes the schema (stock nbformat then let it through strict
    validation too: it cached the relaxed validator in place of the strict one)."""
    import fastjsonschema
    import jsonschema
    from nbgrader.nbgraderformat import MetadataValidator

    from autograder import build as build_module
    lab = course.labs[1].id
    source = build_module.source_notebook(course.lab(lab), course)
    compiled = []
    real = fastjsonschema.compile
    monkeypatch.setattr(fastjsonschema, "compile", lambda *a, **k: (compiled.append(1), real(*a, **k))[1])
    for _ in range(2):
        assert generate_assignments({lab: source})[lab] == course.exercise_path(lab).read_text()
    assert len(compiled) <= 2, f"{len(compiled)} schemas compiled for one lab built twice"
    bad = nbformat.v4.new_code_cell("x", metadata={"nbgrader": {
        "schema_version": 3, "grade": True, "solution": False, "locked": True, "grade_id": "a", "points": "many",
        "task": False}})
    with pytest.raises(jsonschema.ValidationError, match="'many' is not of type 'number'"):
        MetadataValidator().validate_cell(bad)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x")])
    nb.cells[0]["bogus"] = 1
    nbformat.validate(nb, relax_add_props=True)
    with pytest.raises(nbformat.ValidationError, match="bogus"):
        nbformat.validate(nb)


def test_build_check_names_every_stale_file(tmp_path):
    shutil.copy(ROOT / "course.yml", tmp_path / "course.yml")
    lab_ids = [lab.id for lab in load_course(ROOT / "course.yml").labs][:2]   # two labs keep it quick
    cli = ["--course", str(tmp_path / "course.yml"), "build", "--lang", "en",
           *(arg for lab_id in lab_ids for arg in ("--lab", lab_id))]   # English: test_i18n checks the Korean build
    fresh = course_cli(cli + ["--check"])
    assert fresh.returncode == 1
    stale = set(fresh.stdout.split())
    for lab_id in lab_ids:
        assert f"solutions/{lab_id}/{lab_id}.ipynb" in stale and f"exercises/{lab_id}/{lab_id}.ipynb" in stale
    assert course_cli(cli).returncode == 0
    for lab_id in lab_ids:  # a build elsewhere gives the committed bytes
        assert (tmp_path / "exercises" / lab_id / f"{lab_id}.ipynb").read_bytes() == (ROOT / "exercises" / lab_id / f"{lab_id}.ipynb").read_bytes()
    assert course_cli(cli + ["--check"]).returncode == 0
    edited = tmp_path / "exercises" / lab_ids[0] / f"{lab_ids[0]}.ipynb"
    nb = json.loads(edited.read_text())
    nb["cells"][1]["source"] = ["edited by hand"]
    edited.write_text(json.dumps(nb))
    again = course_cli(cli + ["--check"])
    assert again.returncode == 1 and again.stdout.split() == ["stale:", f"exercises/{lab_ids[0]}/{lab_ids[0]}.ipynb"]


def test_sample_class_is_fresh(tmp_path):
    """examples/class (what `make demo` grades) equals a fresh `python examples/make_class.py`."""
    from examples.make_class import write_class
    write_class(tmp_path / "class")
    fresh = {p.relative_to(tmp_path / "class"): p.read_bytes() for p in (tmp_path / "class").rglob("*.ipynb")}
    committed = {p.relative_to(ROOT / "examples" / "class"): p.read_bytes() for p in (ROOT / "examples" / "class").rglob("*.ipynb")}
    assert fresh == committed, "run `python examples/make_class.py` after `course build`"


@pytest.mark.parametrize("lab_id", [lab.id for lab in load_course(ROOT / "course.yml").labs])
def test_check_module_matches_course_yml(course, lab_id):
    """A lab's check module exports exactly the checks course.yml gives points to, and never
    imports the reference (checks compare against torch, the course's numbers or golden values)."""
    import importlib
    import inspect

    module = importlib.import_module(f"autograder.checks.{lab_id}")
    assert sorted(module.__all__) == sorted(course.lab(lab_id).checks)
    source = inspect.getsource(module)
    assert "import reference" not in source and "from reference" not in source
